/* leakwatch — start a command (a leak), watch memory while it runs, time its death.
 *
 *   leakwatch -o FILE [-i MS] [-a RATIO] [-g CGROUP_DIR] [-t SECONDS] -- CMD [ARGS...]
 *
 *   -o FILE   where the record goes ("key value" lines, written when the command is gone); the
 *             command's pid is written to FILE.pid as soon as it runs
 *   -i MS     poll interval for the memory readings (default 20)
 *   -a RATIO  record when MemAvailable / MemTotal first drops below RATIO (0..1)
 *   -g DIR    a cgroup: record when its memory.events "high" and "max" first rise, and the peak
 *             memory.current seen
 *   -t S      kill the command (SIGKILL) if it still runs after S seconds (default 60): "timed_out 1".
 *             A command that outlives its SIGKILL by 5 s is stuck in reclaim with the whole guest (zram
 *             full of incompressible pages, reclaim "progressing" by swapping, no killer acting: a SIGKILL
 *             is not acted on inside the page allocator's retry loop): "stalled 1", and the kernel's OOM
 *             killer is invoked by hand, once (sysrq f): "forced_oom 1" when that write went through. A
 *             stall like that most likely held a CI run of race for its whole limit (25 minutes).
 *             leakwatch keeps its memory locked (mlockall) and the sysrq file open from the start, and
 *             reads no file once the deadline has passed, so it can act while the guest stalls.
 *
 * The command's death is seen at once (poll on a pidfd), not at the next poll tick. Times are
 * CLOCK_MONOTONIC and CLOCK_REALTIME seconds (the realtime ones compare with oomguard's "time"
 * fields), all taken in this process:
 *   pid, start_mono/start_real (just before fork), cross_mono/cross_real (MemAvailable below RATIO),
 *   high_mono/high_real, max_mono/max_real (memory.events rises), death_mono/death_real,
 *   status (exited N | signaled N), timed_out, min_available_kb, mem_total_kb, peak_current_bytes,
 *   last_rss_kb (the command's VmRSS at the last poll), polls, stalled, forced_oom.
 * Exit: 0 recorded, 2 usage, 3 setup failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

static double clock_s(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int read_file(const char *path, char *buf, size_t size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, size - 1);
  close(fd);
  if (n < 0) return -1;
  buf[n] = '\0';
  return 0;
}

/* "Key:   123 kB" in a /proc file -> 123, or -1. */
static long field_kb(const char *text, const char *key) {
  const char *p = strstr(text, key);
  if (p == NULL) return -1;
  return strtol(p + strlen(key), NULL, 10);
}

/* "key 123" line in memory.events -> 123, or -1. */
static long long event_count(const char *text, const char *key) {
  size_t len = strlen(key);
  for (const char *line = text; line != NULL && *line != '\0';) {
    if (strncmp(line, key, len) == 0 && line[len] == ' ') return strtoll(line + len + 1, NULL, 10);
    line = strchr(line, '\n');
    if (line != NULL) line++;
  }
  return -1;
}

struct stamp {
  int seen;
  double mono, real;
};

static void mark(struct stamp *s) {
  if (s->seen) return;
  s->seen = 1;
  s->mono = clock_s(CLOCK_MONOTONIC);
  s->real = clock_s(CLOCK_REALTIME);
}

static void put_stamp(FILE *f, const char *name, const struct stamp *s) {
  if (!s->seen) return;
  fprintf(f, "%s_mono %.6f\n%s_real %.6f\n", name, s->mono, name, s->real);
}

int main(int argc, char **argv) {
  const char *out = NULL, *cgroup = NULL;
  long interval_ms = 20, timeout_s = 60;
  double ratio = -1;
  int opt;
  while ((opt = getopt(argc, argv, "+o:i:a:g:t:")) != -1) {
    switch (opt) {
      case 'o': out = optarg; break;
      case 'i': interval_ms = strtol(optarg, NULL, 10); break;
      case 'a': ratio = strtod(optarg, NULL); break;
      case 'g': cgroup = optarg; break;
      case 't': timeout_s = strtol(optarg, NULL, 10); break;
      default:
        fprintf(stderr, "usage: leakwatch -o FILE [-i MS] [-a RATIO] [-g DIR] [-t S] -- CMD [ARGS...]\n");
        return 2;
    }
  }
  if (out == NULL || optind >= argc || interval_ms <= 0 || timeout_s <= 0) {
    fprintf(stderr, "leakwatch: -o FILE and a command are required\n");
    return 2;
  }
  char events_path[4096], current_path[4096], text[8192];
  long long high0 = -1, max0 = -1;
  if (cgroup != NULL) {
    snprintf(events_path, sizeof events_path, "%s/memory.events", cgroup);
    snprintf(current_path, sizeof current_path, "%s/memory.current", cgroup);
    if (read_file(events_path, text, sizeof text) != 0) { perror("leakwatch: memory.events"); return 3; }
    high0 = event_count(text, "high");
    max0 = event_count(text, "max");
  }

  /* Opened now: an open() in a stalled guest waits in reclaim like everything else. */
  int sysrq_fd = open("/proc/sysrq-trigger", O_WRONLY | O_CLOEXEC);
  if (sysrq_fd < 0) perror("leakwatch: /proc/sysrq-trigger");
  /* Resident whatever reclaim does (the command does not inherit it: locks end at fork). */
  if (mlockall(MCL_CURRENT | MCL_FUTURE) != 0) perror("leakwatch: mlockall");
  struct stamp start = {0}, cross = {0}, high = {0}, max = {0}, death = {0};
  mark(&start);
  pid_t child = fork();
  if (child < 0) { perror("leakwatch: fork"); return 3; }
  if (child == 0) {
    execvp(argv[optind], argv + optind);
    perror("leakwatch: exec");
    _exit(127);
  }
  {
    char tmp[4200], final[4200];
    snprintf(tmp, sizeof tmp, "%s.pid.tmp", out);
    snprintf(final, sizeof final, "%s.pid", out);
    FILE *f = fopen(tmp, "w");
    if (f == NULL || fprintf(f, "%d\n", (int)child) < 0 || fclose(f) != 0 || rename(tmp, final) != 0) {
      perror("leakwatch: pid file");
    }
  }
  int pidfd = (int)syscall(SYS_pidfd_open, child, 0);
  if (pidfd < 0) { perror("leakwatch: pidfd_open"); kill(child, SIGKILL); return 3; }

  long min_avail = -1, total = -1, last_rss = -1;
  long long peak_current = -1;
  long polls = 0;
  int timed_out = 0, stalled = 0, forced_oom = 0;
  double killed_at = 0;
  char status_path[64];
  snprintf(status_path, sizeof status_path, "/proc/%d/status", (int)child);
  for (;;) {
    polls++;
    double now = clock_s(CLOCK_MONOTONIC);
    if (!timed_out && now - start.mono > (double)timeout_s) {
      timed_out = 1;
      killed_at = now;
      kill(child, SIGKILL);
    }
    if (timed_out && !stalled && now - killed_at > 5.0) {
      /* Once: a manual OOM does not wait for a victim still exiting, so a second one would kill
         another process (the innocent, a contender, the shell). */
      stalled = 1;
      if (sysrq_fd >= 0 && write(sysrq_fd, "f", 1) == 1) forced_oom = 1;
      else perror("leakwatch: sysrq f");
    }
    /* Sampled until the kill; after it, only its death is waited for (a file read allocates, and the
       guest may be stalled). */
    if (!timed_out) {
      if (read_file("/proc/meminfo", text, sizeof text) == 0) {
        long avail = field_kb(text, "MemAvailable:");
        total = field_kb(text, "MemTotal:");
        if (avail >= 0 && (min_avail < 0 || avail < min_avail)) min_avail = avail;
        if (ratio >= 0 && avail >= 0 && total > 0 && (double)avail / (double)total < ratio) mark(&cross);
      }
      if (cgroup != NULL) {
        if (read_file(events_path, text, sizeof text) == 0) {
          if (event_count(text, "high") > high0) mark(&high);
          if (event_count(text, "max") > max0) mark(&max);
        }
        if (read_file(current_path, text, sizeof text) == 0) {
          long long cur = strtoll(text, NULL, 10);
          if (cur > peak_current) peak_current = cur;
        }
      }
      if (read_file(status_path, text, sizeof text) == 0) {
        long rss = field_kb(text, "VmRSS:");
        if (rss >= 0) last_rss = rss;
      }
    }
    struct pollfd pfd = {pidfd, POLLIN, 0};
    int n = poll(&pfd, 1, timed_out ? 100 : (int)interval_ms);
    if (n > 0) {
      mark(&death);
      break;
    }
    if (n < 0 && errno != EINTR) { perror("leakwatch: poll"); break; }
  }
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }

  FILE *f = fopen(out, "w");
  if (f == NULL) { perror("leakwatch: output"); return 3; }
  fprintf(f, "pid %d\n", (int)child);
  put_stamp(f, "start", &start);
  put_stamp(f, "cross", &cross);
  put_stamp(f, "high", &high);
  put_stamp(f, "max", &max);
  put_stamp(f, "death", &death);
  if (WIFSIGNALED(status)) fprintf(f, "status signaled %d\n", WTERMSIG(status));
  else fprintf(f, "status exited %d\n", WEXITSTATUS(status));
  fprintf(f, "timed_out %d\nstalled %d\nforced_oom %d\nmin_available_kb %ld\nmem_total_kb %ld\nlast_rss_kb %ld\npolls %ld\n",
          timed_out, stalled, forced_oom, min_avail, total, last_rss, polls);
  if (cgroup != NULL) fprintf(f, "peak_current_bytes %lld\n", peak_current);
  if (ratio >= 0) fprintf(f, "ratio %.4f\n", ratio);
  return fclose(f) == 0 ? 0 : 3;
}
