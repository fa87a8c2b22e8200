/* cgchurn — create and destroy cgroups at a high rate inside the e2e VM (fault-tolerance scenario).
 *
 *   cgchurn -r DIR [-t SECONDS] [-n OPS] [-s SEED] [-k LIVE] [-l LEAVE] [-p PID]... [-o STATS]
 *
 *   -r DIR   the cgroup under which everything happens (must exist, with +memory in its
 *            cgroup.subtree_control, and a leaf DIR/park that holds the -p processes when idle)
 *   -t S     stop after S seconds (default 25)         -n OPS  ... or after OPS operations (default 0: no limit)
 *   -s SEED  random seed (default 1)                   -k LIVE at most LIVE subtrees at once (default 12)
 *   -l N     leave the last N subtrees in place at the end (default 0: remove everything created)
 *   -p PID   a process to move between the cgroups (repeatable, at most 16); back in DIR/park at the end
 *   -o FILE  statistics as "key value" lines (default stdout)
 *
 * A subtree is DIR/c<i> (every third one is named c<i-1>.<i>, a sibling whose name extends another's),
 * 1-3 levels deep (c<i>/a/b), sometimes with a sibling leaf (c<i>/z). Each level enables +memory for
 * its children with probability 3/4 (otherwise the levels below have no memory.* files); memory.max
 * 64M is written on about half the levels that have the file, right after mkdir. With probability 1/2 a
 * process is moved into the deepest leaf. Removal moves the subtree's processes back to park and
 * removes the directories deepest first. Operations: mkdir, rmdir, limit writes, process moves; all
 * counted. Exit 0, or 1 when a cgroup operation failed in a way the shapes rule out.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_LIVE 64
#define MAX_DIRS 4
#define MAX_PROCS 16

struct subtree {
  int used;
  char dirs[MAX_DIRS][512];  // creation order: parents first
  int ndirs;
  char leaf[512];            // where processes go (no children, no controllers enabled)
};

static struct subtree live[MAX_LIVE];
static int nlive, max_live = 12;
static const char *root;
static pid_t procs[MAX_PROCS];
static int proc_at[MAX_PROCS];  // index of the subtree holding the process, -1 = park
static int nprocs;
static unsigned long long s_mkdir, s_rmdir, s_limits, s_moves, s_enable, s_ops, s_errors, s_busy_retries;
static unsigned long long rng = 88172645463325252ULL;

static unsigned long long next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}
static int chance(int num, int den) { return (int)(next_rand() % (unsigned long long)den) < num; }

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int write_text(const char *dir, const char *file, const char *text) {
  char path[600];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = write(fd, text, strlen(text));
  int saved = errno;
  close(fd);
  errno = saved;
  return n == (ssize_t)strlen(text) ? 0 : -1;
}

static int has_file(const char *dir, const char *file) {
  char path[600];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  return access(path, F_OK) == 0;
}

static void complain(const char *what, const char *path) {
  fprintf(stderr, "cgchurn: %s %s: %s\n", what, path, strerror(errno));
  ++s_errors;
}

static void move_proc(int i, const char *dir, int where) {
  char text[32];
  snprintf(text, sizeof text, "%d", (int)procs[i]);
  if (write_text(dir, "cgroup.procs", text) != 0) {
    complain("move into", dir);
    return;
  }
  proc_at[i] = where;
  ++s_moves;
}

static void park_procs_of(int t) {
  char park[600];
  snprintf(park, sizeof park, "%s/park", root);
  for (int i = 0; i < nprocs; ++i) {
    if (proc_at[i] == t) move_proc(i, park, -1);
  }
}

static void create_subtree(int id) {
  int t = -1;
  for (int i = 0; i < MAX_LIVE; ++i) {
    if (!live[i].used) { t = i; break; }
  }
  if (t < 0) return;
  struct subtree *s = &live[t];
  memset(s, 0, sizeof *s);
  s->used = 1;
  ++nlive;
  char name[64];
  if (id % 3 == 0 && id > 1)
    snprintf(name, sizeof name, "c%d.%d", id - 1, id);  // sorts between c<id-1> and c<id-1>/...
  else
    snprintf(name, sizeof name, "c%d", id);
  int depth = 1 + (int)(next_rand() % 3);
  char path[512];
  snprintf(path, sizeof path, "%s/%s", root, name);
  for (int level = 0; level < depth; ++level) {
    if (mkdir(path, 0755) != 0) {
      complain("mkdir", path);
      break;
    }
    ++s_mkdir;
    snprintf(s->dirs[s->ndirs++], sizeof s->dirs[0], "%s", path);
    if (has_file(path, "memory.max") && chance(1, 2)) {
      if (write_text(path, "memory.max", "64M") != 0) complain("memory.max", path);
      else ++s_limits;
    }
    if (level + 1 == depth) break;
    // Not the last level: maybe let the children have the memory controller.
    if (has_file(path, "memory.max") && chance(3, 4)) {
      if (write_text(path, "cgroup.subtree_control", "+memory") != 0) complain("+memory", path);
      else ++s_enable;
    }
    size_t len = strlen(path);
    if (len + 3 > sizeof path) break;
    path[len] = '/';
    path[len + 1] = level == 0 ? 'a' : 'b';
    path[len + 2] = '\0';
  }
  if (s->ndirs == 0) {  // not even the top level could be made
    s->used = 0;
    --nlive;
    return;
  }
  memmove(s->leaf, s->dirs[s->ndirs - 1], sizeof s->leaf);
  // A sibling leaf under the top level, sometimes.
  if (s->ndirs > 1 && chance(1, 3) && s->ndirs < MAX_DIRS) {
    snprintf(path, sizeof path, "%s/z", s->dirs[0]);
    if (mkdir(path, 0755) == 0) {
      ++s_mkdir;
      snprintf(s->dirs[s->ndirs++], sizeof s->dirs[0], "%s", path);
    } else {
      complain("mkdir", path);
    }
  }
  // A process into the deepest leaf, sometimes.
  if (nprocs > 0 && chance(1, 2)) {
    int i = (int)(next_rand() % (unsigned long long)nprocs);
    move_proc(i, s->leaf, t);
  }
}

static void remove_subtree(int t) {
  struct subtree *s = &live[t];
  park_procs_of(t);
  // Deepest first: the sibling leaf "z" was appended last, the chain before it in creation order.
  for (int d = s->ndirs - 1; d >= 0; --d) {
    int tries = 0;
    int removed = 1;
    while (rmdir(s->dirs[d]) != 0) {
      if (errno == EBUSY && tries++ < 200) {
        ++s_busy_retries;  // the moved-out processes may take a moment to leave
        usleep(1000);
        continue;
      }
      complain("rmdir", s->dirs[d]);
      removed = 0;
      break;
    }
    if (removed) ++s_rmdir;
  }
  s->used = 0;
  --nlive;
}

int main(int argc, char **argv) {
  double seconds = 25;
  unsigned long long max_ops = 0;
  int leave = 0;
  const char *stats = NULL;
  int opt;
  while ((opt = getopt(argc, argv, "r:t:n:s:k:l:p:o:")) != -1) {
    switch (opt) {
      case 'r': root = optarg; break;
      case 't': seconds = strtod(optarg, NULL); break;
      case 'n': max_ops = strtoull(optarg, NULL, 10); break;
      case 's': rng ^= strtoull(optarg, NULL, 10) * 0x9e3779b97f4a7c15ULL; break;
      case 'k': max_live = atoi(optarg); break;
      case 'l': leave = atoi(optarg); break;
      case 'p':
        if (nprocs < MAX_PROCS) { procs[nprocs] = (pid_t)atoi(optarg); proc_at[nprocs++] = -1; }
        break;
      case 'o': stats = optarg; break;
      default:
        fprintf(stderr, "usage: cgchurn -r DIR [-t S] [-n OPS] [-s SEED] [-k LIVE] [-l LEAVE] [-p PID]... [-o FILE]\n");
        return 2;
    }
  }
  if (root == NULL || max_live < 1 || max_live > MAX_LIVE || leave < 0 || leave > max_live) {
    fprintf(stderr, "cgchurn: need -r DIR, 1 <= -k <= %d, 0 <= -l <= -k\n", MAX_LIVE);
    return 2;
  }
  for (int i = 0; i < 16; ++i) next_rand();
  double start = now_s();
  int id = 0;
  while (now_s() - start < seconds && (max_ops == 0 || s_ops < max_ops)) {
    if (nlive < max_live && (nlive == 0 || chance(11, 20))) {
      create_subtree(++id);
    } else if (nlive > 0) {
      int pick = (int)(next_rand() % (unsigned long long)nlive);
      for (int t = 0; t < MAX_LIVE; ++t) {
        if (live[t].used && pick-- == 0) {
          if (nprocs > 0 && chance(1, 4)) {
            // Sometimes only move a process in or out of it, and keep it.
            int i = (int)(next_rand() % (unsigned long long)nprocs);
            if (proc_at[i] == t) {
              char park[600];
              snprintf(park, sizeof park, "%s/park", root);
              move_proc(i, park, -1);
            } else {
              move_proc(i, live[t].leaf, t);
            }
          } else {
            remove_subtree(t);
          }
          break;
        }
      }
    }
    ++s_ops;
  }
  double elapsed = now_s() - start;
  // Keep `leave` subtrees, remove the rest; processes of the kept ones stay where they are.
  int kept = 0;
  for (int t = MAX_LIVE - 1; t >= 0; --t) {
    if (!live[t].used) continue;
    if (kept < leave) { ++kept; continue; }
    remove_subtree(t);
  }
  FILE *out = stats ? fopen(stats, "w") : stdout;
  if (out == NULL) { perror("cgchurn: stats"); return 2; }
  fprintf(out, "ops %llu\nseconds %.2f\nsubtrees %d\nmkdir %llu\nrmdir %llu\nlimits %llu\nsubtree_control %llu\n"
          "moves %llu\nbusy_retries %llu\nerrors %llu\nleft %d\n",
          s_ops, elapsed, id, s_mkdir, s_rmdir, s_limits, s_enable, s_moves, s_busy_retries, s_errors, kept);
  for (int t = 0; t < MAX_LIVE; ++t) {
    if (!live[t].used) continue;
    for (int d = 0; d < live[t].ndirs; ++d) fprintf(out, "left_dir %s\n", live[t].dirs[d]);
  }
  if (out != stdout) fclose(out);
  return s_errors == 0 ? 0 : 1;
}
