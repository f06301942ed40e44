// barwriter: draws the test pattern into the BAR of QEMU's ivshmem device and describes it with
// guestfb's shared BAR header (README.md, "Shared BAR header (ivshmem)"), then rings guestfb's
// doorbell after every frame. No driver needed: the BARs are mapped through sysfs.
//
// The pattern is drawpattern's (see drawpattern.c; both draw it with guest-common.h): 8 vertical
// bars, bar b covering columns [b*W/8, (b+1)*W/8) in white, yellow, cyan, green, magenta, red,
// blue, black (output index 0), with the 16-cell frame counter (16x16 cells, bottom-left, cell 0 =
// bit 15, white = 1) showing the frame number modulo 65536. XRGB8888 with the X byte 0xff, stride
// W*4, framebuffer at BAR offset 4096 (the page after the header).
//
// Frames: frame 0 draws everything; each later frame redraws the counter strip only and reports
// it as damage (--damage full reports the whole frame). Each frame is committed with the
// header's sequence number: odd while writing, even when done, then a Doorbell write of
// (host peer << 16 | 0). The host peer id is read from guestfb's host area in the header page
// ("GFBH" at 0xf00, peer at 0xf04), or --host-peer; 0xffffffff (ivshmem-plain) means no doorbell.
//
// Host size requests (header version 2): before each frame, and every frame period while it
// holds the last frame, barwriter reads guestfb's request (sequence at 0xf08, even when complete;
// width, height at 0xf0c, 0xf10). A new request that fits the BAR becomes the framebuffer size:
// the next frame re-lays out (stride width*4, same offset) and redraws everything; one that does
// not fit is declined and the size stays. Either way the request's sequence goes into the
// header's request_ack (offset 352) with the next commit. A request present at start sets the
// first size. --mirror keeps the fbdev's size and writes a version-1 header (no requests).
//
// --mirror /dev/fb0 instead mirrors a 32-bit fbdev (e.g. the console on virtio-gpu) into the
// BAR: at --fps it compares each row with its last copy, copies the rows that changed and commits
// them as one damage rectangle of full rows; when nothing changed, nothing is committed (the
// sequence goes back to its even value). --frames then counts these checks.
// Output on stdout, one line per event, prefixed "barwriter:".

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/fb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "guest-common.h"

#define HEADER_PAGE 4096u
#define NO_PEER 0xffffffffu

// Header v1 field offsets (bytes).
enum {
  kMagic = 0,
  kVersion = 4,  // u16 version, u16 header size
  kFourcc = 8,
  kFlags = 12,
  kModifier = 16,
  kWidth = 24,
  kHeight = 28,
  kStride = 32,
  kOffset = 40,
  kSequence = 48,
  kDamageCount = 52,
  kDamage = 56,
  kCursorVisible = 320,
  kRequestAck = 352,
  kHostMagic = 0xf00,
  kHostPeer = 0xf04,
  kRequestSequence = 0xf08,
  kRequestWidth = 0xf0c,
  kRequestHeight = 0xf10,
};

static const uint32_t kBarMagic = 0x52424647;        // "GFBR"
static const uint32_t kHostMagicValue = 0x48424647;  // "GFBH"
static const uint32_t kXrgb8888 = 0x34325258;        // "XR24"
static const uint32_t kHeaderSize = 384;

struct options {
  uint32_t width, height;
  double fps;
  unsigned long frames;  // 0: forever
  int full_damage;
  int hold;
  uint32_t host_peer;  // NO_PEER: read it from the host area
  const char* device;  // PCI address, NULL: the first ivshmem device
  const char* mirror;  // fbdev to mirror, NULL: draw the pattern
};

struct bar {
  volatile uint8_t* mem;
  size_t size;
  volatile uint32_t* regs;
};

static void die(const char* what) {
  fprintf(stderr, "barwriter: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void usage(FILE* out) {
  fprintf(out,
          "usage: barwriter [--width 640] [--height 480] [--fps 30] [--frames N (0: forever)]\n"
          "                 [--damage box|full] [--host-peer ID] [--device 0000:00:04.0] "
          "[--hold]\n"
          "Draws the documented test pattern into the ivshmem BAR with guestfb's header and\n"
          "rings guestfb's doorbell after each frame; --hold keeps the last frame until killed.\n"
          "Follows guestfb's size requests (header version 2), also while holding.\n");
}

static uint32_t parse_u32(const char* text, int* ok) {
  char* end = NULL;
  unsigned long value = strtoul(text, &end, 0);
  if (!*text || *end || value > 0xffffffffUL) *ok = 0;
  return (uint32_t)value;
}

static void parse_options(int argc, char** argv, struct options* o) {
  static const struct option long_options[] = {{"width", required_argument, 0, 'w'},
                                               {"height", required_argument, 0, 'H'},
                                               {"fps", required_argument, 0, 'r'},
                                               {"frames", required_argument, 0, 'n'},
                                               {"damage", required_argument, 0, 'D'},
                                               {"host-peer", required_argument, 0, 'p'},
                                               {"device", required_argument, 0, 'd'},
                                               {"hold", no_argument, 0, 'k'},
                                               {"mirror", required_argument, 0, 'm'},
                                               {"help", no_argument, 0, 'h'},
                                               {0, 0, 0, 0}};
  *o = (struct options){640, 480, 30.0, 300, 0, 0, NO_PEER, NULL, NULL};
  int ok = 1;
  int c;
  while ((c = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
    switch (c) {
      case 'w':
        o->width = parse_u32(optarg, &ok);
        break;
      case 'H':
        o->height = parse_u32(optarg, &ok);
        break;
      case 'r':
        if (parse_fps(optarg, &o->fps)) ok = 0;
        break;
      case 'n':
        if (parse_frames(optarg, &o->frames)) ok = 0;
        break;
      case 'D':
        if (parse_damage(optarg, &o->full_damage)) ok = 0;
        break;
      case 'p':
        o->host_peer = parse_u32(optarg, &ok);
        if (o->host_peer > 0xffff) ok = 0;
        break;
      case 'd':
        o->device = optarg;
        break;
      case 'k':
        o->hold = 1;
        break;
      case 'm':
        o->mirror = optarg;
        break;
      case 'h':
        usage(stdout);
        exit(0);
      default:
        ok = 0;
    }
  }
  if (!o->width || !o->height || o->width > 16384 || o->height > 16384) ok = 0;
  if (ok && optind == argc) return;
  usage(stderr);
  exit(2);
}

static int read_hex_file(const char* dir, const char* name, unsigned long* value) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE* f = fopen(path, "r");
  if (!f) return -1;
  int ok = fscanf(f, "%lx", value) == 1;
  fclose(f);
  return ok ? 0 : -1;
}

// Finds the ivshmem device (1af4:1110) in sysfs; writes its folder into `dir`.
static int find_device(const char* wanted, char* dir, size_t size) {
  const char* base = "/sys/bus/pci/devices";
  DIR* d = opendir(base);
  if (!d) die(base);
  struct dirent* entry;
  int found = 0;
  while (!found && (entry = readdir(d)) != NULL) {
    if (entry->d_name[0] == '.') continue;
    if (wanted && strcmp(entry->d_name, wanted) != 0) continue;
    snprintf(dir, size, "%s/%s", base, entry->d_name);
    unsigned long vendor = 0, device = 0;
    if (read_hex_file(dir, "vendor", &vendor) || read_hex_file(dir, "device", &device)) continue;
    found = vendor == 0x1af4 && device == 0x1110;
  }
  closedir(d);
  return found;
}

static volatile uint8_t* map_resource(const char* dir, const char* name, size_t* size) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  int fd = open(path, O_RDWR | O_SYNC | O_CLOEXEC);
  if (fd < 0) die(path);
  struct stat st;
  if (fstat(fd, &st)) die(path);
  *size = (size_t)st.st_size;
  void* p = mmap(NULL, *size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) die(path);
  close(fd);
  return p;
}

static void put32(struct bar* b, size_t at, uint32_t value) {
  *(volatile uint32_t*)(b->mem + at) = value;
}

static uint32_t get32(struct bar* b, size_t at) { return *(volatile uint32_t*)(b->mem + at); }

static void put64(struct bar* b, size_t at, uint64_t value) {
  put32(b, at, (uint32_t)value);
  put32(b, at + 4, (uint32_t)(value >> 32));
}

static volatile uint32_t* pixels(struct bar* b) {
  return (volatile uint32_t*)(b->mem + HEADER_PAGE);
}

// The framebuffer at the current size: stride width*4, right after the header page.
static struct canvas bar_canvas(struct bar* b, const struct options* o) {
  return (struct canvas){pixels(b), o->width, o->width, o->height};
}

static void set_damage(struct bar* b, uint32_t x, uint32_t y, uint32_t w, uint32_t h) {
  put32(b, kDamageCount, 1);
  put32(b, kDamage, x);
  put32(b, kDamage + 4, y);
  put32(b, kDamage + 8, w);
  put32(b, kDamage + 12, h);
}

struct mirror {
  const uint8_t* fb;
  uint32_t line_length;
  uint8_t* shadow;  // the last copy, width * 4 bytes per row
};

// Opens and maps a 32-bit XRGB fbdev; the BAR framebuffer takes its resolution.
static void open_mirror(struct options* o, struct mirror* m) {
  int fd = open(o->mirror, O_RDONLY | O_CLOEXEC);
  if (fd < 0) die(o->mirror);
  struct fb_fix_screeninfo fix;
  struct fb_var_screeninfo var;
  if (ioctl(fd, FBIOGET_FSCREENINFO, &fix) || ioctl(fd, FBIOGET_VSCREENINFO, &var)) {
    die("FBIOGET_*SCREENINFO");
  }
  if (var.bits_per_pixel != 32 || var.red.offset != 16 || var.green.offset != 8 ||
      var.blue.offset != 0 || fix.line_length < var.xres * 4 ||
      (uint64_t)fix.line_length * var.yres > fix.smem_len) {
    fprintf(stderr, "barwriter: %s is not a 32-bit XRGB framebuffer\n", o->mirror);
    exit(1);
  }
  o->width = var.xres;
  o->height = var.yres;
  m->line_length = fix.line_length;
  void* p = mmap(NULL, fix.smem_len, PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) die("mmap fbdev");
  close(fd);
  m->fb = p;
  m->shadow = calloc((size_t)o->width * o->height, 4);
  if (!m->shadow) die("calloc");
}

// Copies the rows that differ from their last copy (all rows when `all`) into the BAR; returns
// how many, with the first and last changed row in *y0 and *y1.
static uint32_t mirror_rows(struct bar* b, const struct options* o, struct mirror* m, int all,
                            uint32_t* y0, uint32_t* y1) {
  size_t row_bytes = (size_t)o->width * 4;
  uint32_t changed = 0;
  for (uint32_t y = 0; y < o->height; y++) {
    const uint8_t* src = m->fb + (size_t)y * m->line_length;
    uint8_t* shadow = m->shadow + y * row_bytes;
    if (!all && memcmp(src, shadow, row_bytes) == 0) continue;
    memcpy(shadow, src, row_bytes);
    volatile uint32_t* dst = pixels(b) + (size_t)y * o->width;
    const uint32_t* words = (const uint32_t*)shadow;
    for (uint32_t x = 0; x < o->width; x++) dst[x] = 0xff000000u | words[x];
    if (!changed) *y0 = y;
    *y1 = y;
    changed++;
  }
  return changed;
}

// Whether a width x height XRGB framebuffer fits the BAR past the header page.
static int fits(struct bar* b, uint32_t width, uint32_t height) {
  return width >= 1 && height >= 1 && width <= 16384 && height <= 16384 &&
         HEADER_PAGE + (uint64_t)width * 4 * height <= b->size;
}

struct request {
  uint32_t sequence, width, height;
};

// Reads guestfb's size request; 0 when there is none or guestfb is writing it (odd sequence,
// or the sequence changed while reading).
static int read_request(struct bar* b, struct request* r) {
  r->sequence = get32(b, kRequestSequence);
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  r->width = get32(b, kRequestWidth);
  r->height = get32(b, kRequestHeight);
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  if (r->sequence == 0 || (r->sequence & 1) || get32(b, kRequestSequence) != r->sequence) return 0;
  return 1;
}

static int request_fits(struct bar* b, const struct request* r) {
  return fits(b, r->width, r->height);
}

int main(int argc, char** argv) {
  struct options o;
  parse_options(argc, argv, &o);
  setvbuf(stdout, NULL, _IOLBF, 0);

  char dir[512];
  if (!find_device(o.device, dir, sizeof dir)) {
    fprintf(stderr, "barwriter: no ivshmem device (1af4:1110) in /sys/bus/pci/devices\n");
    return 1;
  }
  // Without a driver nobody enabled the device; sysfs does (failure is fine if firmware did).
  char enable[600];
  snprintf(enable, sizeof enable, "%s/enable", dir);
  int enable_fd = open(enable, O_WRONLY | O_CLOEXEC);
  if (enable_fd >= 0) {
    if (write(enable_fd, "1", 1) != 1) printf("barwriter: enabling the device failed\n");
    close(enable_fd);
  }
  struct mirror m = {NULL, 0, NULL};
  if (o.mirror) open_mirror(&o, &m);
  struct bar b;
  size_t regs_size = 0;
  b.regs = (volatile uint32_t*)map_resource(dir, "resource0", &regs_size);
  b.mem = map_resource(dir, "resource2", &b.size);
  uint32_t position = b.regs[2];  // IVPosition
  uint32_t host_peer = o.host_peer;
  if (host_peer == NO_PEER && get32(&b, kHostMagic) == kHostMagicValue) {
    host_peer = get32(&b, kHostPeer);
  }
  // Pattern mode follows host size requests (header version 2); a request made before we
  // started sets the first size.
  int follows = o.mirror == NULL;
  uint32_t ack = 0;
  if (follows) {
    struct request r;
    if (read_request(&b, &r)) {
      ack = r.sequence;
      if (request_fits(&b, &r)) {
        o.width = r.width;
        o.height = r.height;
        printf("barwriter: starting at the requested %ux%u (request %u)\n", r.width, r.height,
               r.sequence);
      }
    }
  }
  if (!fits(&b, o.width, o.height)) {
    fprintf(stderr, "barwriter: %ux%u does not fit the %zu-byte BAR\n", o.width, o.height, b.size);
    return 1;
  }
  printf("barwriter: device %s BAR2 %zu bytes, IVPosition %u, host peer %d\n",
         strrchr(dir, '/') + 1, b.size, position, host_peer == NO_PEER ? -1 : (int)host_peer);

  // Each commit writes inside one odd/even sequence pair; the first (and each after a
  // re-layout) writes the whole header and every pixel.
  uint32_t sequence = get32(&b, kSequence) & ~1u;
  double period = 1.0 / o.fps;
  double next = now_seconds();
  unsigned long committed = 0;
  unsigned long frame = 0;  // frames drawn so far
  int layout_pending = 1;   // the next commit writes the layout and redraws everything
  int ack_pending = 0;      // the next commit reports a declined request
  int holding = 0;
  for (;;) {
    int drawing = o.frames == 0 || frame < o.frames;
    if (!drawing && !o.hold) break;
    if (follows) {
      struct request r;
      if (read_request(&b, &r) && r.sequence != ack) {
        ack = r.sequence;
        if (!request_fits(&b, &r)) {
          printf("barwriter: request %ux%u declined (does not fit the %zu-byte BAR)\n", r.width,
                 r.height, b.size);
          ack_pending = 1;
        } else if (r.width != o.width || r.height != o.height) {
          o.width = r.width;
          o.height = r.height;
          layout_pending = 1;
          printf("barwriter: resizing to %ux%u (request %u)\n", r.width, r.height, r.sequence);
        } else {
          ack_pending = 1;
        }
      }
    }
    if (!drawing && !layout_pending && !ack_pending) {
      if (!holding) printf("barwriter: holding the last frame\n");
      holding = 1;
      next += period;
      sleep_until(next);
      continue;
    }
    // While holding, a re-layout redraws the last frame at the new size.
    unsigned long shown = drawing ? frame : frame - 1;
    int full = layout_pending;
    uint64_t stride = (uint64_t)o.width * 4;
    struct canvas canvas = bar_canvas(&b, &o);
    put32(&b, kSequence, ++sequence);  // odd: writing
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    uint32_t rows = 0, y0 = 0, y1 = 0;
    if (o.mirror && !full) {
      rows = mirror_rows(&b, &o, &m, 0, &y0, &y1);
      if (rows == 0) {  // nothing changed: back to the committed value, no frame
        put32(&b, kSequence, --sequence);
        frame++;
        next += period;
        sleep_until(next);
        continue;
      }
      set_damage(&b, 0, y0, o.width, y1 - y0 + 1);
      if (o.full_damage) put32(&b, kDamageCount, 0);
    }
    if (full) {
      put32(&b, kMagic, kBarMagic);
      put32(&b, kVersion, (follows ? 2u : 1u) | (kHeaderSize << 16));
      put32(&b, kFourcc, kXrgb8888);
      put32(&b, kFlags, 0);
      put64(&b, kModifier, 0);
      put32(&b, kWidth, o.width);
      put32(&b, kHeight, o.height);
      put32(&b, kStride, (uint32_t)stride);
      put64(&b, kOffset, HEADER_PAGE);
      put32(&b, kCursorVisible, 0);
      if (o.mirror) {
        rows = mirror_rows(&b, &o, &m, 1, &y0, &y1);
      } else {
        draw_bars(&canvas, 0);
      }
    }
    if (follows) put32(&b, kRequestAck, ack);
    if (!o.mirror) {
      draw_counter(&canvas, shown & 0xffff);
      if (!full && !o.full_damage && has_counter(o.width, o.height)) {
        set_damage(&b, 0, o.height - COUNTER_CELL_SIZE, COUNTER_CELLS * COUNTER_CELL_SIZE,
                   COUNTER_CELL_SIZE);
      }
    }
    if (full || (o.full_damage && !o.mirror) || (!o.mirror && !has_counter(o.width, o.height))) {
      put32(&b, kDamageCount, 0);  // the whole frame
    }
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    put32(&b, kSequence, ++sequence);  // even: committed
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (host_peer != NO_PEER) b.regs[3] = (host_peer << 16) | 0;  // Doorbell, vector 0
    if (full && committed == 0) {
      printf("barwriter: first frame %ux%u stride %u at BAR offset %u\n", o.width, o.height,
             (uint32_t)stride, HEADER_PAGE);
    } else if (full) {
      printf("barwriter: resized to %ux%u stride %u, frame %lu sequence %u\n", o.width, o.height,
             (uint32_t)stride, shown, sequence);
    }
    layout_pending = 0;
    ack_pending = 0;
    committed++;
    if (o.mirror) {
      printf("barwriter: mirrored %u rows (%u..%u), sequence %u\n", rows, y0, y1, sequence);
    } else if (drawing && o.frames && o.frames <= 1000) {
      printf("barwriter: frame %lu sequence %u\n", shown, sequence);
    }
    if (drawing) frame++;
    next += period;
    sleep_until(next);
  }
  printf("barwriter: done (%lu frames committed)\n", committed);
  return 0;
}
