/* refscore — the kernel's OOM badness, computed naively from /proc, as a diagnostic reference.
 *
 *   refscore host            every process, totalpages = MemTotal + SwapTotal
 *   refscore /sys/fs/cgroup/X  the processes of that cgroup's subtree,
 *                            totalpages = memory.max + min(memory.swap.max, SwapTotal) (swap
 *                            only when vm.swappiness != 0, as on cgroup v2)
 *
 * Prints "# totalpages N" and one tab-separated line per process, highest points first:
 *   pid comm cgroup oom_score_adj rss_kb swap_kb pte_kb points killable
 * points = RssAnon+RssFile+RssShmem + VmSwap (in pages) + VmPTE/4 + adj * (totalpages / 1000).
 * Not part of any assertion: the e2e scenarios record it beside oomguard's prediction so that a
 * mismatch shows whether the model or the scenario's design is at fault.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct proc {
  long pid, adj, rss_kb, swap_kb, pte_kb;
  long long points;
  int killable;
  char comm[64];
  char cgroup[512];
};

static struct proc *procs;
static size_t nprocs, cap;

static int read_line(const char *path, char *buf, size_t len) {
  FILE *f = fopen(path, "r");
  if (f == NULL) return -1;
  char *r = fgets(buf, (int)len, f);
  fclose(f);
  if (r == NULL) return -1;
  buf[strcspn(buf, "\n")] = '\0';
  return 0;
}

static long long meminfo_kb(const char *key) {
  FILE *f = fopen("/proc/meminfo", "r");
  char line[256];
  long long v = 0;
  size_t klen = strlen(key);
  while (f != NULL && fgets(line, sizeof line, f) != NULL) {
    if (strncmp(line, key, klen) == 0 && line[klen] == ':') { v = atoll(line + klen + 1); break; }
  }
  if (f != NULL) fclose(f);
  return v;
}

/* Returns 0 if the process has an mm (user process, not a zombie). */
static int read_proc(long pid, struct proc *p) {
  char path[128], line[512];
  memset(p, 0, sizeof *p);
  p->pid = pid;
  snprintf(path, sizeof path, "/proc/%ld/status", pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return -1;
  int have_mm = 0;
  long anon = 0, file = 0, shmem = 0;
  while (fgets(line, sizeof line, f) != NULL) {
    if (strncmp(line, "Name:", 5) == 0) {
      char *s = line + 5;
      while (*s == ' ' || *s == '\t') ++s;
      s[strcspn(s, "\n")] = '\0';
      snprintf(p->comm, sizeof p->comm, "%.63s", s);
    } else if (strncmp(line, "VmSize:", 7) == 0) {
      have_mm = 1;
    } else if (strncmp(line, "RssAnon:", 8) == 0) {
      anon = atol(line + 8);
    } else if (strncmp(line, "RssFile:", 8) == 0) {
      file = atol(line + 8);
    } else if (strncmp(line, "RssShmem:", 9) == 0) {
      shmem = atol(line + 9);
    } else if (strncmp(line, "VmSwap:", 7) == 0) {
      p->swap_kb = atol(line + 7);
    } else if (strncmp(line, "VmPTE:", 6) == 0) {
      p->pte_kb = atol(line + 6);
    }
  }
  fclose(f);
  if (!have_mm) return -1;
  p->rss_kb = anon + file + shmem;
  snprintf(path, sizeof path, "/proc/%ld/oom_score_adj", pid);
  if (read_line(path, line, sizeof line) != 0) return -1;
  p->adj = atol(line);
  snprintf(path, sizeof path, "/proc/%ld/cgroup", pid);
  if (read_line(path, line, sizeof line) == 0 && strncmp(line, "0::", 3) == 0)
    snprintf(p->cgroup, sizeof p->cgroup, "%s", line + 3);
  return 0;
}

static void add_pid(long pid) {
  if (nprocs == cap) {
    cap = cap ? cap * 2 : 64;
    procs = realloc(procs, cap * sizeof *procs);
    if (procs == NULL) { perror("refscore"); exit(2); }
  }
  if (read_proc(pid, &procs[nprocs]) == 0) ++nprocs;
}

static void walk_cgroup(const char *dir) {
  char path[4096];
  snprintf(path, sizeof path, "%s/cgroup.procs", dir);
  FILE *f = fopen(path, "r");
  long pid;
  while (f != NULL && fscanf(f, "%ld", &pid) == 1) add_pid(pid);
  if (f != NULL) fclose(f);
  DIR *d = opendir(dir);
  struct dirent *e;
  while (d != NULL && (e = readdir(d)) != NULL) {
    if (e->d_type != DT_DIR || e->d_name[0] == '.') continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    walk_cgroup(path);
  }
  if (d != NULL) closedir(d);
}

static int by_points(const void *a, const void *b) {
  const struct proc *x = a, *y = b;
  if (x->points != y->points) return x->points < y->points ? 1 : -1;
  return x->pid < y->pid ? 1 : -1;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: refscore host | /sys/fs/cgroup/PATH\n");
    return 2;
  }
  long long swap_pages = meminfo_kb("SwapTotal") / 4;
  long long totalpages;
  if (strcmp(argv[1], "host") == 0) {
    totalpages = meminfo_kb("MemTotal") / 4 + swap_pages;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
      if (!isdigit((unsigned char)e->d_name[0])) continue;
      long pid = atol(e->d_name);
      if (pid != 1) add_pid(pid);        /* global init is never a candidate */
    }
    if (d != NULL) closedir(d);
  } else {
    char path[4096], line[128];
    snprintf(path, sizeof path, "%s/memory.max", argv[1]);
    if (read_line(path, line, sizeof line) != 0 || strcmp(line, "max") == 0) {
      fprintf(stderr, "refscore: %s: no memory limit\n", path);
      return 2;
    }
    totalpages = atoll(line) / 4096;
    char swappiness[32];
    if (read_line("/proc/sys/vm/swappiness", swappiness, sizeof swappiness) == 0 && atol(swappiness) != 0) {
      snprintf(path, sizeof path, "%s/memory.swap.max", argv[1]);
      if (read_line(path, line, sizeof line) == 0) {
        long long sw = strcmp(line, "max") == 0 ? swap_pages : atoll(line) / 4096;
        totalpages += sw < swap_pages ? sw : swap_pages;
      }
    }
    if (totalpages < 1) totalpages = 1;
    walk_cgroup(argv[1]);
  }
  for (size_t i = 0; i < nprocs; ++i) {
    struct proc *p = &procs[i];
    p->killable = p->adj != -1000;
    p->points = (long long)(p->rss_kb + p->swap_kb) / 4 + p->pte_kb / 4 + p->adj * (totalpages / 1000);
  }
  qsort(procs, nprocs, sizeof *procs, by_points);
  printf("# totalpages %lld\n", totalpages);
  for (size_t i = 0; i < nprocs; ++i) {
    struct proc *p = &procs[i];
    printf("%ld\t%s\t%s\t%ld\t%ld\t%ld\t%ld\t%lld\t%d\n", p->pid, p->comm, p->cgroup, p->adj, p->rss_kb,
           p->swap_kb, p->pte_kb, p->points, p->killable);
  }
  return 0;
}
