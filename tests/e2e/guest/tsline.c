/* tsline — copy stdin to stdout line by line, each line prefixed with the CLOCK_REALTIME seconds at
 * which it was read ("1795322803.957196 text"), flushed at once. Used to time the messages of a
 * program that logs without timestamps (earlyoom); its stdout must then be line-buffered, or be a
 * pipe or FIFO it flushes per line.
 *
 *   PROGRAM 2>&1 | tsline > FILE
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(void) {
  char *line = NULL;
  size_t size = 0;
  ssize_t n;
  while ((n = getline(&line, &size, stdin)) > 0) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    printf("%lld.%06ld %s", (long long)ts.tv_sec, ts.tv_nsec / 1000, line);
    if (line[n - 1] != '\n') putchar('\n');
    fflush(stdout);
  }
  free(line);
  return 0;
}
