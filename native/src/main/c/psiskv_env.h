/*
 * psiskv_env.h - the library's settings from the environment, one parser for all of them.
 *
 *   PSISKV_CONNECT_TIMEOUT_MS  budget of one connection set-up attempt (both TCP connects and the
 *                              HELLO / SESSION exchanges), at kv_connect and at each reconnection
 *                              attempt: milliseconds > 0, default 3000. Read at every attempt, so
 *                              a program may set it.
 *   PSISKV_RETRY_TIMEOUT_MS    how long a call goes on reconnecting after a failure (PROTOCOL.md
 *                              12.3): milliseconds >= 0, 0 disables reconnection, default 10000.
 *                              Read once, at the first kv_connect.
 *   PSISKV_READ_RETURNS        "zero" makes a successful kv_read return 0, as in the older lab API
 *                              (psiskv.h, "kv_read's return value"); anything else or unset, the
 *                              stored length, as specified. Read once, at the first kv_connect.
 *
 * A number is a whole decimal integer; any other value (empty, trailing garbage, below the
 * minimum) is taken as unset. A larger one than PSISKV_ENV_MS_LIMIT, out of range of long long
 * included, is taken as that limit, so that a deadline computed from it never overflows.
 *
 * Internal to libpsiskv (hidden by -fvisibility=hidden).
 */
#ifndef PSISKV_ENV_H
#define PSISKV_ENV_H

#include <stdint.h>

#define PSISKV_CONNECT_TIMEOUT_ENV "PSISKV_CONNECT_TIMEOUT_MS"
#define PSISKV_DEFAULT_CONNECT_TIMEOUT_MS 3000
#define PSISKV_RETRY_TIMEOUT_ENV "PSISKV_RETRY_TIMEOUT_MS"
#define PSISKV_DEFAULT_RETRY_TIMEOUT_MS 10000
#define PSISKV_READ_RETURNS_ENV "PSISKV_READ_RETURNS"
#define PSISKV_READ_RETURNS_ZERO "zero"
/* The most milliseconds a setting holds (about 35,000 years). */
#define PSISKV_ENV_MS_LIMIT (INT64_C(1) << 50)

/* PSISKV_CONNECT_TIMEOUT_MS, read now. */
int64_t psiskv_env_connect_timeout_ms(void);

/* PSISKV_RETRY_TIMEOUT_MS, read now (the library reads it once). */
int64_t psiskv_env_retry_timeout_ms(void);

/* Whether PSISKV_READ_RETURNS is exactly "zero", read now (the library reads it once). */
int psiskv_env_read_returns_zero(void);

#endif /* PSISKV_ENV_H */
