/*
 * backend_psiskv.c - the load generator on libpsiskv (c-headers/psiskv.h): kv_read, and kv_write
 * with kv_overwrite 1 (a set that replaces). The port is the Front Server's: kv_connect sends
 * HELLO there and connects to the Data Server it names.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "psiskv.h"

const char backend_name[] = "psiskv";
const int backend_default_port = 9999;

struct backend_conn {
  int kv;
};

struct backend_conn *backend_connect(const char *host, int port, char *err, size_t err_len) {
  int kv = kv_connect(host, port);
  if (kv < 0) {
    snprintf(err, err_len, "kv_connect: %s", strerror(errno));
    return NULL;
  }
  struct backend_conn *conn = malloc(sizeof *conn);
  if (conn == NULL) {
    kv_close(kv);
    snprintf(err, err_len, "out of memory");
    return NULL;
  }
  conn->kv = kv;
  return conn;
}

int backend_get(struct backend_conn *conn, uint32_t key, char *buf, size_t cap) {
  int n = kv_read(conn->kv, key, buf, (uint32_t)cap);
  return n >= 0 ? BACKEND_OK : n == -2 ? BACKEND_MISS : BACKEND_ERROR;
}

int backend_set(struct backend_conn *conn, uint32_t key, const char *value, size_t len) {
  return kv_write(conn->kv, key, value, (uint32_t)len, 1) == 0 ? BACKEND_OK : BACKEND_ERROR;
}

void backend_close(struct backend_conn *conn) {
  if (conn != NULL) {
    kv_close(conn->kv);
    free(conn);
  }
}
