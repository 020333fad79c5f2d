/*
 * loadgen.c - the benchmark's C load generator: the driver shared by loadgen-psiskv,
 * loadgen-hiredis and loadgen-memcached, which differ only in the backend file linked with it
 * (backend.h).
 *
 *   loadgen-<backend> [--host H] [--port P] [--threads N] [--read-percent P] [--keys K]
 *                     [--value-bytes V] [--seconds S] [--warmup-seconds W]
 *                     [--preload | --no-preload | --preload-only] [--preload-threads N]
 *                     [--server-pid PID]
 *
 * What it does:
 * 1. Preload (unless --no-preload): --preload-threads connections write every key 0..K-1 once
 *    with a V-byte value, keys split round-robin among them; a progress line on stderr ("preloading
 *    100000 keys: 42%"), updated in place when stderr is a terminal. --preload-only stops here.
 * 2. Load: N worker threads, ONE blocking connection each, all connected before the clock starts.
 *    Each loops: a key uniform in 0..K-1 and, with probability P%, a read (get into a V-byte buffer)
 *    else a write (set, replacing the value). Every operation is timed with CLOCK_MONOTONIC.
 * 3. Warm-up for W seconds (nothing recorded), then the measured interval of S seconds: each worker
 *    records the latency of every operation that started inside it into its own histogram
 *    (histogram.h), merged at the end. The process's CPU time (getrusage RUSAGE_SELF, user + system,
 *    every thread) is read at both ends of the interval.
 * 4. One result line on stdout, key=value pairs separated by spaces (times in microseconds):
 *      backend=psiskv threads=16 read_percent=90 keys=100000 value_bytes=100 seconds=5.000
 *      ops=... ops_per_sec=... reads=... writes=... misses=... errors=... reconnects=...
 *      p50_us=... p99_us=... p999_us=... max_us=... mean_us=... client_cpu_us=...
 *      client_cpu_us_per_op=... [server_cpu_us=... server_cpu_us_per_op=...]
 *    misses counts reads that found no key (0 after a preload); errors counts failed operations
 *    (the worker then connects again; reconnects counts those).
 *
 * Exit status: 0 done (even with errors: the line says how many), 1 the server could not be
 * reached or the preload failed, 2 a bad option (one line saying which, then the usage).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "histogram.h"

/* Defaults, as in the usage text. */
#define DEFAULT_HOST "127.0.0.1"
#define DEFAULT_THREADS 1
#define DEFAULT_READ_PERCENT 90
#define DEFAULT_KEYS 100000L
#define DEFAULT_VALUE_BYTES 100L
#define DEFAULT_SECONDS 5.0
#define DEFAULT_WARMUP_SECONDS 2.0
#define DEFAULT_PRELOAD_THREADS 16
/* Limits of the options (a thread per connection: more is a mistake, not a benchmark). */
#define MAX_THREADS 4096
#define MAX_VALUE_BYTES (64L * 1024 * 1024)
#define MAX_KEYS 4294967295L
/* How often the preload progress line is refreshed, and how long a failed worker waits before it
 * connects again. */
#define PROGRESS_INTERVAL_MILLIS 100
#define RECONNECT_PAUSE_MILLIS 10
/* Preload: attempts per key before the preload gives up. */
#define PRELOAD_ATTEMPTS 3

enum preload_mode { PRELOAD, NO_PRELOAD, PRELOAD_ONLY };

struct options {
  const char *host;
  int port;
  int threads;
  int read_percent;
  long keys;
  long value_bytes;
  double seconds;
  double warmup_seconds;
  enum preload_mode preload;
  int preload_threads;
  long server_pid; /* 0: none */
};

static const char *program = "loadgen";

static void usage(FILE *out) {
  fprintf(out,
          "usage: %s [options]   (the %s load generator of psiskv-bench)\n"
          "  --host H              server address (default %s)\n"
          "  --port P              server port (default %d)\n"
          "  --threads N           worker threads, one blocking connection each (default %d)\n"
          "  --read-percent P      reads in percent, 0..100; the rest are writes (default %d)\n"
          "  --keys K              key space 0..K-1, uniform (default %ld)\n"
          "  --value-bytes V       value size in bytes (default %ld)\n"
          "  --seconds S           measured interval, seconds, fractions allowed (default %.0f)\n"
          "  --warmup-seconds W    load before the measured interval (default %.0f)\n"
          "  --preload             write every key once first (the default)\n"
          "  --no-preload          the keys are already there\n"
          "  --preload-only        write every key once, print the result line, stop\n"
          "  --preload-threads N   connections used by the preload (default %d)\n"
          "  --server-pid PID      also report this process's CPU time over the interval\n"
          "  --help                this text\n"
          "Prints one line of key=value results on stdout (latencies in microseconds).\n",
          program, backend_name, DEFAULT_HOST, backend_default_port, DEFAULT_THREADS,
          DEFAULT_READ_PERCENT, DEFAULT_KEYS, DEFAULT_VALUE_BYTES, DEFAULT_SECONDS,
          DEFAULT_WARMUP_SECONDS, DEFAULT_PRELOAD_THREADS);
}

static void bad_option(const char *fmt, const char *a, const char *b) {
  fprintf(stderr, "%s: ", program);
  fprintf(stderr, fmt, a, b);
  fputc('\n', stderr);
  usage(stderr);
  exit(2);
}

static long parse_long(const char *name, const char *text, long min, long max) {
  char *end;
  errno = 0;
  long v = strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v < min || v > max) {
    char range[64];
    snprintf(range, sizeof range, "%ld..%ld", min, max);
    fprintf(stderr, "%s: %s wants a whole number in %s, not '%s'\n", program, name, range, text);
    usage(stderr);
    exit(2);
  }
  return v;
}

static double parse_seconds(const char *name, const char *text, double min) {
  char *end;
  errno = 0;
  double v = strtod(text, &end);
  if (errno != 0 || end == text || *end != '\0' || !(v >= min) || v > 86400) {
    bad_option("%s wants a number of seconds (at most 86400), not '%s'", name, text);
  }
  if (min > 0 && v < 0.001) {
    bad_option("%s must be at least 0.001, not '%s'", name, text);
  }
  return v;
}

static void parse_options(int argc, char **argv, struct options *o) {
  o->host = DEFAULT_HOST;
  o->port = backend_default_port;
  o->threads = DEFAULT_THREADS;
  o->read_percent = DEFAULT_READ_PERCENT;
  o->keys = DEFAULT_KEYS;
  o->value_bytes = DEFAULT_VALUE_BYTES;
  o->seconds = DEFAULT_SECONDS;
  o->warmup_seconds = DEFAULT_WARMUP_SECONDS;
  o->preload = PRELOAD;
  o->preload_threads = DEFAULT_PRELOAD_THREADS;
  o->server_pid = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      exit(0);
    } else if (strcmp(a, "--preload") == 0) {
      o->preload = PRELOAD;
      continue;
    } else if (strcmp(a, "--no-preload") == 0) {
      o->preload = NO_PRELOAD;
      continue;
    } else if (strcmp(a, "--preload-only") == 0) {
      o->preload = PRELOAD_ONLY;
      continue;
    }
    if (strncmp(a, "--", 2) != 0 || (strcmp(a, "--host") != 0 && strcmp(a, "--port") != 0 &&
                                     strcmp(a, "--threads") != 0 &&
                                     strcmp(a, "--read-percent") != 0 &&
                                     strcmp(a, "--keys") != 0 && strcmp(a, "--value-bytes") != 0 &&
                                     strcmp(a, "--seconds") != 0 &&
                                     strcmp(a, "--warmup-seconds") != 0 &&
                                     strcmp(a, "--preload-threads") != 0 &&
                                     strcmp(a, "--server-pid") != 0)) {
      bad_option("unknown option '%s'%s", a, "");
    }
    if (i + 1 >= argc) {
      bad_option("%s needs a value%s", a, "");
    }
    const char *v = argv[++i];
    if (strcmp(a, "--host") == 0) {
      if (*v == '\0') {
        bad_option("%s needs a non-empty value%s", a, "");
      }
      o->host = v;
    } else if (strcmp(a, "--port") == 0) {
      o->port = (int)parse_long(a, v, 1, 65535);
    } else if (strcmp(a, "--threads") == 0) {
      o->threads = (int)parse_long(a, v, 1, MAX_THREADS);
    } else if (strcmp(a, "--read-percent") == 0) {
      o->read_percent = (int)parse_long(a, v, 0, 100);
    } else if (strcmp(a, "--keys") == 0) {
      o->keys = parse_long(a, v, 1, MAX_KEYS);
    } else if (strcmp(a, "--value-bytes") == 0) {
      o->value_bytes = parse_long(a, v, 0, MAX_VALUE_BYTES);
    } else if (strcmp(a, "--seconds") == 0) {
      o->seconds = parse_seconds(a, v, 0.001);
    } else if (strcmp(a, "--warmup-seconds") == 0) {
      o->warmup_seconds = parse_seconds(a, v, 0);
    } else if (strcmp(a, "--server-pid") == 0) {
      o->server_pid = parse_long(a, v, 1, 4194304);
    } else {
      o->preload_threads = (int)parse_long(a, v, 1, MAX_THREADS);
    }
  }
}

static uint64_t now_nanos(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_nanos(uint64_t nanos) {
  struct timespec ts = {(time_t)(nanos / 1000000000u), (long)(nanos % 1000000000u)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static uint64_t cpu_micros(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
         (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* The CPU time (user + system, microseconds) of process pid from /proc/pid/stat, or -1. Fields 14
 * and 15 (utime, stime) count clock ticks; the command name (field 2) may hold spaces and
 * parentheses, so fields are counted from the last ')'. */
static long long process_cpu_micros(long pid) {
  char path[64], line[1024];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    return -1;
  }
  size_t n = fread(line, 1, sizeof line - 1, f);
  fclose(f);
  line[n] = '\0';
  char *p = strrchr(line, ')');
  if (p == NULL) {
    return -1;
  }
  /* p + 2 is field 3 (state); utime is field 14, 11 fields on. */
  char *save = NULL;
  char *field = strtok_r(p + 2, " ", &save);
  for (int i = 3; field != NULL && i < 14; i++) {
    field = strtok_r(NULL, " ", &save);
  }
  char *stime = field != NULL ? strtok_r(NULL, " ", &save) : NULL;
  if (stime == NULL) {
    return -1;
  }
  long ticks_per_second = sysconf(_SC_CLK_TCK);
  long long ticks = atoll(field) + atoll(stime);
  return ticks * 1000000 / (ticks_per_second > 0 ? ticks_per_second : 100);
}

/* splitmix64: a small, fast generator; one per thread, seeded by the thread's number. */
static uint64_t next_random(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

/* ---- preload ------------------------------------------------------------------------------ */

struct preloader {
  pthread_t thread;
  const struct options *o;
  const char *value;
  int index;
  int count;
  atomic_long *done;
  atomic_int *failed;
  char error[256];
};

static void *preload_run(void *arg) {
  struct preloader *p = arg;
  const struct options *o = p->o;
  struct backend_conn *conn = backend_connect(o->host, o->port, p->error, sizeof p->error);
  if (conn == NULL) {
    atomic_store(p->failed, 1);
    return NULL;
  }
  for (long k = p->index; k < o->keys && !atomic_load_explicit(p->failed, memory_order_relaxed);
       k += p->count) {
    int attempt = 0;
    while (backend_set(conn, (uint32_t)k, p->value, (size_t)o->value_bytes) != BACKEND_OK) {
      backend_close(conn);
      conn = NULL;
      if (++attempt == PRELOAD_ATTEMPTS) {
        snprintf(p->error, sizeof p->error, "writing key %ld failed %d times", k, attempt);
        atomic_store(p->failed, 1);
        return NULL;
      }
      conn = backend_connect(o->host, o->port, p->error, sizeof p->error);
      if (conn == NULL) {
        atomic_store(p->failed, 1);
        return NULL;
      }
    }
    atomic_fetch_add_explicit(p->done, 1, memory_order_relaxed);
  }
  backend_close(conn);
  return NULL;
}

/* Writes every key once; returns the seconds it took, or exits 1 on failure. */
static double preload(const struct options *o, const char *value) {
  int count = o->preload_threads;
  if (count > o->keys) {
    count = (int)o->keys;
  }
  struct preloader *p = calloc((size_t)count, sizeof *p);
  atomic_long done = 0;
  atomic_int failed = 0;
  if (p == NULL) {
    fprintf(stderr, "%s: out of memory\n", program);
    exit(1);
  }
  int tty = isatty(STDERR_FILENO);
  uint64_t start = now_nanos();
  int started = 0;
  for (int i = 0; i < count; i++) {
    p[i] = (struct preloader){.o = o, .value = value, .index = i, .count = count,
                              .done = &done, .failed = &failed};
    if (pthread_create(&p[i].thread, NULL, preload_run, &p[i]) != 0) {
      snprintf(p[i].error, sizeof p[i].error, "cannot start a thread: %s", strerror(errno));
      atomic_store(&failed, 1);
      break;
    }
    started++;
  }
  int last_percent = -1;
  while (atomic_load(&done) < o->keys && !atomic_load(&failed)) {
    int percent = (int)(atomic_load(&done) * 100 / o->keys);
    if (tty && percent != last_percent) {
      fprintf(stderr, "\rpreloading %ld keys: %d%%", o->keys, percent);
      last_percent = percent;
    }
    sleep_nanos(PROGRESS_INTERVAL_MILLIS * 1000000u);
  }
  for (int i = 0; i < started; i++) {
    pthread_join(p[i].thread, NULL);
  }
  double seconds = (double)(now_nanos() - start) / 1e9;
  if (atomic_load(&failed)) {
    if (tty) {
      fputc('\n', stderr);
    }
    for (int i = 0; i < count; i++) {
      if (p[i].error[0] != '\0') {
        fprintf(stderr, "%s: preload of %s:%d failed: %s\n", program, o->host, o->port,
                p[i].error);
        break;
      }
    }
    exit(1);
  }
  fprintf(stderr, "%spreloading %ld keys: 100%% (%.1f s, %.0f keys/s)\n", tty ? "\r" : "",
          o->keys, seconds, (double)o->keys / seconds);
  free(p);
  return seconds;
}

/* ---- load --------------------------------------------------------------------------------- */

enum phase { WARMUP, MEASURE, STOP };
static atomic_int phase = WARMUP;

struct worker {
  pthread_t thread;
  const struct options *o;
  const char *value;
  struct backend_conn *conn;
  uint64_t seed;
  struct histogram hist; /* operations that started in the measured interval */
  uint64_t reads, writes, misses, errors, reconnects;
};

static void *worker_run(void *arg) {
  struct worker *w = arg;
  const struct options *o = w->o;
  char *buf = malloc((size_t)o->value_bytes + 1);
  char err[256];
  if (buf == NULL) {
    fprintf(stderr, "%s: out of memory\n", program);
    exit(1);
  }
  uint64_t state = w->seed;
  for (;;) {
    int ph = atomic_load_explicit(&phase, memory_order_relaxed);
    if (ph == STOP) {
      break;
    }
    if (w->conn == NULL) {
      w->conn = backend_connect(o->host, o->port, err, sizeof err);
      if (w->conn == NULL) {
        sleep_nanos(RECONNECT_PAUSE_MILLIS * 1000000u);
        continue;
      }
      w->reconnects++;
    }
    uint64_t r = next_random(&state);
    uint32_t key = (uint32_t)((r >> 32) % (uint64_t)o->keys);
    int read = (int)((r & 0xffffffffu) % 100) < o->read_percent;
    uint64_t t0 = now_nanos();
    int rc = read ? backend_get(w->conn, key, buf, (size_t)o->value_bytes)
                  : backend_set(w->conn, key, w->value, (size_t)o->value_bytes);
    uint64_t t1 = now_nanos();
    if (ph != MEASURE) {
      if (rc == BACKEND_ERROR) {
        backend_close(w->conn);
        w->conn = NULL;
      }
      continue;
    }
    if (rc == BACKEND_ERROR) {
      w->errors++;
      backend_close(w->conn);
      w->conn = NULL;
      continue;
    }
    hist_record(&w->hist, t1 - t0);
    if (read) {
      w->reads++;
      if (rc == BACKEND_MISS) {
        w->misses++;
      }
    } else {
      w->writes++;
    }
  }
  free(buf);
  return NULL;
}

int main(int argc, char **argv) {
  const char *slash = strrchr(argv[0], '/');
  program = slash != NULL ? slash + 1 : argv[0];
  struct options o;
  parse_options(argc, argv, &o);

  char *value = malloc((size_t)o.value_bytes + 1);
  if (value == NULL) {
    fprintf(stderr, "%s: out of memory\n", program);
    return 1;
  }
  uint64_t fill = 42;
  for (long i = 0; i < o.value_bytes; i++) {
    value[i] = (char)('a' + next_random(&fill) % 26);
  }

  if (o.preload != NO_PRELOAD) {
    double seconds = preload(&o, value);
    if (o.preload == PRELOAD_ONLY) {
      printf("backend=%s keys=%ld value_bytes=%ld preload_seconds=%.3f preload_keys_per_sec=%.1f\n",
             backend_name, o.keys, o.value_bytes, seconds, (double)o.keys / seconds);
      return 0;
    }
  }

  struct worker *w = calloc((size_t)o.threads, sizeof *w);
  if (w == NULL) {
    fprintf(stderr, "%s: out of memory\n", program);
    return 1;
  }
  /* Every connection is made before the clock starts; one that cannot be made ends the run. */
  for (int i = 0; i < o.threads; i++) {
    char err[256];
    w[i].o = &o;
    w[i].value = value;
    w[i].seed = 0x5eed0000u + (uint64_t)i;
    hist_init(&w[i].hist);
    w[i].conn = backend_connect(o.host, o.port, err, sizeof err);
    if (w[i].conn == NULL) {
      fprintf(stderr, "%s: cannot connect to %s:%d (connection %d of %d): %s\n", program, o.host,
              o.port, i + 1, o.threads, err);
      return 1;
    }
  }
  for (int i = 0; i < o.threads; i++) {
    int rc = pthread_create(&w[i].thread, NULL, worker_run, &w[i]);
    if (rc != 0) {
      fprintf(stderr, "%s: cannot start thread %d of %d: %s\n", program, i + 1, o.threads,
              strerror(rc));
      return 1;
    }
  }

  sleep_nanos((uint64_t)(o.warmup_seconds * 1e9));
  long long server0 = o.server_pid != 0 ? process_cpu_micros(o.server_pid) : -1;
  uint64_t cpu0 = cpu_micros();
  uint64_t t0 = now_nanos();
  atomic_store(&phase, MEASURE);
  sleep_nanos((uint64_t)(o.seconds * 1e9));
  atomic_store(&phase, STOP);
  uint64_t t1 = now_nanos();
  uint64_t cpu1 = cpu_micros();
  long long server1 = o.server_pid != 0 ? process_cpu_micros(o.server_pid) : -1;
  for (int i = 0; i < o.threads; i++) {
    pthread_join(w[i].thread, NULL);
    backend_close(w[i].conn);
  }

  static struct histogram all;
  hist_init(&all);
  uint64_t reads = 0, writes = 0, misses = 0, errors = 0, reconnects = 0;
  for (int i = 0; i < o.threads; i++) {
    hist_add(&all, &w[i].hist);
    reads += w[i].reads;
    writes += w[i].writes;
    misses += w[i].misses;
    errors += w[i].errors;
    reconnects += w[i].reconnects;
  }
  double elapsed = (double)(t1 - t0) / 1e9;
  uint64_t ops = all.total;
  uint64_t cpu = cpu1 - cpu0;
  printf("backend=%s threads=%d read_percent=%d keys=%ld value_bytes=%ld seconds=%.3f"
         " ops=%llu ops_per_sec=%.1f reads=%llu writes=%llu misses=%llu errors=%llu"
         " reconnects=%llu p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f mean_us=%.1f"
         " client_cpu_us=%llu client_cpu_us_per_op=%.2f",
         backend_name, o.threads, o.read_percent, o.keys, o.value_bytes, elapsed,
         (unsigned long long)ops, (double)ops / elapsed, (unsigned long long)reads,
         (unsigned long long)writes, (unsigned long long)misses, (unsigned long long)errors,
         (unsigned long long)reconnects, hist_percentile(&all, 50) / 1e3,
         hist_percentile(&all, 99) / 1e3, hist_percentile(&all, 99.9) / 1e3,
         (double)all.max / 1e3, ops ? all.sum / (double)ops / 1e3 : 0.0,
         (unsigned long long)cpu, ops ? (double)cpu / (double)ops : 0.0);
  if (o.server_pid != 0) {
    if (server0 < 0 || server1 < 0) {
      fprintf(stderr, "%s: cannot read /proc/%ld/stat: the server's CPU time is not known\n",
              program, o.server_pid);
    } else {
      long long server = server1 - server0;
      printf(" server_cpu_us=%lld server_cpu_us_per_op=%.2f", server,
             ops ? (double)server / (double)ops : 0.0);
    }
  }
  putchar('\n');
  free(w);
  free(value);
  return 0;
}
