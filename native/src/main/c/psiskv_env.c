/*
 * psiskv_env.c - the library's settings from the environment (see psiskv_env.h for the rules).
 */
#define _POSIX_C_SOURCE 200809L

#include "psiskv_env.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/*
 * The variable name as milliseconds: its value if that is a whole decimal integer >= min (at most
 * PSISKV_ENV_MS_LIMIT: larger ones are the limit), else fallback. Keeps errno.
 */
static int64_t env_ms(const char *name, int64_t min, int64_t fallback) {
  const char *s = getenv(name);
  int64_t result = fallback;
  if (s != NULL && *s != '\0') {
    int saved = errno;
    char *end;
    long long v;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (*end == '\0' && v >= min) {
      result = errno == ERANGE || v > PSISKV_ENV_MS_LIMIT ? PSISKV_ENV_MS_LIMIT : (int64_t)v;
    }
    errno = saved;
  }
  return result;
}

int64_t psiskv_env_connect_timeout_ms(void) {
  return env_ms(PSISKV_CONNECT_TIMEOUT_ENV, 1, PSISKV_DEFAULT_CONNECT_TIMEOUT_MS);
}

int64_t psiskv_env_retry_timeout_ms(void) {
  return env_ms(PSISKV_RETRY_TIMEOUT_ENV, 0, PSISKV_DEFAULT_RETRY_TIMEOUT_MS);
}

int psiskv_env_read_returns_zero(void) {
  const char *s = getenv(PSISKV_READ_RETURNS_ENV);
  return s != NULL && strcmp(s, PSISKV_READ_RETURNS_ZERO) == 0;
}
