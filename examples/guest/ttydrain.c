// ttydrain: waits until everything written to a terminal (default /dev/console) has left the
// UART. The guest's /init runs it before powering off, so the last console lines (the command's
// output and the exit marker) are not cut off by the power-off.
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

int main(int argc, char** argv) {
  const char* path = argc > 1 ? argv[1] : "/dev/console";
  int fd = open(path, O_WRONLY | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) {
    fprintf(stderr, "ttydrain: %s: %s\n", path, strerror(errno));
    return 1;
  }
  if (tcdrain(fd) != 0) {
    fprintf(stderr, "ttydrain: tcdrain %s: %s\n", path, strerror(errno));
    close(fd);
    return 1;
  }
  close(fd);
  return 0;
}
