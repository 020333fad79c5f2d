/*
 * test_edge.c - edge cases of libpsiskv against a running psiskv server.
 *
 *   usage: test_edge host port [max-value-bytes]
 *
 * max-value-bytes is the maximum the server was started with (--max-value-bytes; default the
 * protocol's 64 MiB): a value one byte longer must be refused (locally, without sending it).
 * Keys: 0, 0xFFFFFFFF and a block from EDGE_KEY_BASE, each deleted before use, so the program
 * can run again and again against one server. Checks every return code and errno, counts the
 * checks, and exits 1 if any failed.
 */
#define _POSIX_C_SOURCE 200809L

#include "psiskv.h"

#include "check.h"

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Keys of this program: far from the 0..N-1 of test1 and test2. */
#define EDGE_KEY_BASE 0x7E000000u
#define KEY(n) (EDGE_KEY_BASE + (uint32_t)(n))

#define DEFAULT_MAX_VALUE_BYTES 67108864u /* PROTOCOL.md 9 */
#define LARGE_VALUE_BYTES (1024u * 1024u)
/* The exact maximum is written too when it is at most this (memory and time stay small). */
#define WRITE_EXACT_MAX_LIMIT_BYTES (4u * 1024u * 1024u)
#define CANARY_BYTES 32
#define CANARY 0xA5
#define MANY_DESCRIPTORS 64
#define OWN_DESCRIPTOR_THREADS 16
#define SHARED_DESCRIPTOR_THREADS 8
#define ITERATIONS_PER_THREAD 100
#define CLOSE_RACE_THREADS 4
/* Calls the close-race threads make in all before kv_close is called under them. */
#define CLOSE_RACE_CALLS_BEFORE_CLOSE 200
/* A connect refused by the peer must fail well within the default connect budget. */
#define REFUSED_CONNECT_BOUND_MS 10000
/* Budget given to kv_connect against a server that never answers, and the bound it must keep. */
#define SILENT_SERVER_TIMEOUT_MS 300
#define SILENT_SERVER_BOUND_MS 5000
#define WAIT_FOR_THREADS_MS 30000
#define FORK_BUSY_THREADS 4
#define FORK_CHILDREN 10
/* A child that cannot finish in this time is stuck (a lock inherited held): SIGALRM ends it. */
#define FORK_CHILD_ALARM_SECONDS 20

static const char *host;
static int port;
static uint32_t max_value_bytes = DEFAULT_MAX_VALUE_BYTES;

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int connect_or_die(void) {
  int kv = kv_connect(host, port);
  if (kv < 1) {
    fprintf(stderr, "test_edge: kv_connect(%s, %d) failed: %s\n", host, port, strerror(errno));
    exit(1);
  }
  return kv;
}

/* Reads key into a fresh buffer and checks it holds exactly want[0..len). */
static void expect_value(int kv, uint32_t key, const void *want, uint32_t len, int line) {
  char *buf = (char *)malloc((size_t)len + CANARY_BYTES);
  int rc;
  size_t i;
  int canary_ok = 1;
  if (buf == NULL) exit(1);
  memset(buf, CANARY, (size_t)len + CANARY_BYTES);
  rc = kv_read(kv, key, buf, len);
  check(rc == (int)len, line, "kv_read(key 0x%lx) returned %d, expected %lu", (unsigned long)key,
        rc, (unsigned long)len);
  if (rc == (int)len) {
    check(memcmp(buf, want, len) == 0, line, "kv_read(key 0x%lx): wrong bytes",
          (unsigned long)key);
  }
  for (i = len; i < (size_t)len + CANARY_BYTES; i++) canary_ok &= (unsigned char)buf[i] == CANARY;
  check(canary_ok, line, "kv_read(key 0x%lx) wrote past value_length", (unsigned long)key);
  free(buf);
}

static void test_binary_values(int kv) {
  unsigned char all[256];
  static const char nuls[] = {'\0', 'a', '\0', '\0', 'b', '\0'};
  int i;
  for (i = 0; i < 256; i++) all[i] = (unsigned char)i;
  CHECK_RC(kv_write(kv, KEY(1), (const char *)all, sizeof all, 1), 0, 0);
  expect_value(kv, KEY(1), all, sizeof all, __LINE__);
  CHECK_RC(kv_write(kv, KEY(2), nuls, sizeof nuls, 1), 0, 0);
  expect_value(kv, KEY(2), nuls, sizeof nuls, __LINE__);
}

static void test_empty_value(int kv) {
  char buf[8];
  CHECK_RC(kv_write(kv, KEY(3), "", 0, 1), 0, 0);
  memset(buf, CANARY, sizeof buf);
  CHECK_RC(kv_read(kv, KEY(3), buf, sizeof buf), 0, 0);
  CHECK((unsigned char)buf[0] == CANARY, "reading an empty value wrote into the buffer");
  CHECK_RC(kv_write(kv, KEY(4), NULL, 0, 1), 0, 0); /* NULL with length 0 is an empty value */
  CHECK_RC(kv_read(kv, KEY(4), NULL, 0), 0, 0);
}

static void test_short_buffers(int kv) {
  char value[100];
  char area[sizeof value + CANARY_BYTES];
  size_t i;
  uint32_t lengths[] = {0, 1, 10, 99, 100, 101};
  size_t l;
  for (i = 0; i < sizeof value; i++) value[i] = (char)('A' + i % 26);
  CHECK_RC(kv_write(kv, KEY(5), value, sizeof value, 1), 0, 0);
  for (l = 0; l < sizeof lengths / sizeof lengths[0]; l++) {
    uint32_t len = lengths[l];
    int canary_ok = 1;
    memset(area, CANARY, sizeof area);
    CHECK_RC(kv_read(kv, KEY(5), area, len), 100, 0); /* the stored length, whatever len */
    CHECK(memcmp(area, value, len < sizeof value ? len : sizeof value) == 0,
          "short read of %lu bytes: wrong bytes", (unsigned long)len);
    for (i = len < sizeof value ? len : sizeof value; i < sizeof area; i++) {
      canary_ok &= (unsigned char)area[i] == CANARY;
    }
    CHECK(canary_ok, "kv_read with value_length %lu wrote past it", (unsigned long)len);
  }
  CHECK_RC(kv_read(kv, KEY(5), NULL, 0), 100, 0); /* length only */
}

static void test_extreme_keys(int kv) {
  kv_delete(kv, 0);
  kv_delete(kv, 0xFFFFFFFFu);
  CHECK_RC(kv_write(kv, 0, "zero", 5, 0), 0, 0);
  CHECK_RC(kv_write(kv, 0xFFFFFFFFu, "max", 4, 0), 0, 0);
  expect_value(kv, 0, "zero", 5, __LINE__);
  expect_value(kv, 0xFFFFFFFFu, "max", 4, __LINE__);
  CHECK_RC(kv_delete(kv, 0), 0, 0);
  CHECK_RC(kv_delete(kv, 0xFFFFFFFFu), 0, 0);
  CHECK_RC(kv_read(kv, 0, NULL, 0), -2, ENOENT);
  CHECK_RC(kv_read(kv, 0xFFFFFFFFu, NULL, 0), -2, ENOENT);
}

static void test_overwrite(int kv) {
  kv_delete(kv, KEY(6));
  CHECK_RC(kv_write(kv, KEY(6), "one", 4, 0), 0, 0);
  CHECK_RC(kv_write(kv, KEY(6), "two", 4, 1), 0, 0);
  expect_value(kv, KEY(6), "two", 4, __LINE__);
  CHECK_RC(kv_write(kv, KEY(6), "three", 6, 0), -2, EEXIST);
  expect_value(kv, KEY(6), "two", 4, __LINE__); /* -2 changed nothing */
  CHECK_RC(kv_write(kv, KEY(6), "four", 5, 7), 0, 0); /* any nonzero kv_overwrite overwrites */
  expect_value(kv, KEY(6), "four", 5, __LINE__);
}

static void test_missing_keys(int kv) {
  kv_delete(kv, KEY(7));
  CHECK_RC(kv_delete(kv, KEY(7)), -1, ENOENT);
  CHECK_RC(kv_read(kv, KEY(7), NULL, 0), -2, ENOENT);
  {
    char buf[4] = {1, 2, 3, 4};
    CHECK_RC(kv_read(kv, KEY(7), buf, sizeof buf), -2, ENOENT);
    CHECK(buf[0] == 1 && buf[3] == 4, "reading a missing key wrote into the buffer");
  }
}

static void test_many_descriptors(void) {
  int kv[MANY_DESCRIPTORS];
  char value[16];
  int i;
  int j;
  struct pollfd p[MANY_DESCRIPTORS];
  struct stat st;
  int ready;
  for (i = 0; i < MANY_DESCRIPTORS; i++) {
    kv[i] = connect_or_die();
    for (j = 0; j < i; j++) CHECK(kv[j] != kv[i], "descriptor %d issued twice", kv[i]);
    /* psiskv.h: the descriptor is its connection's socket, at a number >= 3. */
    CHECK(kv[i] >= 3 && fstat(kv[i], &st) == 0 && S_ISSOCK(st.st_mode),
          "descriptor %d is not a socket at a number >= 3", kv[i]);
    p[i].fd = kv[i];
    p[i].events = POLLOUT;
    p[i].revents = 0;
  }
  ready = poll(p, MANY_DESCRIPTORS, 0); /* idle connections: every one writable */
  CHECK(ready == MANY_DESCRIPTORS, "poll POLLOUT: %d of %d descriptors ready", ready,
        MANY_DESCRIPTORS);
  for (i = 0; i < MANY_DESCRIPTORS; i++) {
    sprintf(value, "d%d", i);
    CHECK_RC(kv_write(kv[i], KEY(100 + i), value, (uint32_t)strlen(value) + 1, 1), 0, 0);
  }
  for (i = 0; i < MANY_DESCRIPTORS; i++) { /* each reads what the next one wrote */
    int other = (i + 1) % MANY_DESCRIPTORS;
    sprintf(value, "d%d", other);
    expect_value(kv[i], KEY(100 + other), value, (uint32_t)strlen(value) + 1, __LINE__);
  }
  for (i = 0; i < MANY_DESCRIPTORS; i++) kv_close(kv[i]);
  for (i = 0; i < MANY_DESCRIPTORS; i++) CHECK_RC(kv_read(kv[i], KEY(100), NULL, 0), -1, EBADF);
}

static void test_bad_descriptors(int good) {
  int bogus[] = {0, -1, -12345, 12345, INT_MAX, INT_MIN};
  char buf[4];
  size_t i;
  int closed = connect_or_die();
  kv_close(closed);
  for (i = 0; i < sizeof bogus / sizeof bogus[0]; i++) {
    int d = bogus[i];
    if (d == good) continue;
    CHECK_RC(kv_write(d, KEY(8), "x", 2, 1), -1, EBADF);
    CHECK_RC(kv_read(d, KEY(8), buf, sizeof buf), -1, EBADF);
    CHECK_RC(kv_delete(d, KEY(8)), -1, EBADF);
    kv_close(d); /* harmless */
  }
  CHECK_RC(kv_write(closed, KEY(8), "x", 2, 1), -1, EBADF);
  CHECK_RC(kv_read(closed, KEY(8), buf, sizeof buf), -1, EBADF);
  CHECK_RC(kv_delete(closed, KEY(8)), -1, EBADF);
  kv_close(closed);
  kv_close(closed);
  /* The good descriptor is unaffected. */
  CHECK_RC(kv_write(good, KEY(8), "ok", 3, 1), 0, 0);
  expect_value(good, KEY(8), "ok", 3, __LINE__);
}

static void test_bad_arguments(int kv) {
  CHECK_RC(kv_write(kv, KEY(9), NULL, 5, 1), -1, EINVAL);
  CHECK_RC(kv_read(kv, KEY(9), NULL, 5), -1, EINVAL);
  CHECK_RC(kv_write(kv, KEY(9), "fine", 5, 1), 0, 0); /* the descriptor still works */
  expect_value(kv, KEY(9), "fine", 5, __LINE__);
  CHECK_RC(kv_connect(NULL, port), -1, EINVAL);
  CHECK_RC(kv_connect(host, 0), -1, EINVAL);
  CHECK_RC(kv_connect(host, -1), -1, EINVAL);
  CHECK_RC(kv_connect(host, 65536), -1, EINVAL);
}

/* A TCP socket on 127.0.0.1 with an ephemeral port, listening or only bound; -1 on failure. */
static int local_socket(int listening, int *port_out) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) return -1;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || (listening && listen(s, 8) < 0) ||
      getsockname(s, (struct sockaddr *)&a, &len) < 0) {
    close(s);
    return -1;
  }
  *port_out = ntohs(a.sin_port);
  return s;
}

static void test_connect_failures(void) {
  int p;
  int64_t start;
  int64_t took;
  /* A port that is bound but not listening refuses connections, and stays ours meanwhile. */
  int s = local_socket(0, &p);
  CHECK(s >= 0, "could not bind a local socket");
  if (s >= 0) {
    start = now_ms();
    CHECK_RC(kv_connect("127.0.0.1", p), -1, ECONNREFUSED);
    took = now_ms() - start;
    CHECK(took < REFUSED_CONNECT_BOUND_MS, "refused connect took %ld ms", (long)took);
    close(s);
  }
  /* A Front Server that accepts (the kernel does, from the backlog) and never answers HELLO:
   * the connect budget bounds the whole set-up. */
  s = local_socket(1, &p);
  CHECK(s >= 0, "could not listen on a local socket");
  if (s >= 0) {
    char budget[16];
    sprintf(budget, "%d", SILENT_SERVER_TIMEOUT_MS);
    setenv("PSISKV_CONNECT_TIMEOUT_MS", budget, 1);
    start = now_ms();
    CHECK_RC(kv_connect("127.0.0.1", p), -1, ETIMEDOUT);
    took = now_ms() - start;
    unsetenv("PSISKV_CONNECT_TIMEOUT_MS");
    CHECK(took < SILENT_SERVER_BOUND_MS, "connect to a silent server took %ld ms", (long)took);
    close(s);
  }
  /* RFC 6761: .invalid never resolves. */
  CHECK_RC(kv_connect("no-such-host.invalid", port), -1, EHOSTUNREACH);
}

static void test_too_large(int kv) {
  /* Never touched: the library refuses the length before reading a byte. */
  char *big = (char *)malloc((size_t)max_value_bytes + 1);
  CHECK(big != NULL, "malloc of %lu bytes", (unsigned long)max_value_bytes + 1);
  if (big == NULL) return;
  CHECK_RC(kv_write(kv, KEY(10), big, max_value_bytes + 1, 1), -1, EMSGSIZE);
  CHECK_RC(kv_write(kv, KEY(10), "after", 6, 1), 0, 0); /* nothing was sent: still in step */
  expect_value(kv, KEY(10), "after", 6, __LINE__);
  if (max_value_bytes <= WRITE_EXACT_MAX_LIMIT_BYTES) {
    memset(big, 'm', max_value_bytes);
    CHECK_RC(kv_write(kv, KEY(10), big, max_value_bytes, 1), 0, 0);
    CHECK_RC(kv_read(kv, KEY(10), NULL, 0), (int)max_value_bytes, 0);
  }
  free(big);
  kv_delete(kv, KEY(10));
}

static void test_large_value(int kv) {
  uint32_t len = max_value_bytes < LARGE_VALUE_BYTES ? max_value_bytes : LARGE_VALUE_BYTES;
  char *value = (char *)malloc(len);
  uint32_t i;
  if (value == NULL) exit(1);
  for (i = 0; i < len; i++) value[i] = (char)(i * 2654435761u >> 24);
  CHECK_RC(kv_write(kv, KEY(11), value, len, 1), 0, 0);
  expect_value(kv, KEY(11), value, len, __LINE__);
  CHECK_RC(kv_delete(kv, KEY(11)), 0, 0);
  free(value);
}

/* ---- threads ----------------------------------------------------------------------------- */

struct worker {
  pthread_t thread;
  int kv; /* the descriptor to use; 0: connect one of its own */
  int index;
};

/* write / read / delete / read on keys of its own, verifying each result. */
static void *worker_main(void *arg) {
  struct worker *w = (struct worker *)arg;
  int own = w->kv == 0;
  int kv = own ? connect_or_die() : w->kv;
  char value[64];
  int i;
  for (i = 0; i < ITERATIONS_PER_THREAD; i++) {
    uint32_t key = KEY(10000 + w->index * 1000 + i);
    int len = sprintf(value, "thread %d iteration %d%.*s", w->index, i, i % 20,
                      "....................");
    kv_delete(kv, key);
    CHECK_RC(kv_write(kv, key, value, (uint32_t)len, 0), 0, 0);
    expect_value(kv, key, value, (uint32_t)len, __LINE__);
    CHECK_RC(kv_delete(kv, key), 0, 0);
    CHECK_RC(kv_read(kv, key, NULL, 0), -2, ENOENT);
  }
  if (own) kv_close(kv);
  return NULL;
}

static void run_workers(int count, int shared_kv, int index_base) {
  struct worker w[OWN_DESCRIPTOR_THREADS > SHARED_DESCRIPTOR_THREADS ? OWN_DESCRIPTOR_THREADS
                                                                      : SHARED_DESCRIPTOR_THREADS];
  int i;
  for (i = 0; i < count; i++) {
    w[i].kv = shared_kv;
    w[i].index = index_base + i;
    if (pthread_create(&w[i].thread, NULL, worker_main, &w[i]) != 0) {
      fprintf(stderr, "test_edge: pthread_create failed\n");
      exit(1);
    }
  }
  for (i = 0; i < count; i++) pthread_join(w[i].thread, NULL);
}

/* kv_close racing calls on other threads: every call returns a proper result or -1 EBADF, no
 * call hangs or crashes, and the descriptor stays invalid. */
static pthread_mutex_t race_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t race_progress = PTHREAD_COND_INITIALIZER;
static int race_calls;

static void *race_main(void *arg) {
  int kv = *(int *)arg;
  int i;
  for (i = 0;; i++) {
    int rc = kv_write(kv, KEY(20), "race", 5, 1);
    int err = errno;
    if (rc == -1) {
      CHECK(err == EBADF, "call racing kv_close failed with errno %d (%s)", err, strerror(err));
      return NULL;
    }
    CHECK(rc == 0, "call racing kv_close returned %d", rc);
    pthread_mutex_lock(&race_lock);
    race_calls++;
    pthread_cond_broadcast(&race_progress);
    pthread_mutex_unlock(&race_lock);
  }
}

static void test_close_race(void) {
  pthread_t t[CLOSE_RACE_THREADS];
  int kv = connect_or_die();
  struct timespec deadline;
  int i;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += WAIT_FOR_THREADS_MS / 1000;
  for (i = 0; i < CLOSE_RACE_THREADS; i++) pthread_create(&t[i], NULL, race_main, &kv);
  pthread_mutex_lock(&race_lock);
  while (race_calls < CLOSE_RACE_CALLS_BEFORE_CLOSE) {
    if (pthread_cond_timedwait(&race_progress, &race_lock, &deadline) != 0) break;
  }
  CHECK(race_calls >= CLOSE_RACE_CALLS_BEFORE_CLOSE, "racing threads made only %d calls",
        race_calls);
  pthread_mutex_unlock(&race_lock);
  kv_close(kv); /* while the threads are calling */
  for (i = 0; i < CLOSE_RACE_THREADS; i++) pthread_join(t[i], NULL);
  CHECK_RC(kv_delete(kv, KEY(20)), -1, EBADF);
}

/* fork() while other threads are inside kv_connect / kv_close: each child must be able to
 * connect and work (the library's table lock must not be inherited held). */
static int fork_busy_stop;

static void *fork_busy_main(void *arg) {
  (void)arg;
  while (!__atomic_load_n(&fork_busy_stop, __ATOMIC_ACQUIRE)) kv_close(connect_or_die());
  return NULL;
}

static void test_fork_while_busy(void) {
  pthread_t t[FORK_BUSY_THREADS];
  int i;
  for (i = 0; i < FORK_BUSY_THREADS; i++) pthread_create(&t[i], NULL, fork_busy_main, NULL);
  for (i = 0; i < FORK_CHILDREN; i++) {
    int status = 0;
    pid_t child = fork();
    if (child == 0) {
      int kv;
      char buf[8];
      alarm(FORK_CHILD_ALARM_SECONDS);
      kv = kv_connect(host, port);
      _exit(kv > 0 && kv_write(kv, KEY(30 + i), "fork", 5, 1) == 0 &&
                    kv_read(kv, KEY(30 + i), buf, sizeof buf) == 5 && memcmp(buf, "fork", 5) == 0
                ? 0
                : 1);
    }
    CHECK(child > 0, "fork failed");
    if (child < 0) break;
    {
      pid_t waited;
      do {
        waited = waitpid(child, &status, 0);
      } while (waited < 0 && errno == EINTR);
      CHECK(waited == child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
            "child %d forked while threads were busy: waitpid %d (%s), status 0x%x", i,
            (int)waited, waited < 0 ? strerror(errno) : "ok", status);
    }
  }
  __atomic_store_n(&fork_busy_stop, 1, __ATOMIC_RELEASE);
  for (i = 0; i < FORK_BUSY_THREADS; i++) pthread_join(t[i], NULL);
}

int main(int argc, char **argv) {
  int kv;
  if (argc < 3) {
    fprintf(stderr, "usage: %s host port [max-value-bytes]\n", argv[0]);
    return 2;
  }
  host = argv[1];
  port = atoi(argv[2]);
  if (argc > 3) max_value_bytes = (uint32_t)strtoul(argv[3], NULL, 10);
  printf("test_edge: %s:%d, server max value %lu bytes\n", host, port,
         (unsigned long)max_value_bytes);

  kv = connect_or_die();
  test_binary_values(kv);
  test_empty_value(kv);
  test_short_buffers(kv);
  test_extreme_keys(kv);
  test_overwrite(kv);
  test_missing_keys(kv);
  test_bad_arguments(kv);
  test_bad_descriptors(kv);
  test_too_large(kv);
  test_large_value(kv);
  test_many_descriptors();
  test_connect_failures();
  run_workers(OWN_DESCRIPTOR_THREADS, 0, 0);
  run_workers(SHARED_DESCRIPTOR_THREADS, kv, OWN_DESCRIPTOR_THREADS);
  test_close_race();
  test_fork_while_busy();
  kv_close(kv);

  return check_summary("test_edge");
}
