// evdump: prints every input event the guest's evdev nodes deliver, so a host-side test can
// assert the exact sequence an input device produced. Built static for the test guest.
//
//   evdump [--out FILE] [--wait SECONDS]
//
// Waits up to --wait seconds (default 30) for /dev/input/event0, opens every
// /dev/input/eventN that exists, and writes to FILE (default stdout), one line each:
//   evdump: device N NAME             once per node (EVIOCGNAME)
//   evdump: ready                     after every node is open and quiet (see below)
//   E N TYPE CODE VALUE T             one line per input_event read from eventN, numbers in
//                                     decimal; T is the read time, CLOCK_MONOTONIC microseconds
// Kernel autorepeat is switched off on every node that has it (EVIOCSREP with period 0), so a
// key held by the host shows as one press and one release, as sent. Setting it makes the input
// core queue two EV_REP events for the node's readers; evdump flushes them (an EV_SYN written
// to the node) and reads them before "ready", so nothing of its own setup follows "ready".
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/input.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define MAX_NODES 32

struct node {
  int fd;
  int number;
};

static long long now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

// Reads what is queued on `n` (non-blocking) and prints it; returns the events printed, or -1
// when the node went away.
static int drain(FILE* out, const struct node* n) {
  struct input_event events[64];
  int printed = 0;
  for (;;) {
    ssize_t got = read(n->fd, events, sizeof events);
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      fprintf(out, "evdump: read event%d: %s\n", n->number, strerror(errno));
      return -1;
    }
    if (got == 0) return -1;
    long long t = now_us();
    size_t count = (size_t)got / sizeof events[0];
    for (size_t i = 0; i < count; i++) {
      fprintf(out, "E %d %u %u %d %lld\n", n->number, events[i].type, events[i].code,
              events[i].value, t);
    }
    printed += (int)count;
  }
  fflush(out);
  return printed;
}

int main(int argc, char** argv) {
  const char* out_path = NULL;
  int wait_s = 30;
  static const struct option options[] = {
      {"out", required_argument, 0, 'o'}, {"wait", required_argument, 0, 'w'}, {0, 0, 0, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
    if (c == 'o') {
      out_path = optarg;
    } else if (c == 'w') {
      wait_s = atoi(optarg);
    } else {
      fprintf(stderr, "usage: evdump [--out FILE] [--wait SECONDS]\n");
      return 2;
    }
  }
  FILE* out = stdout;
  if (out_path) {
    out = fopen(out_path, "w");
    if (!out) {
      fprintf(stderr, "evdump: %s: %s\n", out_path, strerror(errno));
      return 1;
    }
  }
  for (int i = 0; i < wait_s * 10 && access("/dev/input/event0", F_OK) != 0; i++) {
    usleep(100000);
  }
  struct node nodes[MAX_NODES];
  int count = 0;
  for (int number = 0; number < MAX_NODES; number++) {
    char path[64];
    snprintf(path, sizeof path, "/dev/input/event%d", number);
    int fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) continue;
    char name[256] = "";
    if (ioctl(fd, EVIOCGNAME(sizeof name - 1), name) < 0) strcpy(name, "?");
    fprintf(out, "evdump: device %d %s\n", number, name);
    unsigned long ev_bits = 0;
    if (ioctl(fd, EVIOCGBIT(0, sizeof ev_bits), &ev_bits) >= 0 && (ev_bits & (1UL << EV_REP))) {
      unsigned int rep[2] = {500, 0};  // delay, period: a zero period disables autorepeat
      struct input_event syn = {.type = EV_SYN, .code = SYN_REPORT, .value = 0};
      if (ioctl(fd, EVIOCSREP, rep) < 0 || write(fd, &syn, sizeof syn) != (ssize_t)sizeof syn) {
        fprintf(out, "evdump: event%d: cannot switch autorepeat off: %s\n", number,
                strerror(errno));
      }
    }
    nodes[count].fd = fd;
    nodes[count].number = number;
    count++;
  }
  if (count == 0) {
    fprintf(out, "evdump: no /dev/input/event* node\n");
    return 1;
  }
  struct pollfd polls[MAX_NODES];
  for (int i = 0; i < count; i++) polls[i] = (struct pollfd){.fd = nodes[i].fd, .events = POLLIN};
  // Our own setup events, then silence for a moment: everything after "ready" is the host's.
  while (poll(polls, (nfds_t)count, 200) > 0) {
    for (int i = 0; i < count; i++) {
      if (polls[i].revents) drain(out, &nodes[i]);
    }
  }
  fprintf(out, "evdump: ready\n");
  fflush(out);
  for (;;) {
    int ready = poll(polls, (nfds_t)count, -1);
    if (ready < 0) {
      if (errno == EINTR) continue;
      fprintf(out, "evdump: poll: %s\n", strerror(errno));
      return 1;
    }
    for (int i = 0; i < count; i++) {
      if (!polls[i].revents) continue;
      if (drain(out, &nodes[i]) < 0) {
        close(nodes[i].fd);
        polls[i].fd = -1;  // poll skips it from now on
      }
    }
  }
}
