/*
 * backend_hiredis.c - the load generator on hiredis against Redis: GET and SET, one blocking
 * redisContext per connection (hiredis sets TCP_NODELAY on it). Commands are sent with
 * redisCommandArgv and precomputed lengths, so no format string is parsed per call. Keys are the
 * key numbers in decimal (backend_key).
 */
#define _POSIX_C_SOURCE 200809L

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "backend.h"

const char backend_name[] = "redis";
const int backend_default_port = 6379;

/* Bounds the connection set-up (a Redis that does not answer is an error, not a hang). */
#define CONNECT_TIMEOUT_SECONDS 3

struct backend_conn {
  redisContext *c;
};

struct backend_conn *backend_connect(const char *host, int port, char *err, size_t err_len) {
  struct timeval timeout = {CONNECT_TIMEOUT_SECONDS, 0};
  redisContext *c = redisConnectWithTimeout(host, port, timeout);
  if (c == NULL || c->err) {
    snprintf(err, err_len, "redisConnect: %s", c != NULL ? c->errstr : "out of memory");
    redisFree(c);
    return NULL;
  }
  /* The connect timeout would otherwise stay on the socket for every call. */
  struct timeval none = {0, 0};
  redisSetTimeout(c, none);
  struct backend_conn *conn = malloc(sizeof *conn);
  if (conn == NULL) {
    redisFree(c);
    snprintf(err, err_len, "out of memory");
    return NULL;
  }
  conn->c = c;
  return conn;
}

int backend_get(struct backend_conn *conn, uint32_t key, char *buf, size_t cap) {
  redisContext *c = conn->c;
  char k[11];
  const char *argv[2] = {"GET", k};
  size_t lens[2] = {3, backend_key(key, k)};
  redisReply *reply = redisCommandArgv(c, 2, argv, lens);
  if (reply == NULL) {
    return BACKEND_ERROR;
  }
  int rc;
  if (reply->type == REDIS_REPLY_STRING) {
    memcpy(buf, reply->str, reply->len < cap ? reply->len : cap);
    rc = BACKEND_OK;
  } else {
    rc = reply->type == REDIS_REPLY_NIL ? BACKEND_MISS : BACKEND_ERROR;
  }
  freeReplyObject(reply);
  return rc;
}

int backend_set(struct backend_conn *conn, uint32_t key, const char *value, size_t len) {
  redisContext *c = conn->c;
  char k[11];
  const char *argv[3] = {"SET", k, value};
  size_t lens[3] = {3, backend_key(key, k), len};
  redisReply *reply = redisCommandArgv(c, 3, argv, lens);
  if (reply == NULL) {
    return BACKEND_ERROR;
  }
  int rc = reply->type == REDIS_REPLY_STATUS ? BACKEND_OK : BACKEND_ERROR;
  freeReplyObject(reply);
  return rc;
}

void backend_close(struct backend_conn *conn) {
  if (conn != NULL) {
    redisFree(conn->c);
    free(conn);
  }
}
