/*
 * backend_memcached.c - the load generator on libmemcached against memcached: memcached_get and
 * memcached_set, the text protocol (MEMCACHED_BEHAVIOR_BINARY_PROTOCOL 0) over TCP, one
 * memcached_st per connection, so one per worker thread. TCP_NODELAY is on, as hiredis and
 * libpsiskv have it. Keys are the key numbers in decimal (backend_key).
 */
#define _POSIX_C_SOURCE 200809L

#include <libmemcached/memcached.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"

const char backend_name[] = "memcached";
const int backend_default_port = 11211;

/* libmemcached's own defaults give up on a reply after 1 s and then mark the server dead for 2 s;
 * a loaded 2-core machine can exceed that, and a benchmark wants the slow answer, not an error. */
#define CONNECT_TIMEOUT_MILLIS 3000
#define POLL_TIMEOUT_MILLIS 30000

struct backend_conn {
  memcached_st *m;
};

struct backend_conn *backend_connect(const char *host, int port, char *err, size_t err_len) {
  memcached_st *m = memcached_create(NULL);
  if (m == NULL) {
    snprintf(err, err_len, "memcached_create: out of memory");
    return NULL;
  }
  memcached_behavior_set(m, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 0);
  memcached_behavior_set(m, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
  memcached_behavior_set(m, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, CONNECT_TIMEOUT_MILLIS);
  memcached_behavior_set(m, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, POLL_TIMEOUT_MILLIS);
  memcached_behavior_set(m, MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, 0);
  memcached_return_t rc = memcached_server_add(m, host, (in_port_t)port);
  /* libmemcached connects lazily: ask for the version so that an unreachable server is seen now. */
  if (rc == MEMCACHED_SUCCESS) {
    rc = memcached_version(m);
  }
  if (rc != MEMCACHED_SUCCESS) {
    const char *why = memcached_last_error_message(m);
    snprintf(err, err_len, "memcached: %s", why != NULL ? why : memcached_strerror(m, rc));
    memcached_free(m);
    return NULL;
  }
  struct backend_conn *conn = malloc(sizeof *conn);
  if (conn == NULL) {
    memcached_free(m);
    snprintf(err, err_len, "out of memory");
    return NULL;
  }
  conn->m = m;
  return conn;
}

int backend_get(struct backend_conn *conn, uint32_t key, char *buf, size_t cap) {
  char k[11];
  size_t klen = backend_key(key, k);
  size_t len = 0;
  uint32_t flags = 0;
  memcached_return_t rc;
  char *value = memcached_get(conn->m, k, klen, &len, &flags, &rc);
  if (value != NULL) {
    memcpy(buf, value, len < cap ? len : cap);
    free(value);
    return BACKEND_OK;
  }
  return rc == MEMCACHED_NOTFOUND ? BACKEND_MISS
         : rc == MEMCACHED_SUCCESS ? BACKEND_OK /* an empty value */
                                   : BACKEND_ERROR;
}

int backend_set(struct backend_conn *conn, uint32_t key, const char *value, size_t len) {
  char k[11];
  size_t klen = backend_key(key, k);
  memcached_return_t rc = memcached_set(conn->m, k, klen, value, len, 0, 0);
  return rc == MEMCACHED_SUCCESS ? BACKEND_OK : BACKEND_ERROR;
}

void backend_close(struct backend_conn *conn) {
  if (conn != NULL) {
    memcached_free(conn->m);
    free(conn);
  }
}
