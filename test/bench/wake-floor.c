// The wake-up floor of a C process (test/bench/wake-floor.ts): waits for the kick eventfd (fd
// 3) in epoll, drains it and signals the ack eventfd (fd 4), like the smallest possible back-end
// of a frame. What this costs per wake-up no process here can go below.
#include <stdint.h>
#include <sys/epoll.h>
#include <unistd.h>

int main(void) {
  int poller = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event kick = {.events = EPOLLIN, .data.fd = 3};
  if (poller < 0 || epoll_ctl(poller, EPOLL_CTL_ADD, 3, &kick) < 0) return 1;
  uint64_t value = 1;
  if (write(4, &value, sizeof value) != sizeof value) return 1;
  for (;;) {
    struct epoll_event ready;
    int count = epoll_wait(poller, &ready, 1, -1);
    if (count < 0) continue;
    if (read(3, &value, sizeof value) != sizeof value) continue;
    value = 1;
    if (write(4, &value, sizeof value) != sizeof value) return 1;
  }
}
