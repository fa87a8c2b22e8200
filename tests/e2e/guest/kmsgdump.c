/* kmsgdump — read the kernel log records from /dev/kmsg without blocking.
 *
 *   kmsgdump -l                 print the sequence number of the newest record (-1 if none)
 *   kmsgdump [-a SEQ]           print every record with seq > SEQ, one per line, raw
 *                               ("prio,seq,usec,flags;message"; continuation lines dropped)
 *   kmsgdump [-a SEQ] -w TEXT [-t SECONDS] [-g MS]
 *                               wait until a record with seq > SEQ contains TEXT (at most SECONDS,
 *                               default 30), keep reading MS more milliseconds (default 300), then
 *                               print every record with seq > SEQ. Exit 1 if TEXT never came.
 *   -r                          raw: print each record exactly as read(2) returned it, its
 *                               dictionary lines (" KEY=value", after the first newline) included
 * Records overwritten while reading (EPIPE) are skipped.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct record {
  long long seq;
  char *text;
};

static struct record *records;
static size_t count, capacity;
static int raw;

static double monotonic(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Reads every record available now; returns 1 if a new one (seq > after) contains needle. */
static int drain(int fd, long long after, const char *needle, long long *last_seq) {
  char buf[8192 + 1];
  int found = 0;
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n < 0) {
      if (errno == EINTR || errno == EPIPE) continue;
      if (errno == EAGAIN) return found;
      perror("kmsgdump: read /dev/kmsg");
      exit(2);
    }
    if (n == 0) return found;
    buf[n] = '\0';
    char *nl = strchr(buf, '\n');
    char *full = strdup(buf);                   /* the record as read, dictionary lines included */
    if (full == NULL) { perror("kmsgdump"); exit(2); }
    if (nl != NULL) *nl = '\0';                 /* drop the " KEY=value" continuation lines */
    long long seq = -1;
    char *comma = strchr(buf, ',');
    if (comma != NULL) seq = strtoll(comma + 1, NULL, 10);
    if (seq > *last_seq) *last_seq = seq;
    if (seq <= after) { free(full); continue; }
    if (count == capacity) {
      capacity = capacity ? capacity * 2 : 256;
      records = realloc(records, capacity * sizeof *records);
      if (records == NULL) { perror("kmsgdump"); exit(2); }
    }
    records[count].seq = seq;
    if (raw) {
      records[count].text = full;
    } else {
      records[count].text = strdup(buf);
      free(full);
    }
    ++count;
    if (needle != NULL) {
      char *msg = strchr(buf, ';');
      if (msg != NULL && strstr(msg + 1, needle) != NULL) found = 1;
    }
  }
}

int main(int argc, char **argv) {
  long long after = -1;
  int last_only = 0;
  const char *needle = NULL;
  double wait_s = 30.0;
  long grace_ms = 300;
  int opt;
  while ((opt = getopt(argc, argv, "la:w:t:g:r")) != -1) {
    switch (opt) {
      case 'l': last_only = 1; break;
      case 'a': after = strtoll(optarg, NULL, 10); break;
      case 'w': needle = optarg; break;
      case 't': wait_s = strtod(optarg, NULL); break;
      case 'g': grace_ms = strtol(optarg, NULL, 10); break;
      case 'r': raw = 1; break;
      default:
        fprintf(stderr, "usage: kmsgdump -l | [-r] [-a SEQ] [-w TEXT [-t SECONDS] [-g MS]]\n");
        return 2;
    }
  }
  int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) { perror("kmsgdump: /dev/kmsg"); return 2; }
  long long last_seq = -1;
  int found = drain(fd, after, needle, &last_seq);
  if (last_only) {
    printf("%lld\n", last_seq);
    return 0;
  }
  int status = 0;
  if (needle != NULL) {
    double deadline = monotonic() + wait_s;
    while (!found) {
      double left = deadline - monotonic();
      if (left <= 0) break;
      struct pollfd p = {fd, POLLIN, 0};
      poll(&p, 1, (int)(left * 1000) + 1);
      found = drain(fd, after, needle, &last_seq);
    }
    if (found) {
      double until = monotonic() + (double)grace_ms / 1000.0;
      for (double left; (left = until - monotonic()) > 0;) {
        struct pollfd p = {fd, POLLIN, 0};
        poll(&p, 1, (int)(left * 1000) + 1);
        drain(fd, after, NULL, &last_seq);
      }
    } else {
      status = 1;
    }
  }
  for (size_t i = 0; i < count; ++i) {
    if (raw) {
      size_t len = strlen(records[i].text);
      fputs(records[i].text, stdout);
      if (len == 0 || records[i].text[len - 1] != '\n') putchar('\n');
    } else {
      puts(records[i].text);
    }
  }
  return status;
}
