// drawpattern: shows a deterministic test pattern on the guest's DRM outputs, then keeps sending
// damage (DRM_IOCTL_MODE_DIRTYFB) at a fixed rate, so host-side tests can assert exact pixels.
// Built static for the test guest; raw DRM ioctls, no libdrm (only its kernel UAPI headers).
//
// The pattern, for an output of W x H pixels (XRGB8888, the X byte is written as 0xff):
//   - 8 vertical bars; bar b covers columns [b*W/8, (b+1)*W/8) (integer division) and, on the
//     output with index o (0-based, in the order the kernel lists connected connectors), has
//     color kBarColors[(b + o) % 8]:
//     white ffffff, yellow ffff00, cyan 00ffff, green 00ff00, magenta ff00ff, red ff0000,
//     blue 0000ff, black 000000.
//     With --pattern solid:RRGGBB the whole output is that color instead of bars.
//   - a frame counter over the bars, bottom-left: 16 cells of 16x16 pixels, cell k covering
//     columns [16k, 16k+16) and rows [H-16, H); it is white when bit (15-k) of the frame number
//     (modulo 65536) is set, black otherwise (cell 0 is the most significant bit). Frame 0 is
//     the first frame shown. Skipped when the output is smaller than 256x16.
//
// Cursor (--cursor): each output also gets a 64x64 ARGB8888 cursor through
// DRM_IOCTL_MODE_CURSOR2 (virtio-gpu's UPDATE_CURSOR): transparent but for a 16x16 opaque square
// at its top-left in kCursorColors[o % 4] (o as for the bars: orange ff8000, violet 8000ff,
// mint 00ff80, pink ff0080), hotspot (5, 3), placed at the output's centre.
//
// Damage: --damage full sends the whole frame each frame, --damage box only the counter strip.
// Mode: see pick_mode (--mode WxH picks the exact or the largest fitting listed mode).
// Output on stdout, one line per event, prefixed "drawpattern:".

#include <drm.h>
#include <drm_fourcc.h>
#include <drm_mode.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "guest-common.h"

#define MAX_OUTPUTS 16
#define CURSOR_SIZE 64
#define CURSOR_SQUARE 16
#define CURSOR_HOT_X 5
#define CURSOR_HOT_Y 3

static const uint32_t kCursorColors[4] = {0xff8000, 0x8000ff, 0x00ff80, 0xff0080};

struct options {
  const char* device;
  int solid;  // 1 when solid_color replaces the bars
  uint32_t solid_color;
  double fps;
  unsigned long frames;  // 0: forever
  int full_damage;
  int hold;
  int cursor;
  int output;                        // -1: all, -2: last, otherwise an index
  uint32_t mode_width, mode_height;  // 0: automatic
};

struct output {
  int index;
  uint32_t connector_id;
  uint32_t crtc_id;
  struct drm_mode_modeinfo mode;
  uint32_t width, height, pitch;
  uint64_t size;
  uint32_t handle;
  uint32_t fb_id;
  uint32_t* pixels;
  struct canvas canvas;  // the pixels, for drawing
};

static int xioctl(int fd, unsigned long request, void* arg) {
  int result;
  do {
    result = ioctl(fd, request, arg);
  } while (result == -1 && (errno == EINTR || errno == EAGAIN));
  return result;
}

static void die(const char* what) {
  fprintf(stderr, "drawpattern: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void* xcalloc(size_t count, size_t size) {
  void* p = calloc(count ? count : 1, size);
  if (!p) die("calloc");
  return p;
}

static uint64_t to_ptr(const void* p) { return (uint64_t)(uintptr_t)p; }

static void usage(FILE* out) {
  fprintf(out,
          "usage: drawpattern [--device /dev/dri/card0] [--pattern bars|solid:RRGGBB]\n"
          "                   [--fps 30] [--frames N (0: forever)] [--damage full|box]\n"
          "                   [--output all|last|N] [--mode WxH] [--hold] [--cursor]\n"
          "Draws the documented test pattern on connected outputs, then sends DIRTYFB damage\n"
          "at --fps for --frames frames; --hold keeps the last frame up until killed.\n");
}

static void parse_options(int argc, char** argv, struct options* o) {
  static const struct option long_options[] = {{"device", required_argument, 0, 'd'},
                                               {"pattern", required_argument, 0, 'p'},
                                               {"fps", required_argument, 0, 'r'},
                                               {"frames", required_argument, 0, 'n'},
                                               {"damage", required_argument, 0, 'D'},
                                               {"output", required_argument, 0, 'o'},
                                               {"hold", no_argument, 0, 'H'},
                                               {"mode", required_argument, 0, 'm'},
                                               {"cursor", no_argument, 0, 'c'},
                                               {"help", no_argument, 0, 'h'},
                                               {0, 0, 0, 0}};
  *o = (struct options){"/dev/dri/card0", 0, 0, 30.0, 300, 1, 0, 0, -1, 0, 0};
  int c;
  while ((c = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
    char* end = NULL;
    switch (c) {
      case 'd':
        o->device = optarg;
        break;
      case 'p':
        if (strcmp(optarg, "bars") == 0) {
          o->solid = 0;
        } else if (strncmp(optarg, "solid:", 6) == 0 && strlen(optarg) == 12) {
          o->solid = 1;
          o->solid_color = (uint32_t)strtoul(optarg + 6, &end, 16);
          if (*end) goto bad;
        } else {
          goto bad;
        }
        break;
      case 'r':
        if (parse_fps(optarg, &o->fps)) goto bad;
        break;
      case 'n':
        if (parse_frames(optarg, &o->frames)) goto bad;
        break;
      case 'D':
        if (parse_damage(optarg, &o->full_damage)) goto bad;
        break;
      case 'o':
        if (strcmp(optarg, "all") == 0) {
          o->output = -1;
        } else if (strcmp(optarg, "last") == 0) {
          o->output = -2;
        } else {
          o->output = (int)strtol(optarg, &end, 10);
          if (*end || o->output < 0) goto bad;
        }
        break;
      case 'H':
        o->hold = 1;
        break;
      case 'c':
        o->cursor = 1;
        break;
      case 'm':
        o->mode_width = (uint32_t)strtoul(optarg, &end, 10);
        if (*end != 'x') goto bad;
        o->mode_height = (uint32_t)strtoul(end + 1, &end, 10);
        if (*end || !o->mode_width || !o->mode_height) goto bad;
        break;
      case 'h':
        usage(stdout);
        exit(0);
      default:
        goto bad;
    }
  }
  if (optind == argc) return;
bad:
  usage(stderr);
  exit(2);
}

static void draw_background(const struct output* out, const struct options* o) {
  if (o->solid) {
    canvas_fill(&out->canvas, 0, 0, out->width, out->height, o->solid_color);
    return;
  }
  draw_bars(&out->canvas, (uint32_t)out->index);
}

// Mode choice: with --mode WxH the exact mode, else the largest listed mode that fits in WxH;
// otherwise (or if none fits) a mode chosen on the kernel command line, else the preferred
// mode, else the first.
static struct drm_mode_modeinfo pick_mode(const struct drm_mode_modeinfo* modes, uint32_t count,
                                          const struct options* o) {
  const struct drm_mode_modeinfo* best = &modes[0];
  uint64_t best_score = 0;
  for (uint32_t m = 0; m < count; m++) {
    uint64_t score = 0;
    uint64_t area = (uint64_t)modes[m].hdisplay * modes[m].vdisplay;
    if (modes[m].hdisplay == o->mode_width && modes[m].vdisplay == o->mode_height) {
      score = 1ull << 62;
    } else if (modes[m].hdisplay <= o->mode_width && modes[m].vdisplay <= o->mode_height) {
      score = (1ull << 61) + area;
    } else if (modes[m].type & DRM_MODE_TYPE_USERDEF) {
      score = 2;
    } else if (modes[m].type & DRM_MODE_TYPE_PREFERRED) {
      score = 1;
    }
    if (score > best_score) {
      best_score = score;
      best = &modes[m];
    }
  }
  return *best;
}

// Returns the number of connected outputs found (at most MAX_OUTPUTS), each with a mode and CRTC.
static int find_outputs(int fd, const struct options* o, struct output* outputs) {
  struct drm_mode_card_res res;
  memset(&res, 0, sizeof res);
  if (xioctl(fd, DRM_IOCTL_MODE_GETRESOURCES, &res)) die("DRM_IOCTL_MODE_GETRESOURCES");
  uint32_t* fbs = xcalloc(res.count_fbs, sizeof(uint32_t));
  uint32_t* crtcs = xcalloc(res.count_crtcs, sizeof(uint32_t));
  uint32_t* connectors = xcalloc(res.count_connectors, sizeof(uint32_t));
  uint32_t* encoders = xcalloc(res.count_encoders, sizeof(uint32_t));
  res.fb_id_ptr = to_ptr(fbs);
  res.crtc_id_ptr = to_ptr(crtcs);
  res.connector_id_ptr = to_ptr(connectors);
  res.encoder_id_ptr = to_ptr(encoders);
  if (xioctl(fd, DRM_IOCTL_MODE_GETRESOURCES, &res)) die("DRM_IOCTL_MODE_GETRESOURCES");

  uint32_t used_crtcs = 0;
  int count = 0;
  for (uint32_t i = 0; i < res.count_connectors && count < MAX_OUTPUTS; i++) {
    struct drm_mode_get_connector conn;
    memset(&conn, 0, sizeof conn);
    conn.connector_id = connectors[i];
    if (xioctl(fd, DRM_IOCTL_MODE_GETCONNECTOR, &conn)) die("DRM_IOCTL_MODE_GETCONNECTOR");
    if (conn.connection != 1 || conn.count_modes == 0) continue;  // 1: DRM_MODE_CONNECTED
    struct drm_mode_modeinfo* modes = xcalloc(conn.count_modes, sizeof *modes);
    uint32_t* conn_encoders = xcalloc(conn.count_encoders, sizeof(uint32_t));
    uint32_t* props = xcalloc(conn.count_props, sizeof(uint32_t));
    uint64_t* values = xcalloc(conn.count_props, sizeof(uint64_t));
    conn.modes_ptr = to_ptr(modes);
    conn.encoders_ptr = to_ptr(conn_encoders);
    conn.props_ptr = to_ptr(props);
    conn.prop_values_ptr = to_ptr(values);
    uint32_t wanted_modes = conn.count_modes, wanted_encoders = conn.count_encoders,
             wanted_props = conn.count_props;
    if (xioctl(fd, DRM_IOCTL_MODE_GETCONNECTOR, &conn)) die("DRM_IOCTL_MODE_GETCONNECTOR");
    // The kernel reports the current counts; only trust entries that fit what was allocated.
    if (conn.count_modes > wanted_modes) conn.count_modes = wanted_modes;
    if (conn.count_encoders > wanted_encoders) conn.count_encoders = wanted_encoders;
    (void)wanted_props;

    struct output* out = &outputs[count];
    memset(out, 0, sizeof *out);
    out->mode = pick_mode(modes, conn.count_modes, o);
    uint32_t encoder_id = conn.encoder_id;
    if (!encoder_id && conn.count_encoders) encoder_id = conn_encoders[0];
    struct drm_mode_get_encoder enc;
    memset(&enc, 0, sizeof enc);
    enc.encoder_id = encoder_id;
    if (xioctl(fd, DRM_IOCTL_MODE_GETENCODER, &enc)) die("DRM_IOCTL_MODE_GETENCODER");
    for (uint32_t c = 0; c < res.count_crtcs && c < 32; c++) {
      if ((enc.possible_crtcs & (1u << c)) && !(used_crtcs & (1u << c))) {
        used_crtcs |= 1u << c;
        out->crtc_id = crtcs[c];
        break;
      }
    }
    free(modes);
    free(conn_encoders);
    free(props);
    free(values);
    if (!out->crtc_id) {
      printf("drawpattern: connector %u has no free CRTC, skipped\n", connectors[i]);
      continue;
    }
    out->connector_id = connectors[i];
    out->index = count++;
  }
  free(fbs);
  free(crtcs);
  free(connectors);
  free(encoders);
  return count;
}

static void create_framebuffer(int fd, struct output* out) {
  struct drm_mode_create_dumb create;
  memset(&create, 0, sizeof create);
  create.width = out->mode.hdisplay;
  create.height = out->mode.vdisplay;
  create.bpp = 32;
  if (xioctl(fd, DRM_IOCTL_MODE_CREATE_DUMB, &create)) die("DRM_IOCTL_MODE_CREATE_DUMB");
  out->width = create.width;
  out->height = create.height;
  out->pitch = create.pitch;
  out->size = create.size;
  out->handle = create.handle;

  struct drm_mode_fb_cmd2 fb;
  memset(&fb, 0, sizeof fb);
  fb.width = out->width;
  fb.height = out->height;
  fb.pixel_format = DRM_FORMAT_XRGB8888;
  fb.handles[0] = out->handle;
  fb.pitches[0] = out->pitch;
  if (xioctl(fd, DRM_IOCTL_MODE_ADDFB2, &fb)) die("DRM_IOCTL_MODE_ADDFB2");
  out->fb_id = fb.fb_id;

  struct drm_mode_map_dumb map;
  memset(&map, 0, sizeof map);
  map.handle = out->handle;
  if (xioctl(fd, DRM_IOCTL_MODE_MAP_DUMB, &map)) die("DRM_IOCTL_MODE_MAP_DUMB");
  void* pixels = mmap(NULL, out->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)map.offset);
  if (pixels == MAP_FAILED) die("mmap dumb buffer");
  out->pixels = pixels;
  out->canvas = (struct canvas){out->pixels, out->pitch / 4, out->width, out->height};
}

static void set_crtc(int fd, struct output* out) {
  struct drm_mode_crtc crtc;
  memset(&crtc, 0, sizeof crtc);
  crtc.crtc_id = out->crtc_id;
  crtc.fb_id = out->fb_id;
  crtc.set_connectors_ptr = to_ptr(&out->connector_id);
  crtc.count_connectors = 1;
  crtc.mode = out->mode;
  crtc.mode_valid = 1;
  if (xioctl(fd, DRM_IOCTL_MODE_SETCRTC, &crtc)) die("DRM_IOCTL_MODE_SETCRTC");
}

// The output's cursor (see the header): a dumb buffer handed to DRM_IOCTL_MODE_CURSOR2, kept
// until exit.
static void set_cursor(int fd, const struct output* out) {
  struct drm_mode_create_dumb create;
  memset(&create, 0, sizeof create);
  create.width = CURSOR_SIZE;
  create.height = CURSOR_SIZE;
  create.bpp = 32;
  if (xioctl(fd, DRM_IOCTL_MODE_CREATE_DUMB, &create)) die("DRM_IOCTL_MODE_CREATE_DUMB (cursor)");
  struct drm_mode_map_dumb map;
  memset(&map, 0, sizeof map);
  map.handle = create.handle;
  if (xioctl(fd, DRM_IOCTL_MODE_MAP_DUMB, &map)) die("DRM_IOCTL_MODE_MAP_DUMB (cursor)");
  uint8_t* pixels =
      mmap(NULL, create.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)map.offset);
  if (pixels == MAP_FAILED) die("mmap cursor buffer");
  uint32_t color = 0xff000000u | kCursorColors[out->index % 4];
  for (uint32_t y = 0; y < CURSOR_SIZE; y++) {
    uint32_t* row = (uint32_t*)(pixels + (size_t)y * create.pitch);
    for (uint32_t x = 0; x < CURSOR_SIZE; x++)
      row[x] = x < CURSOR_SQUARE && y < CURSOR_SQUARE ? color : 0;
  }
  munmap(pixels, create.size);

  struct drm_mode_cursor2 cursor;
  memset(&cursor, 0, sizeof cursor);
  cursor.flags = DRM_MODE_CURSOR_BO | DRM_MODE_CURSOR_MOVE;
  cursor.crtc_id = out->crtc_id;
  cursor.x = (int32_t)(out->width / 2) - CURSOR_HOT_X;
  cursor.y = (int32_t)(out->height / 2) - CURSOR_HOT_Y;
  cursor.width = CURSOR_SIZE;
  cursor.height = CURSOR_SIZE;
  cursor.handle = create.handle;
  cursor.hot_x = CURSOR_HOT_X;
  cursor.hot_y = CURSOR_HOT_Y;
  if (xioctl(fd, DRM_IOCTL_MODE_CURSOR2, &cursor)) die("DRM_IOCTL_MODE_CURSOR2");
  printf("drawpattern: cursor on output %d: %06x square, hotspot %d,%d\n", out->index,
         kCursorColors[out->index % 4], CURSOR_HOT_X, CURSOR_HOT_Y);
}

static void send_damage(int fd, struct output* out, int full) {
  struct drm_clip_rect clip;
  if (full || !has_counter(out->width, out->height)) {
    clip = (struct drm_clip_rect){0, 0, (uint16_t)out->width, (uint16_t)out->height};
  } else {
    clip = (struct drm_clip_rect){0, (uint16_t)(out->height - COUNTER_CELL_SIZE),
                                  COUNTER_CELLS * COUNTER_CELL_SIZE, (uint16_t)out->height};
  }
  struct drm_mode_fb_dirty_cmd dirty;
  memset(&dirty, 0, sizeof dirty);
  dirty.fb_id = out->fb_id;
  dirty.num_clips = 1;
  dirty.clips_ptr = to_ptr(&clip);
  if (xioctl(fd, DRM_IOCTL_MODE_DIRTYFB, &dirty)) die("DRM_IOCTL_MODE_DIRTYFB");
}

static void release_framebuffer(int fd, struct output* out) {
  munmap(out->pixels, out->size);
  if (xioctl(fd, DRM_IOCTL_MODE_RMFB, &out->fb_id)) die("DRM_IOCTL_MODE_RMFB");
  struct drm_mode_destroy_dumb destroy = {out->handle};
  if (xioctl(fd, DRM_IOCTL_MODE_DESTROY_DUMB, &destroy)) die("DRM_IOCTL_MODE_DESTROY_DUMB");
}

int main(int argc, char** argv) {
  struct options o;
  parse_options(argc, argv, &o);
  setvbuf(stdout, NULL, _IOLBF, 0);

  int fd = open(o.device, O_RDWR | O_CLOEXEC);
  if (fd < 0) die(o.device);
  if (xioctl(fd, DRM_IOCTL_SET_MASTER, NULL)) {
    printf("drawpattern: DRM_IOCTL_SET_MASTER failed (%s), continuing\n", strerror(errno));
  }

  static struct output found[MAX_OUTPUTS];
  int found_count = find_outputs(fd, &o, found);
  if (found_count == 0) {
    fprintf(stderr, "drawpattern: no connected output on %s\n", o.device);
    return 1;
  }
  struct output* outputs = found;
  int count = found_count;
  if (o.output == -2) {
    outputs = &found[found_count - 1];
    count = 1;
  } else if (o.output >= 0) {
    if (o.output >= found_count) {
      fprintf(stderr, "drawpattern: output %d requested, %d connected\n", o.output, found_count);
      return 1;
    }
    outputs = &found[o.output];
    count = 1;
  }

  for (int i = 0; i < count; i++) {
    struct output* out = &outputs[i];
    create_framebuffer(fd, out);
    draw_background(out, &o);
    draw_counter(&out->canvas, 0);
    set_crtc(fd, out);
    send_damage(fd, out, 1);
    if (o.cursor) set_cursor(fd, out);
    printf("drawpattern: output %d connector %u crtc %u mode %ux%u fb %u pitch %u\n", out->index,
           out->connector_id, out->crtc_id, out->width, out->height, out->fb_id, out->pitch);
  }
  printf("drawpattern: frame 0 shown\n");

  double start = now_seconds();
  unsigned long frame = 1;
  for (; o.frames == 0 || frame < o.frames; frame++) {
    sleep_until(start + (double)frame / o.fps);
    for (int i = 0; i < count; i++) {
      draw_counter(&outputs[i].canvas, frame);
      send_damage(fd, &outputs[i], o.full_damage);
    }
  }
  double elapsed = now_seconds() - start;
  printf("drawpattern: %lu frames in %.3f s (last frame %lu)\n", frame, elapsed, frame - 1);

  if (o.hold) {
    printf("drawpattern: holding the last frame\n");
    for (;;) pause();
  }
  for (int i = 0; i < count; i++) release_framebuffer(fd, &outputs[i]);
  close(fd);
  return 0;
}
