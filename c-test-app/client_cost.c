/*
 * client_cost.c - what one operation costs the client: CPU time and wall time per operation of
 * libpsiskv under a fixed mix, for the figures of DESIGN.md section 9. Not a test: it prints
 * figures and exits 1 only if a call fails.
 *
 *   usage: client_cost host port [operations [threads [value-bytes [read-percent [keys]]]]]
 *          defaults:              20000       1         100           90             1000
 *
 * Each thread has its own descriptor and its own block of keys. It first writes every key of its
 * block once (the preload, so that every read finds a value), then waits for the others, then
 * runs its share of the operations: read-percent kv_read of a random key of its block into a
 * buffer of value-bytes, the rest kv_write (overwrite) of value-bytes. The CPU time of the whole
 * process (getrusage RUSAGE_SELF, every thread, user and system) is taken around that measured
 * phase only, so the preload and connection set-up are not in the figures.
 *
 * For system calls per operation, run it under strace twice, with `operations` and with 0, and
 * take the difference (the second run has the connections and the preload and nothing else):
 *   strace -f -c -o with.txt  ./client_cost 127.0.0.1 PORT 20000
 *   strace -f -c -o without.txt ./client_cost 127.0.0.1 PORT 0
 */
#define _POSIX_C_SOURCE 200809L

#include "psiskv.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define DEFAULT_OPERATIONS 20000L
#define DEFAULT_THREADS 1
#define DEFAULT_VALUE_BYTES 100L
#define DEFAULT_READ_PERCENT 90L
#define DEFAULT_KEYS_PER_THREAD 1000L
#define MAX_THREADS 256
/* Threads' key blocks start here: far from the keys of the other programs of c-test-app. */
#define KEY_BASE 0x6C000000u

static const char *host;
static int port;
static long value_bytes = DEFAULT_VALUE_BYTES;
static long read_percent = DEFAULT_READ_PERCENT;
static long keys_per_thread = DEFAULT_KEYS_PER_THREAD;
static pthread_barrier_t preloaded; /* every thread and main: the measured phase starts */

struct worker {
  pthread_t thread;
  int index;
  long operations; /* this thread's share of the measured phase */
  int failed;
};

static uint64_t next_random(uint64_t *state) { /* xorshift64: cheap, no shared state */
  uint64_t x = *state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  *state = x;
  return x;
}

static void *work(void *arg) {
  struct worker *w = (struct worker *)arg;
  uint32_t first_key = KEY_BASE + (uint32_t)w->index * (uint32_t)keys_per_thread;
  uint64_t random_state = 0x9E3779B97F4A7C15ull ^ (uint64_t)(w->index + 1);
  char *value = (char *)malloc((size_t)value_bytes + 1);
  char *buf = (char *)malloc((size_t)value_bytes + 1);
  int kv = kv_connect(host, port);
  long i;
  if (value == NULL || buf == NULL || kv < 1) {
    fprintf(stderr, "client_cost: thread %d: set-up failed: %s\n", w->index, strerror(errno));
    w->failed = 1;
  }
  if (!w->failed) memset(value, 'v', (size_t)value_bytes);
  for (i = 0; i < keys_per_thread && !w->failed; i++) {
    if (kv_write(kv, first_key + (uint32_t)i, value, (uint32_t)value_bytes, 1) != 0) {
      fprintf(stderr, "client_cost: preload: %s\n", strerror(errno));
      w->failed = 1;
    }
  }
  pthread_barrier_wait(&preloaded);
  for (i = 0; i < w->operations && !w->failed; i++) {
    uint64_t r = next_random(&random_state);
    uint32_t key = first_key + (uint32_t)(r % (uint64_t)keys_per_thread);
    if ((long)((r >> 32) % 100) < read_percent) {
      int rc = kv_read(kv, key, buf, (uint32_t)value_bytes);
      if (rc != (int)value_bytes) {
        fprintf(stderr, "client_cost: kv_read returned %d: %s\n", rc, strerror(errno));
        w->failed = 1;
      }
    } else if (kv_write(kv, key, value, (uint32_t)value_bytes, 1) != 0) {
      fprintf(stderr, "client_cost: kv_write: %s\n", strerror(errno));
      w->failed = 1;
    }
  }
  if (kv > 0) kv_close(kv);
  free(value);
  free(buf);
  return NULL;
}

static double seconds_of(const struct timeval *tv) {
  return (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long arg_or(int argc, char **argv, int i, long fallback) {
  return argc > i ? strtol(argv[i], NULL, 10) : fallback;
}

int main(int argc, char **argv) {
  static struct worker workers[MAX_THREADS];
  struct rusage before;
  struct rusage after;
  double wall_start;
  double wall;
  double user;
  double sys;
  long operations;
  int threads;
  int failed = 0;
  int i;
  if (argc < 3) {
    fprintf(stderr,
            "usage: client_cost host port [operations [threads [value-bytes [read-percent "
            "[keys]]]]]\n");
    return 2;
  }
  host = argv[1];
  port = (int)strtol(argv[2], NULL, 10);
  operations = arg_or(argc, argv, 3, DEFAULT_OPERATIONS);
  threads = (int)arg_or(argc, argv, 4, DEFAULT_THREADS);
  value_bytes = arg_or(argc, argv, 5, DEFAULT_VALUE_BYTES);
  read_percent = arg_or(argc, argv, 6, DEFAULT_READ_PERCENT);
  keys_per_thread = arg_or(argc, argv, 7, DEFAULT_KEYS_PER_THREAD);
  if (operations < 0 || threads < 1 || threads > MAX_THREADS || value_bytes < 0 ||
      value_bytes > INT32_MAX - 1 || read_percent < 0 || read_percent > 100 ||
      keys_per_thread < 1) {
    fprintf(stderr, "client_cost: an argument is out of range\n");
    return 2;
  }
  pthread_barrier_init(&preloaded, NULL, (unsigned)threads + 1);
  for (i = 0; i < threads; i++) {
    workers[i].index = i;
    workers[i].operations = operations / threads + (i < operations % threads ? 1 : 0);
    if (pthread_create(&workers[i].thread, NULL, work, &workers[i]) != 0) {
      perror("client_cost: thread");
      return 1;
    }
  }
  pthread_barrier_wait(&preloaded);
  getrusage(RUSAGE_SELF, &before);
  wall_start = now_seconds();
  for (i = 0; i < threads; i++) {
    pthread_join(workers[i].thread, NULL);
    failed |= workers[i].failed;
  }
  wall = now_seconds() - wall_start;
  getrusage(RUSAGE_SELF, &after);
  user = seconds_of(&after.ru_utime) - seconds_of(&before.ru_utime);
  sys = seconds_of(&after.ru_stime) - seconds_of(&before.ru_stime);
  if (operations > 0) {
    printf("client_cost: %ld operations, %d threads, %ld-byte values, %ld%% reads: "
           "%.2f us CPU per operation (user %.2f, system %.2f), %.0f operations/s\n",
           operations, threads, value_bytes, read_percent, (user + sys) * 1e6 / (double)operations,
           user * 1e6 / (double)operations, sys * 1e6 / (double)operations,
           (double)operations / wall);
  }
  pthread_barrier_destroy(&preloaded);
  return failed ? 1 : 0;
}
