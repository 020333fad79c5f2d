/*
 * check.h - the counting checks shared by test_edge.c and test_hostile.c (thread-safe).
 *
 * CHECK(cond, fmt, ...)           records one check, prints the message if cond is false.
 * CHECK_RC(call, want, want_errno) the call must return want; when want < 0, errno must then be
 *                                 want_errno.
 * check_summary(name)             prints "<name>: N checks, M failed" and returns the exit code.
 */
#ifndef PSISKV_TEST_CHECK_H
#define PSISKV_TEST_CHECK_H

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static pthread_mutex_t check_lock = PTHREAD_MUTEX_INITIALIZER;
static int check_count;
static int check_failures;

static void check(int ok, int line, const char *fmt, ...) {
  pthread_mutex_lock(&check_lock);
  check_count++;
  if (!ok) {
    va_list ap;
    check_failures++;
    fprintf(stderr, "FAIL line %d: ", line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
  }
  pthread_mutex_unlock(&check_lock);
}

#define CHECK(cond, ...) check((cond) != 0, __LINE__, __VA_ARGS__)

#define CHECK_RC(call, want, want_errno)                                                       \
  do {                                                                                         \
    int rc_;                                                                                   \
    int errno_;                                                                                \
    errno = 0;                                                                                 \
    rc_ = (call);                                                                              \
    errno_ = errno;                                                                            \
    if ((want) < 0) {                                                                          \
      CHECK(rc_ == (want) && errno_ == (want_errno),                                           \
            "%s returned %d errno %d (%s), expected %d errno %d (%s)", #call, rc_, errno_,      \
            strerror(errno_), (want), (want_errno), strerror(want_errno));                     \
    } else {                                                                                   \
      CHECK(rc_ == (want), "%s returned %d (errno %s), expected %d", #call, rc_,               \
            strerror(errno_), (want));                                                         \
    }                                                                                          \
  } while (0)

static int check_summary(const char *name) {
  printf("%s: %d checks, %d failed\n", name, check_count, check_failures);
  return check_failures == 0 ? 0 : 1;
}

#endif /* PSISKV_TEST_CHECK_H */
