/*
 * test_read_returns.c - PSISKV_READ_RETURNS (psiskv.h, "kv_read's return value"): kv_read returns
 * the stored length unless the variable is exactly "zero", then 0; either way the value is copied,
 * at most value_length bytes, and the other calls and codes do not change.
 *
 *   usage: test_read_returns [HOST PORT]         every mode below, each in a child process
 *          test_read_returns MODE [HOST PORT]    one mode in this process
 *
 * Without HOST PORT the calls go to the fake server of fake_server.h (run-tests.sh runs that
 * before the servers start); with them, to a real Front Server (run-tests.sh runs it again
 * against the servers it started). The library reads the variable once, at its first kv_connect,
 * so each mode is a process of its own that sets it before any library call:
 *   unset    the variable unset: the stored length
 *   zero     "zero": 0, the value copied, never more than value_length bytes; -2 ENOENT for a
 *            missing key and -1 EBADF for a bad descriptor as in the unset mode; kv_write and kv_delete
 *            unchanged; a child forked after the first kv_connect keeps 0 even with the variable
 *            unset before its own kv_connect
 *   ZERO, 0, zeros, empty   any other value: the stored length
 *   late     unset at the first kv_connect, "zero" set after it: still the stored length
 * Keys are KEY_BASE + a few per mode; each mode deletes what it wrote.
 */
#define _POSIX_C_SOURCE 200809L

#include "psiskv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "fake_server.h"

#define ENV "PSISKV_READ_RETURNS"
#define KEY_BASE 0x52520000u /* "RR": this test's keys on a real server */
#define KEYS_PER_MODE 4u
#define CANARY 'Z'
#define VALUE "hello, lab"
#define VALUE_BYTES ((uint32_t)(sizeof VALUE - 1))

static struct fake f; /* large (a scratch buffer), so not on the stack */
static const char *host = "127.0.0.1";
static int port;         /* 0: the fake's */
static int fake_running; /* whether this process started the fake */

struct mode {
  const char *name;
  const char *value; /* what the variable is set to; NULL: unset */
  int zero;          /* whether a successful kv_read must return 0 */
};

static const struct mode modes[] = {
    {"unset", NULL, 0}, {"zero", "zero", 1}, {"ZERO", "ZERO", 0}, {"0", "0", 0},
    {"zeros", "zeros", 0}, {"empty", "", 0}, {"late", NULL, 0},
};
#define MODE_COUNT ((int)(sizeof modes / sizeof modes[0]))

static int connect_kv(void) {
  int kv;
  if (port == 0 && !fake_running) {
    /* Concurrent: the forked child of mode zero connects while the parent's descriptor is open. */
    fake_start_concurrent(&f);
    fake_running = 1;
  }
  kv = kv_connect(host, port != 0 ? port : f.front_port);
  if (kv < 1) {
    fprintf(stderr, "test_read_returns: kv_connect to %s:%d failed: %s\n", host,
            port != 0 ? port : f.front_port, strerror(errno));
    exit(1);
  }
  return kv;
}

/* What a successful kv_read of a value of stored bytes must return in this mode. */
static int expected(const struct mode *m, uint32_t stored) { return m->zero ? 0 : (int)stored; }

/* Reads key into a buffer of capacity bytes followed by canaries: the call must return want, the
 * first min(capacity, VALUE_BYTES) bytes must be the value's, and no byte after them written. */
static void check_read(int kv, uint32_t key, uint32_t capacity, int want) {
  char buf[64];
  uint32_t copied = capacity < VALUE_BYTES ? capacity : VALUE_BYTES;
  uint32_t i;
  int rc;
  memset(buf, CANARY, sizeof buf);
  errno = 0;
  rc = kv_read(kv, key, capacity == 0 ? NULL : buf, capacity);
  CHECK(rc == want, "kv_read(key %#x, capacity %u) returned %d (errno %s), expected %d", key,
        capacity, rc, strerror(errno), want);
  CHECK(memcmp(buf, VALUE, copied) == 0, "kv_read(capacity %u): the value was not copied",
        capacity);
  for (i = copied; i < sizeof buf; i++) {
    if (buf[i] != CANARY) {
      CHECK(0, "kv_read(capacity %u) wrote byte %u, beyond min(capacity, stored)", capacity, i);
      break;
    }
  }
}

/* The calls of one mode on one descriptor; keys from base. */
static void exercise(const struct mode *m, int kv, uint32_t base) {
  char one;
  kv_delete(kv, base); /* left over from an earlier run against a real server, perhaps */
  kv_delete(kv, base + 1);
  kv_delete(kv, base + 2);
  CHECK_RC(kv_write(kv, base, VALUE, VALUE_BYTES, 1), 0, 0);
  CHECK_RC(kv_write(kv, base, VALUE, VALUE_BYTES, 0), -2, EEXIST);
  check_read(kv, base, 64, expected(m, VALUE_BYTES));          /* room for all of it */
  check_read(kv, base, VALUE_BYTES, expected(m, VALUE_BYTES)); /* exactly */
  check_read(kv, base, 3, expected(m, VALUE_BYTES));           /* truncated */
  check_read(kv, base, 0, expected(m, VALUE_BYTES));           /* the length only */
  CHECK_RC(kv_write(kv, base + 1, NULL, 0, 1), 0, 0);           /* an empty value */
  CHECK_RC(kv_read(kv, base + 1, &one, 1), 0, 0);
  CHECK_RC(kv_read(kv, base + 2, &one, 1), -2, ENOENT); /* never written */
  CHECK_RC(kv_read(-1, base, &one, 1), -1, EBADF);
  CHECK_RC(kv_read(kv, base, NULL, 1), -1, EINVAL);
  CHECK_RC(kv_delete(kv, base), 0, 0);
  CHECK_RC(kv_delete(kv, base), -1, ENOENT);
  CHECK_RC(kv_delete(kv, base + 1), 0, 0);
}

/* A child forked after the parent's first kv_connect keeps the parent's choice, whatever its own
 * environment says at its own kv_connect. */
static void check_forked_child_keeps_it(const struct mode *m, uint32_t base) {
  int status = 0;
  pid_t pid;
  fflush(stdout);
  pid = fork();
  if (pid < 0) {
    CHECK(0, "fork: %s", strerror(errno));
    return;
  }
  if (pid == 0) {
    int kv, rc;
    check_count = check_failures = 0; /* the parent's, copied; the parent reports its own */
    unsetenv(ENV);
    kv = connect_kv();
    exercise(m, kv, base);
    kv_close(kv);
    /* _exit: the child of a multithreaded process (the fake's threads are the parent's) runs no
     * exit-time handlers (LeakSanitizer's among them, which would look for the parent's threads). */
    rc = check_summary("test_read_returns zero, forked child");
    fflush(stdout);
    _exit(rc);
  }
  CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
        "the forked child failed (status %#x)", status);
}

static int run_mode(const char *name) {
  const struct mode *m = NULL;
  char summary[64];
  uint32_t base;
  int i, kv;
  for (i = 0; i < MODE_COUNT; i++) {
    if (strcmp(modes[i].name, name) == 0) m = &modes[i];
  }
  if (m == NULL) {
    fprintf(stderr, "test_read_returns: no mode '%s'\n", name);
    return 2;
  }
  base = KEY_BASE + (uint32_t)(m - modes) * KEYS_PER_MODE * 2u;
  /* Before any library call: the library reads the variable once, at the first kv_connect. */
  if (m->value == NULL) {
    unsetenv(ENV);
  } else {
    setenv(ENV, m->value, 1);
  }
  kv = connect_kv();
  if (strcmp(m->name, "late") == 0) setenv(ENV, "zero", 1); /* too late: changes nothing */
  exercise(m, kv, base);
  if (m->zero) check_forked_child_keeps_it(m, base + KEYS_PER_MODE);
  kv_close(kv);
  if (fake_running) fake_stop(&f);
  snprintf(summary, sizeof summary, "test_read_returns %s (%s)", m->name,
           port != 0 ? "server" : "fake");
  return check_summary(summary);
}

static int parse_port(const char *s) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || v < 1 || v > 65535) {
    fprintf(stderr, "test_read_returns: bad port '%s'\n", s);
    exit(2);
  }
  return (int)v;
}

int main(int argc, char **argv) {
  int failed = 0, i;
  if (argc == 2 || argc == 4) {
    if (argc == 4) {
      host = argv[2];
      port = parse_port(argv[3]);
    }
    return run_mode(argv[1]);
  }
  if (argc == 3) {
    host = argv[1];
    port = parse_port(argv[2]);
  } else if (argc != 1) {
    fprintf(stderr, "usage: test_read_returns [MODE] [HOST PORT]\n");
    return 2;
  }
  /* One child per mode, one after the other; this process never calls the library. */
  for (i = 0; i < MODE_COUNT; i++) {
    int status = 0;
    pid_t pid;
    fflush(stdout);
    pid = fork();
    if (pid < 0) {
      perror("test_read_returns: fork");
      return 1;
    }
    if (pid == 0) exit(run_mode(modes[i].name));
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fprintf(stderr, "test_read_returns: mode %s failed (status %#x)\n", modes[i].name, status);
      failed++;
    }
  }
  printf("test_read_returns: %d of %d modes failed\n", failed, MODE_COUNT);
  return failed == 0 ? 0 : 1;
}
