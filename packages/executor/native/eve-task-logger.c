/*
 * eve-task-logger: containerd's binary logging driver for eve-tasks tasks.
 *
 * containerd's runc shim starts it for a task whose Tasks.Create stdout is
 * `binary:///path/to/eve-task-logger?path=<log>&max=<bytes>&files=<n>` (pkg/process/io.go,
 * NewBinaryIO): the query becomes argv as key/value pairs in no fixed order; fd 3 is the
 * task's stdout pipe, fd 4 its stderr pipe, fd 5 a pipe the logger closes once it is ready.
 * When the task is deleted the shim closes its ends of the pipes, sends SIGTERM and waits up to
 * 12 s before SIGKILL.
 *
 * It appends both streams to <log> (the contract's logPath) and rotates by size: a file never
 * grows over <max> bytes; on rotation <log>.<n-2> becomes <log>.<n-1>, ..., <log> becomes
 * <log>.1, and a new <log> starts, so at most <files> files exist and, read oldest first,
 * they are exactly the tail of the output. A rotation falls after the last whole line that
 * fits; only a line longer than <max> is split. The process belongs to the shim, not to the
 * executor: it outlives executor restarts.
 *
 * It never blocks the task: the pipes are always drained. Output that cannot be written (a full
 * disk, a log that cannot be opened) is dropped, and opening the log is retried at most once a
 * second.
 *
 * Written by hand because no Debian package reads containerd's two pipes, follows the fd-5
 * readiness protocol and rotates to numbered files under a fixed name (apache's rotatelogs reads
 * one stream and rotates round-robin; svlogd and multilog name files by time), and a per-task
 * Node process would cost tens of MiB per task.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STDOUT_FD 3
#define STDERR_FD 4
#define READY_FD 5
#define BUFFER_BYTES (64 * 1024)
#define MAX_FILES 1000

static volatile sig_atomic_t terminating = 0;

static void on_term(int sig) {
  (void)sig;
  terminating = 1;
}

struct log {
  const char *path;
  long long max_bytes;
  int files;
  int fd;
  long long size;
  time_t last_try;
};

static time_t now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec;
}

/* Opens (appending to) the log; on failure leaves fd -1, to be retried a second later. */
static void open_log(struct log *l, int truncate) {
  l->last_try = now_s();
  l->fd = open(l->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW | (truncate ? O_TRUNC : 0),
               0640);
  l->size = 0;
  if (l->fd < 0) return;
  struct stat st;
  if (fstat(l->fd, &st) == 0) l->size = st.st_size;
}

/* <path>.<index>, or <path> for index 0. */
static int numbered(char *out, size_t cap, const char *path, int index) {
  int n = index == 0 ? snprintf(out, cap, "%s", path) : snprintf(out, cap, "%s.%d", path, index);
  return n > 0 && (size_t)n < cap;
}

/* Shifts every file one number up (the oldest is replaced) and starts an empty log. */
static void rotate(struct log *l) {
  if (l->fd >= 0) close(l->fd);
  l->fd = -1;
  char from[PATH_MAX], to[PATH_MAX];
  for (int i = l->files - 1; i >= 1; i--) {
    if (numbered(from, sizeof from, l->path, i - 1) && numbered(to, sizeof to, l->path, i)) rename(from, to);
  }
  open_log(l, 1);
}

/* Writes all of buf, or drops what cannot be written (the log is reopened later). */
static void write_all(struct log *l, const char *buf, size_t n) {
  while (n > 0 && l->fd >= 0) {
    ssize_t w = write(l->fd, buf, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      close(l->fd);
      l->fd = -1;
      return;
    }
    l->size += w;
    buf += w;
    n -= (size_t)w;
  }
}

/* Appends a chunk of output, rotating so that no file exceeds max_bytes. */
static void append(struct log *l, const char *buf, size_t n) {
  if (l->fd < 0) {
    if (now_s() - l->last_try < 1) return; /* dropped: the log could not be opened */
    open_log(l, 0);
    if (l->fd < 0) return;
  }
  while (n > 0) {
    if (l->size >= l->max_bytes) {
      rotate(l);
      if (l->fd < 0) return;
    }
    size_t room = (size_t)(l->max_bytes - l->size);
    if (n <= room) {
      write_all(l, buf, n);
      return;
    }
    /* Fill up to the last whole line that fits; a line that fits no file is split. */
    size_t cut = room;
    const char *nl = memrchr(buf, '\n', room);
    if (nl != NULL) {
      cut = (size_t)(nl - buf) + 1;
    } else if (l->size > 0) {
      rotate(l);
      if (l->fd < 0) return;
      continue;
    }
    write_all(l, buf, cut);
    if (l->fd < 0) return;
    buf += cut;
    n -= cut;
    rotate(l);
    if (l->fd < 0) return;
  }
}

static int parse_positive(const char *s, long long max, long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno != 0 || *s == '\0' || *end != '\0' || v < 1 || v > max) return 0;
  *out = v;
  return 1;
}

int main(int argc, char **argv) {
  struct log l = {.path = NULL, .max_bytes = 0, .files = 0, .fd = -1, .size = 0, .last_try = 0};
  long long files = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "path") == 0) {
      l.path = argv[i + 1];
    } else if (strcmp(argv[i], "max") == 0) {
      if (!parse_positive(argv[i + 1], LLONG_MAX, &l.max_bytes)) l.max_bytes = 0;
    } else if (strcmp(argv[i], "files") == 0) {
      if (!parse_positive(argv[i + 1], MAX_FILES, &files)) files = 0;
    }
  }
  if (l.path == NULL || l.path[0] != '/' || l.max_bytes == 0 || files == 0 || argc % 2 != 1) {
    fprintf(stderr, "usage: eve-task-logger path <absolute log path> max <bytes> files <1..%d>\n", MAX_FILES);
    /* Still drain the task's output (closing fd 5 first), so a bad argument never blocks it. */
    l.path = NULL;
  }
  l.files = (int)files;

  /* SIGTERM is blocked except inside ppoll, so it cannot slip in between a check and a wait. */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_term;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  signal(SIGINT, SIG_IGN);
  sigset_t blocked, waiting;
  sigemptyset(&blocked);
  sigaddset(&blocked, SIGTERM);
  sigprocmask(SIG_BLOCK, &blocked, &waiting);
  sigdelset(&waiting, SIGTERM);

  if (l.path != NULL) {
    open_log(&l, 0);
    if (l.fd >= 0 && l.size >= l.max_bytes) rotate(&l);
  }
  close(READY_FD);

  static char buf[BUFFER_BYTES];
  struct pollfd fds[2] = {{.fd = STDOUT_FD, .events = POLLIN}, {.fd = STDERR_FD, .events = POLLIN}};
  int open_fds = 2;
  while (open_fds > 0) {
    /* Once asked to stop, take what the pipes still hold and leave when they are empty. */
    struct timespec zero = {0, 0};
    int ready = ppoll(fds, 2, terminating ? &zero : NULL, &waiting);
    if (ready < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (ready == 0) break;
    for (int i = 0; i < 2; i++) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      ssize_t r = read(fds[i].fd, buf, sizeof buf);
      if (r > 0) {
        if (l.path != NULL) append(&l, buf, (size_t)r);
      } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
        close(fds[i].fd);
        fds[i].fd = -1;
        open_fds--;
      }
    }
  }
  if (l.fd >= 0) close(l.fd);
  return 0;
}
