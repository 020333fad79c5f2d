/*
 * test_fork.c - a descriptor used by a parent and its forked child at once (issue finding 5:
 * both shared one connection, one session and one request-id sequence, and kv_write returned 0
 * for writes that were never stored).
 *
 *   usage: test_fork              against the fake server of fake_server.h, run in a process of
 *                                 its own (serving each connection on a thread of its own)
 *          test_fork HOST PORT    against a running psiskv server
 *
 * Each scenario runs in a process of its own, forked by main, which never calls the library (so
 * a scenario forks a process that has no threads but its own):
 *   shared     connect, write FORK_PRE_KEYS keys, fork; the parent and the child each write
 *              FORK_KEYS_EACH distinct keys (kv_overwrite 0) through the same descriptor at the
 *              same time, then every key of both is read back through a fresh connection and
 *              must hold its value, and every kv_write must have returned 0. The child also
 *              checks that its descriptor is the same number, still a socket, but another socket
 *              than the parent's (a connection of its own); the parent, that its own is
 *              unchanged and still works after the child has exited.
 *   busy       fork while another thread of the parent is inside calls on the descriptor (a
 *              loop of writes): the child's first call must not wait for a lock that thread
 *              held at the fork, and works; the parent's thread goes on.
 *   off        shared with reconnection off (PSISKV_RETRY_TIMEOUT_MS=0): the child's first
 *              call still connects (once), as a first connection is not a reconnection.
 * Every process is bounded by alarm(FORK_ALARM_SECONDS): a hang is a failure (SIGALRM).
 * Prints each scenario's "N checks, M failed" and exits 1 if any check failed.
 */
#define _POSIX_C_SOURCE 200809L

#include "psiskv.h"

#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "check.h"
#include "fake_server.h"

/* Keys of this program: far from those of test1/test2 (0..), test_edge (0x7E000000..) and
 * client_cost (0x6C000000..). */
#define FORK_KEY_BASE 0x5F000000u
#define PRE_KEY(i) (FORK_KEY_BASE + (uint32_t)(i))
#define PARENT_KEY(i) (FORK_KEY_BASE + 0x10000u + (uint32_t)(i))
#define CHILD_KEY(i) (FORK_KEY_BASE + 0x20000u + (uint32_t)(i))
#define BUSY_KEY (FORK_KEY_BASE + 0x30000u)
#define BUSY_CHILD_KEY (FORK_KEY_BASE + 0x30001u)
#define FORK_PRE_KEYS 10
#define FORK_KEYS_EACH 1000
/* Writes the busy thread makes before the fork, so that it is surely in its loop by then. */
#define BUSY_WRITES_BEFORE_FORK 50
#define FORK_ALARM_SECONDS 60
#define VALUE_BYTES_MAX 32

static const char *host = "127.0.0.1";
static int port;

static int connect_or_die(void) {
  int kv = kv_connect(host, port);
  if (kv < 0) {
    fprintf(stderr, "test_fork: kv_connect(%s, %d) failed: %s\n", host, port, strerror(errno));
    exit(1);
  }
  return kv;
}

static int value_of(char *buf, const char *who, int i) {
  return sprintf(buf, "%s-%d", who, i) + 1;
}

/* The socket at number kv (its inode), 0 if kv is not a socket. */
static ino_t socket_at(int kv) {
  struct stat st;
  return fstat(kv, &st) == 0 && S_ISSOCK(st.st_mode) ? st.st_ino : 0;
}

/* Writes FORK_KEYS_EACH keys of who through kv; every kv_write must return 0. */
static void write_keys(int kv, const char *who, uint32_t (*key)(int)) {
  char value[VALUE_BYTES_MAX];
  int i;
  for (i = 0; i < FORK_KEYS_EACH; i++) {
    int len = value_of(value, who, i);
    CHECK_RC(kv_write(kv, key(i), value, (uint32_t)len, 0), 0, 0);
  }
}

static uint32_t parent_key(int i) { return PARENT_KEY(i); }
static uint32_t child_key(int i) { return CHILD_KEY(i); }
static uint32_t pre_key(int i) { return PRE_KEY(i); }

/* Every key of who holds its value (read through kv). */
static void expect_keys(int kv, const char *who, uint32_t (*key)(int), int count) {
  char want[VALUE_BYTES_MAX];
  char got[VALUE_BYTES_MAX];
  int missing = 0;
  int wrong = 0;
  int i;
  for (i = 0; i < count; i++) {
    int len = value_of(want, who, i);
    int rc = kv_read(kv, key(i), got, sizeof got);
    if (rc == -2) {
      missing++;
    } else if (rc != len || memcmp(got, want, (size_t)len) != 0) {
      wrong++;
    }
  }
  CHECK(missing == 0 && wrong == 0, "%s keys read back: %d of %d missing, %d wrong", who, missing,
        count, wrong);
}

/* Deletes what an earlier run against the same server left (so kv_overwrite 0 can succeed). */
static void delete_keys(int kv) {
  int i;
  for (i = 0; i < FORK_PRE_KEYS; i++) kv_delete(kv, PRE_KEY(i));
  for (i = 0; i < FORK_KEYS_EACH; i++) {
    kv_delete(kv, PARENT_KEY(i));
    kv_delete(kv, CHILD_KEY(i));
  }
  kv_delete(kv, BUSY_KEY);
  kv_delete(kv, BUSY_CHILD_KEY);
}

/* Waits for the child (bounded by the alarm); whether it exited 0. */
static int child_passed(pid_t child, const char *what) {
  int status = 0;
  pid_t waited;
  do {
    waited = waitpid(child, &status, 0);
  } while (waited < 0 && errno == EINTR);
  CHECK(waited == child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
        "%s: the child failed (status 0x%x)", what, status);
  return waited == child && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void scenario_shared(void) {
  char value[VALUE_BYTES_MAX];
  int kv = connect_or_die();
  ino_t parents;
  pid_t child;
  int i;
  delete_keys(kv);
  for (i = 0; i < FORK_PRE_KEYS; i++) {
    CHECK_RC(kv_write(kv, PRE_KEY(i), value, (uint32_t)value_of(value, "pre", i), 0), 0, 0);
  }
  parents = socket_at(kv);
  CHECK(parents != 0, "descriptor %d is not a socket", kv);
  fflush(stdout);
  child = fork();
  if (child < 0) {
    perror("test_fork: fork");
    exit(1);
  }
  if (child == 0) {
    ino_t mine;
    alarm(FORK_ALARM_SECONDS);
    write_keys(kv, "child", child_key);
    mine = socket_at(kv);
    CHECK(mine != 0, "child: descriptor %d is no longer a socket", kv);
    CHECK(mine != parents, "child: descriptor %d still holds the parent's connection", kv);
    expect_keys(kv, "pre", pre_key, FORK_PRE_KEYS); /* the parent's writes, seen by the child */
    kv_close(kv);                                    /* the child's copy only */
    exit(check_summary("test_fork shared (child)"));
  }
  write_keys(kv, "parent", parent_key);
  child_passed(child, "shared");
  CHECK(socket_at(kv) == parents, "parent: descriptor %d no longer holds its connection", kv);
  CHECK_RC(kv_write(kv, PRE_KEY(0), "after", 6, 1), 0, 0); /* still the parent's, still works */
  CHECK_RC(kv_write(kv, PRE_KEY(0), value, (uint32_t)value_of(value, "pre", 0), 1), 0, 0);
  kv_close(kv);
  /* Everything of both, through a fresh connection. */
  kv = connect_or_die();
  expect_keys(kv, "pre", pre_key, FORK_PRE_KEYS);
  expect_keys(kv, "parent", parent_key, FORK_KEYS_EACH);
  expect_keys(kv, "child", child_key, FORK_KEYS_EACH);
  kv_close(kv);
}

/* ---- busy ---- */

static int busy_kv;
static int busy_stop;   /* __atomic */
static int busy_writes; /* __atomic */
static int busy_failed; /* __atomic */

static void *busy_main(void *arg) {
  (void)arg;
  while (!__atomic_load_n(&busy_stop, __ATOMIC_ACQUIRE)) {
    if (kv_write(busy_kv, BUSY_KEY, "busy", 5, 1) != 0) {
      __atomic_add_fetch(&busy_failed, 1, __ATOMIC_RELAXED);
    }
    __atomic_add_fetch(&busy_writes, 1, __ATOMIC_RELEASE);
  }
  return NULL;
}

static void scenario_busy(void) {
  char buf[VALUE_BYTES_MAX];
  pthread_t t;
  pid_t child;
  int kv = connect_or_die();
  int writes;
  int i;
  delete_keys(kv);
  busy_kv = kv;
  if (pthread_create(&t, NULL, busy_main, NULL) != 0) {
    perror("test_fork: pthread_create");
    exit(1);
  }
  while (__atomic_load_n(&busy_writes, __ATOMIC_ACQUIRE) < BUSY_WRITES_BEFORE_FORK &&
         __atomic_load_n(&busy_failed, __ATOMIC_RELAXED) == 0) {
    sched_yield();
  }
  fflush(stdout);
  child = fork();
  if (child < 0) {
    perror("test_fork: fork");
    exit(1);
  }
  if (child == 0) {
    alarm(FORK_ALARM_SECONDS);
    CHECK_RC(kv_write(kv, BUSY_CHILD_KEY, "child", 6, 0), 0, 0);
    CHECK_RC(kv_read(kv, BUSY_CHILD_KEY, buf, sizeof buf), 6, 0);
    CHECK(memcmp(buf, "child", 6) == 0, "busy: the child read back wrong bytes");
    CHECK_RC(kv_read(kv, BUSY_KEY, buf, sizeof buf), 5, 0);
    /* _exit: the child of a multithreaded process runs no exit-time handlers (LeakSanitizer's
     * among them, which would look for the parent's thread). */
    i = check_summary("test_fork busy (child)");
    fflush(stdout);
    _exit(i);
  }
  child_passed(child, "busy");
  writes = __atomic_load_n(&busy_writes, __ATOMIC_ACQUIRE);
  while (__atomic_load_n(&busy_writes, __ATOMIC_ACQUIRE) < writes + BUSY_WRITES_BEFORE_FORK &&
         __atomic_load_n(&busy_failed, __ATOMIC_RELAXED) == 0) {
    sched_yield(); /* the parent's thread goes on after the fork */
  }
  __atomic_store_n(&busy_stop, 1, __ATOMIC_RELEASE);
  pthread_join(t, NULL);
  CHECK(__atomic_load_n(&busy_failed, __ATOMIC_RELAXED) == 0,
        "busy: %d of the parent's writes failed", __atomic_load_n(&busy_failed, __ATOMIC_RELAXED));
  CHECK_RC(kv_read(kv, BUSY_CHILD_KEY, buf, sizeof buf), 6, 0);
  kv_close(kv);
}

/* ---- processes ---- */

static int run_scenario(const char *name) {
  char summary[64];
  alarm(FORK_ALARM_SECONDS);
  if (strcmp(name, "shared") == 0) {
    scenario_shared();
  } else if (strcmp(name, "busy") == 0) {
    scenario_busy();
  } else if (strcmp(name, "off") == 0) {
    setenv("PSISKV_RETRY_TIMEOUT_MS", "0", 1); /* before the first library call */
    scenario_shared();
  } else {
    fprintf(stderr, "test_fork: no scenario %s\n", name);
    return 2;
  }
  snprintf(summary, sizeof summary, "test_fork %s", name);
  return check_summary(summary);
}

static struct fake fake;

/* The fake server in a process of its own: writes its front port to port_fd, serves until
 * stop_fd reaches end of stream, stops. */
static void serve_fake(int port_fd, int stop_fd) {
  char c;
  fake_start_concurrent(&fake);
  if (write(port_fd, &fake.front_port, sizeof fake.front_port) !=
      (ssize_t)sizeof fake.front_port) {
    _exit(1);
  }
  close(port_fd);
  for (;;) { /* until end of stream: main closed its end, or died */
    ssize_t r = read(stop_fd, &c, 1);
    if (r == 0 || (r < 0 && errno != EINTR)) break;
  }
  fake_stop(&fake);
  _exit(0);
}

int main(int argc, char **argv) {
  static const char *const scenarios[] = {"shared", "busy", "off"};
  int stop_pipe[2] = {-1, -1};
  pid_t server = -1;
  int failed = 0;
  size_t i;
  if (argc == 3) {
    host = argv[1];
    port = atoi(argv[2]);
  } else if (argc == 1) {
    int port_pipe[2];
    if (pipe(port_pipe) < 0 || pipe(stop_pipe) < 0) {
      perror("test_fork: pipe");
      return 1;
    }
    server = fork();
    if (server < 0) {
      perror("test_fork: fork");
      return 1;
    }
    if (server == 0) {
      close(port_pipe[0]);
      close(stop_pipe[1]);
      serve_fake(port_pipe[1], stop_pipe[0]);
    }
    close(port_pipe[1]);
    close(stop_pipe[0]);
    if (read(port_pipe[0], &port, sizeof port) != (ssize_t)sizeof port) {
      fprintf(stderr, "test_fork: the fake server did not start\n");
      return 1;
    }
    close(port_pipe[0]);
  } else {
    fprintf(stderr, "usage: %s [host port]\n", argv[0]);
    return 2;
  }
  for (i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++) {
    int status = 0;
    pid_t pid;
    fflush(stdout);
    pid = fork();
    if (pid < 0) {
      perror("test_fork: fork");
      return 1;
    }
    if (pid == 0) {
      if (stop_pipe[1] >= 0) close(stop_pipe[1]);
      exit(run_scenario(scenarios[i]));
    }
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fprintf(stderr, "test_fork: scenario %s failed (status %#x)\n", scenarios[i], status);
      failed++;
    }
  }
  if (server > 0) {
    int status = 0;
    close(stop_pipe[1]);
    waitpid(server, &status, 0);
  }
  printf("test_fork: %d of %d scenarios failed\n", failed,
         (int)(sizeof scenarios / sizeof scenarios[0]));
  return failed == 0 ? 0 : 1;
}
