// What the test guest's pattern programs share: the test pattern (drawpattern.c documents it;
// examples/guest/pattern.ts is what the host checks against) drawn into a framebuffer, and the
// frame clock and frame options. drawpattern draws into a DRM dumb buffer, barwriter into the
// ivshmem BAR; both must draw the very same pixels, so the drawing lives here once.
#ifndef GUESTFB_GUEST_COMMON_H
#define GUESTFB_GUEST_COMMON_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define COUNTER_CELLS 16
#define COUNTER_CELL_SIZE 16

// Bar colours, 0xRRGGBB: white, yellow, cyan, green, magenta, red, blue, black.
static const uint32_t kBarColors[8] = {0xffffff, 0xffff00, 0x00ffff, 0x00ff00,
                                       0xff00ff, 0xff0000, 0x0000ff, 0x000000};

// An XRGB8888 framebuffer. Volatile: it is memory the host (or the device) reads while we write.
struct canvas {
  volatile uint32_t* pixels;
  uint32_t stride;  // in pixels
  uint32_t width, height;
};

// Fills [x0, x1) x [y0, y1) with `rgb`, the X byte 0xff.
static inline void canvas_fill(const struct canvas* c, uint32_t x0, uint32_t y0, uint32_t x1,
                               uint32_t y1, uint32_t rgb) {
  for (uint32_t y = y0; y < y1; y++) {
    volatile uint32_t* row = c->pixels + (size_t)y * c->stride;
    for (uint32_t x = x0; x < x1; x++) row[x] = 0xff000000u | rgb;
  }
}

// Whether a width x height frame is large enough for the frame counter.
static inline int has_counter(uint32_t width, uint32_t height) {
  return width >= COUNTER_CELLS * COUNTER_CELL_SIZE && height >= COUNTER_CELL_SIZE;
}

// The 16-cell frame counter, bottom-left: cell k white when bit (15 - k) of `frame` is set.
static inline void draw_counter(const struct canvas* c, unsigned long frame) {
  if (!has_counter(c->width, c->height)) return;
  for (uint32_t k = 0; k < COUNTER_CELLS; k++) {
    int bit = (frame >> (COUNTER_CELLS - 1 - k)) & 1;
    canvas_fill(c, k * COUNTER_CELL_SIZE, c->height - COUNTER_CELL_SIZE,
                (k + 1) * COUNTER_CELL_SIZE, c->height, bit ? 0xffffff : 0x000000);
  }
}

// The 8 vertical bars; bar b covers columns [b*W/8, (b+1)*W/8) in kBarColors[(b + rotation) % 8]
// (drawpattern rotates by the output's index).
static inline void draw_bars(const struct canvas* c, uint32_t rotation) {
  for (uint32_t b = 0; b < 8; b++) {
    uint32_t x0 = (uint32_t)((uint64_t)b * c->width / 8);
    uint32_t x1 = (uint32_t)((uint64_t)(b + 1) * c->width / 8);
    canvas_fill(c, x0, 0, x1, c->height, kBarColors[(b + rotation) % 8]);
  }
}

// The options both programs take for their frames, parsed alike. Each returns 0, or -1 when
// `text` is not a valid value (the caller prints its usage).

// --fps: frames per second, more than 0 and at most 1000.
static inline int parse_fps(const char* text, double* fps) {
  char* end = NULL;
  *fps = strtod(text, &end);
  return *end || !(*fps > 0 && *fps <= 1000) ? -1 : 0;
}

// --frames: how many frames, 0 for no end.
static inline int parse_frames(const char* text, unsigned long* frames) {
  char* end = NULL;
  *frames = strtoul(text, &end, 10);
  return *end ? -1 : 0;
}

// --damage full|box: the whole frame, or only the counter strip.
static inline int parse_damage(const char* text, int* full_damage) {
  if (strcmp(text, "full") == 0) {
    *full_damage = 1;
  } else if (strcmp(text, "box") == 0) {
    *full_damage = 0;
  } else {
    return -1;
  }
  return 0;
}

// CLOCK_MONOTONIC in seconds: frames are scheduled on absolute times, so a slow frame does not
// shift every frame after it.
static inline double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void sleep_until(double deadline) {
  struct timespec ts;
  ts.tv_sec = (time_t)deadline;
  ts.tv_nsec = (long)((deadline - (double)ts.tv_sec) * 1e9);
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
}

#endif
