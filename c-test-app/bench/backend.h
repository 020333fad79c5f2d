/*
 * backend.h - what the load generator (loadgen.c) needs from a key-value client library.
 *
 * One small file per library implements it: backend_psiskv.c (libpsiskv: kv_read, kv_write with
 * overwrite 1), backend_hiredis.c (Redis GET/SET), backend_memcached.c (libmemcached get/set,
 * text protocol over TCP). Each build of the load generator links the driver with exactly one.
 *
 * A connection is one blocking connection to the server, used by one thread at a time (the
 * driver gives each worker its own). Keys are the driver's u32 key numbers; a backend that needs
 * string keys formats them itself (backend_key below: decimal, as "123").
 */
#ifndef PSISKV_BENCH_BACKEND_H
#define PSISKV_BENCH_BACKEND_H

#include <stddef.h>
#include <stdint.h>

/* The results of backend_get; backend_set returns BACKEND_OK or BACKEND_ERROR. */
enum {
  BACKEND_OK = 0,     /* stored (set) or found (get) */
  BACKEND_MISS = 1,   /* get: no such key */
  BACKEND_ERROR = -1  /* anything else; the driver closes the connection and connects again */
};

struct backend_conn;

/* The library's name as the result line reports it ("psiskv", "redis", "memcached"). */
extern const char backend_name[];
/* The port used when --port is not given. */
extern const int backend_default_port;

/* Opens one connection. On failure returns NULL and writes the reason into err. */
struct backend_conn *backend_connect(const char *host, int port, char *err, size_t err_len);

/* Reads key into buf (at most cap bytes). */
int backend_get(struct backend_conn *conn, uint32_t key, char *buf, size_t cap);

/* Stores value under key, replacing any earlier value. */
int backend_set(struct backend_conn *conn, uint32_t key, const char *value, size_t len);

/* Closes the connection (NULL is allowed). */
void backend_close(struct backend_conn *conn);

/* Formats key in decimal into out (at least 11 bytes), NUL-terminated; returns the length. For the
 * string-keyed stores: every client sees the same key space, "0" .. "<keys - 1>". */
static inline size_t backend_key(uint32_t key, char out[11]) {
  char tmp[10];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + key % 10);
    key /= 10;
  } while (key != 0);
  for (size_t i = 0; i < n; i++) {
    out[i] = tmp[n - 1 - i];
  }
  out[n] = '\0';
  return n;
}

#endif
