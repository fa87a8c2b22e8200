/* hog — allocate and touch memory inside the e2e VM, then sleep until killed.
 *
 *   hog -m MiB [-s MiB -d ms] [-a adj] [-g CGROUP_DIR] [-n name] [-r FILE] [-D] [-x] [-R] [-H]
 *
 *   -m MiB   total anonymous memory to allocate and touch (0 is allowed)
 *   -s MiB   allocate in steps of this size (default: all at once) ...
 *   -d ms    ... sleeping this long after each step (a leak)
 *   -a adj   write adj to /proc/self/oom_score_adj first
 *   -g DIR   move itself into the cgroup DIR (writes 0 to DIR/cgroup.procs) first
 *   -n name  set its comm (what /proc/PID/comm and the kernel's OOM report show)
 *   -r FILE  when everything is touched, write "PID\n" to FILE (atomically)
 *   -D       detach: fork; the parent waits until the child is ready, prints the child's pid on
 *            stdout and exits 0 (1 if the child died first); the child goes on sleeping
 *   -x       exit 0 once everything is touched instead of sleeping
 *   -R       fill pages with pseudo-random bytes (incompressible for zram); default: one word
 *            per page, distinct per page (so zram's same-filled detection cannot drop it)
 *   -H       madvise(MADV_NOHUGEPAGE): no transparent huge pages
 *   -q       quiet: no progress line on stderr
 * Exit: 0 ok, 2 usage, 3 setup failed (adj, cgroup, name), 4 mmap failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const size_t kMiB = 1024u * 1024u;
static const size_t kPage = 4096u;

static int write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  size_t len = strlen(text);
  ssize_t n = write(fd, text, len);
  int saved = errno;
  close(fd);
  errno = saved;
  return n == (ssize_t)len ? 0 : -1;
}

static long parse_long(const char *s, const char *what) {
  char *end = NULL;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0') {
    fprintf(stderr, "hog: bad %s: %s\n", what, s);
    exit(2);
  }
  return v;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static uint64_t xorshift(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  *s = x;
  return x;
}

int main(int argc, char **argv) {
  long total_mib = -1, step_mib = 0, delay_ms = 0, adj = 0;
  int set_adj = 0, detach = 0, exit_when_done = 0, random_fill = 0, no_thp = 0, quiet = 0;
  const char *cgroup = NULL, *name = NULL, *ready_file = NULL;
  int opt;
  while ((opt = getopt(argc, argv, "m:s:d:a:g:n:r:DxRHq")) != -1) {
    switch (opt) {
      case 'm': total_mib = parse_long(optarg, "-m"); break;
      case 's': step_mib = parse_long(optarg, "-s"); break;
      case 'd': delay_ms = parse_long(optarg, "-d"); break;
      case 'a': adj = parse_long(optarg, "-a"); set_adj = 1; break;
      case 'g': cgroup = optarg; break;
      case 'n': name = optarg; break;
      case 'r': ready_file = optarg; break;
      case 'D': detach = 1; break;
      case 'x': exit_when_done = 1; break;
      case 'R': random_fill = 1; break;
      case 'H': no_thp = 1; break;
      case 'q': quiet = 1; break;
      default:
        fprintf(stderr, "usage: hog -m MiB [-s MiB -d ms] [-a adj] [-g DIR] [-n name] [-r FILE] [-D] [-x] [-R] [-H] [-q]\n");
        return 2;
    }
  }
  if (total_mib < 0 || step_mib < 0 || delay_ms < 0 || optind != argc) {
    fprintf(stderr, "hog: -m MiB is required (see the header of hog.c)\n");
    return 2;
  }
  if (step_mib == 0 || step_mib > total_mib) step_mib = total_mib;

  int ready_pipe[2] = {-1, -1};
  if (detach) {
    if (pipe2(ready_pipe, O_CLOEXEC) != 0) { perror("hog: pipe"); return 3; }
    pid_t child = fork();
    if (child < 0) { perror("hog: fork"); return 3; }
    if (child > 0) {
      close(ready_pipe[1]);
      char buf[32];
      ssize_t n;
      do { n = read(ready_pipe[0], buf, sizeof buf - 1); } while (n < 0 && errno == EINTR);
      if (n <= 0) {
        int status = 0;
        waitpid(child, &status, 0);
        fprintf(stderr, "hog: child %d died before it was ready (status 0x%x)\n", (int)child, status);
        return 1;
      }
      printf("%d\n", (int)child);
      return 0;
    }
    close(ready_pipe[0]);
    /* The caller may read our parent's stdout through a pipe: don't hold it open. */
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) { dup2(devnull, STDIN_FILENO); dup2(devnull, STDOUT_FILENO); close(devnull); }
  }

  pid_t self = getpid();
  char text[64];
  if (name != NULL && prctl(PR_SET_NAME, name, 0, 0, 0) != 0) { perror("hog: PR_SET_NAME"); return 3; }
  if (cgroup != NULL) {
    char path[4096];
    snprintf(path, sizeof path, "%s/cgroup.procs", cgroup);
    if (write_file(path, "0\n") != 0) { fprintf(stderr, "hog: %s: %s\n", path, strerror(errno)); return 3; }
  }
  if (set_adj) {
    snprintf(text, sizeof text, "%ld\n", adj);
    if (write_file("/proc/self/oom_score_adj", text) != 0) { perror("hog: oom_score_adj"); return 3; }
  }

  uint64_t seed = 0x9e3779b97f4a7c15ull ^ (uint64_t)self;
  size_t page_index = 0;
  for (long done = 0; done < total_mib; done += step_mib) {
    long this_step = total_mib - done < step_mib ? total_mib - done : step_mib;
    size_t len = (size_t)this_step * kMiB;
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) { perror("hog: mmap"); return 4; }
    if (no_thp) madvise(p, len, MADV_NOHUGEPAGE);
    for (size_t off = 0; off < len; off += kPage) {
      if (random_fill) {
        uint64_t *w = (uint64_t *)(p + off);
        for (size_t i = 0; i < kPage / sizeof *w; ++i) w[i] = xorshift(&seed);
      } else {
        uint64_t v = ((uint64_t)self << 32) | ++page_index;
        memcpy(p + off, &v, sizeof v);
      }
    }
    if (delay_ms > 0 && done + this_step < total_mib) sleep_ms(delay_ms);
  }

  if (!quiet) fprintf(stderr, "hog: pid %d ready: %ld MiB touched\n", (int)self, total_mib);
  if (ready_file != NULL) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", ready_file, (int)self);
    FILE *f = fopen(tmp, "w");
    if (f == NULL || fprintf(f, "%d\n", (int)self) < 0 || fclose(f) != 0 || rename(tmp, ready_file) != 0) {
      perror("hog: ready file");
      return 3;
    }
  }
  if (detach) {
    int n = snprintf(text, sizeof text, "%d\n", (int)self);
    if (write(ready_pipe[1], text, (size_t)n) != n) return 3;
    close(ready_pipe[1]);
  }
  if (exit_when_done) return 0;
  for (;;) pause();
}
