/*
 * fake_server.h - an in-process psiskv server for the C tests that need no real one
 * (test_hostile.c, test_retry.c). Header-only like check.h: include it once per program, and
 * compile ../native/src/main/c/psiskv_proto.c into the program (the library's own copy of the
 * codec is hidden, so the two do not clash).
 *
 * One thread (fake_main) serves a Front listener and a Data listener on ephemeral loopback
 * ports, one connection at a time, in the order they come: libpsiskv uses one connection of a
 * descriptor at a time, and most tests use one descriptor at a time. Started with
 * fake_start_concurrent instead, the fake serves each connection on a thread of its own,
 * for tests with several descriptors at once; requests are still handled one at a time (the
 * serve mutex), so the store needs no other lock. HELLO names the Data listener as "the host you
 * reached me at" (0.0.0.0). SESSION (PROTOCOL.md 6.2, version 2) opens a session (id 0 and a zero
 * secret: a new id and a secret made from it, fake_secret) or resumes one: a session it knows
 * with the same secret, or one it does not know (kept with the id and secret presented, 12.6);
 * a known session with another secret is FORBIDDEN, and the connection closed. PUT, GET and
 * DELETE work on a small store with the exactly-once table of PROTOCOL.md 12.5: per session the
 * request id, the request (opcode, flags, key, value length and digest) and the result of the
 * last applied PUT/DELETE; a PUT or DELETE that repeats that id and request is answered the
 * stored result and not applied again; a lower id, or that id with another request, gets
 * BAD_REQUEST and the connection is closed.
 *
 * Scripting (every field below "script" is guarded by mu; fake_set* and fake_push take it):
 *   - a queue of actions, one per coming data request (PUT/GET/DELETE) in arrival order, then
 *     FAKE_HONEST;
 *   - counters for the next HELLOs, SESSIONs and front connections: N > 0 the next N, -1 every
 *     one, 0 none;
 *   - FAKE_CRASH takes the Data Server down: its listener closes, and the next down_hellos HELLOs
 *     (-1: until the test sets down_hellos) answer UNAVAILABLE, or name the dead port when
 *     down_refuses (connections refused); the HELLO after those relaunches it on a new port.
 * Everything received is recorded in events[] (connection, opcode, request id, session and the
 * secret presented, key) and
 * counted; fake_wait_for waits for a counter with a deadline (no sleeps). The functions a test
 * calls are static inline, so that a program need not use every one of them (no warning).
 */
#ifndef PSISKV_TEST_FAKE_SERVER_H
#define PSISKV_TEST_FAKE_SERVER_H

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "psiskv_proto.h"

#define FAKE_POLL_MS 20
#define FAKE_EVENTS_MAX 512
#define FAKE_QUEUE_MAX 16
#define FAKE_STORE_MAX 4096
#define FAKE_SESSIONS_MAX 256
/* Connections served at once in concurrent mode (their threads are joined by fake_stop). */
#define FAKE_CONNS_MAX 1024
#define FAKE_FIRST_SESSION_ID 0x5e55105ULL
#define FAKE_DEFAULT_MAX_VALUE_BYTES (4u * 1024u * 1024u)
#define FAKE_SCRATCH_BYTES (1024u * 1024u)

/* What the fake does with one data request. */
enum fake_action {
  FAKE_HONEST,              /* apply and answer */
  /* connection failures (PROTOCOL.md 12.1: the client reconnects and resends) */
  FAKE_DROP_BEFORE_ANSWER,  /* close without applying or answering */
  FAKE_APPLY_THEN_DROP,     /* apply, then close without answering */
  FAKE_DROP_MID_ANSWER,     /* apply, send the first half of the honest answer, close */
  FAKE_CRASH,               /* apply, close, and take the Data Server down (see above) */
  FAKE_UNAVAILABLE,         /* answer UNAVAILABLE, apply nothing, keep the connection */
  FAKE_HANG,                /* never answer; close when the client does */
  /* protocol violations and error statuses (PROTOCOL.md 8 and 5) */
  FAKE_GET_BODY_LONGER_THAN_CAPACITY, /* body 4 + capacity + 100, and that many bytes */
  FAKE_GET_BODY_DISAGREES_WITH_STORED, /* body 4 + capacity but stored < capacity */
  FAKE_GET_STORED_ABOVE_INT_MAX,       /* capacity 0, stored 0x90000000 */
  FAKE_BAD_MAGIC,
  FAKE_BAD_VERSION,
  FAKE_BAD_REQUEST_ID,
  FAKE_BAD_OPCODE,
  FAKE_BAD_KEY,
  FAKE_UNKNOWN_STATUS,
  FAKE_ERROR_WITH_BODY,     /* SERVER_ERROR that carries a body */
  FAKE_CLOSE_MID_VALUE,     /* GET OK claiming capacity bytes, half of them, close */
  FAKE_KEY_EXISTS_TO_OVERWRITE,
  FAKE_SERVER_ERROR,        /* a well-formed error: the connection stays in step */
  FAKE_TOO_LARGE,           /* a MUST-rule error: answered, then the server closes */
  FAKE_EXTRA_AFTER_ANSWER   /* apply and answer, with FAKE_EXTRA_BYTES more in the same send */
};

/* Bytes a FAKE_EXTRA_AFTER_ANSWER (and hello_extra, session_extra) sends after an answer. */
#define FAKE_EXTRA_BYTES 4

struct fake_event {
  int conn;            /* connection number, 1, 2, ... (front and data counted together) */
  uint8_t opcode;
  uint64_t request_id;
  uint64_t session;    /* SESSION: the id asked for (0 new); data requests: the connection's */
  uint8_t secret[PSISKV_SESSION_SECRET_BYTES]; /* SESSION: the secret presented */
  uint32_t key;
};

struct fake_value {
  int used;
  uint32_t key;
  uint32_t length;
  uint8_t *bytes;
};

struct fake_session {
  uint64_t id;
  uint8_t secret[PSISKV_SESSION_SECRET_BYTES];
  /* PROTOCOL.md 12.5: the last applied PUT/DELETE of the session, its request and its result */
  uint64_t last_request_id;
  uint8_t last_opcode;
  uint8_t last_flags;
  uint32_t last_key;
  uint32_t last_value_length;
  uint64_t last_digest;
  uint8_t last_status;
};

/* A connection served by a thread of its own (concurrent mode). */
struct fake_conn {
  int used;
  pthread_t thread;
  int fd;              /* -1 once its thread has closed it (under mu) */
  int conn;
  int front;
  struct fake *f;
};

struct fake {
  pthread_mutex_t mu;
  pthread_cond_t changed; /* broadcast on every recorded event */
  pthread_mutex_t serve;  /* held while one request is handled: store, sessions, scratch */
  pthread_t thread;
  int concurrent;         /* set before fake_start: a thread per connection */
  int stop;               /* set with __atomic builtins */
  int front_fd;           /* listeners; data_fd is -1 while the Data Server is down */
  int data_fd;
  int front_port;
  int data_port;
  int dead_port;          /* the port of the Data Server that crashed */
  /* script */
  enum fake_action queue[FAKE_QUEUE_MAX];
  int queue_len;
  int hello_unavailable;   /* next HELLOs answered UNAVAILABLE */
  int hello_hang;          /* next HELLOs never answered (until the client closes) */
  int front_reset;         /* next front connections reset (RST) without reading */
  int session_unavailable; /* next SESSIONs answered UNAVAILABLE */
  int session_close;       /* next SESSIONs answered OK, then the connection closes */
  int session_id_zero;     /* next SESSIONs answered with session id 0 */
  int session_secret_zero; /* next SESSIONs answered with an all-zero secret */
  int session_other_id;    /* next SESSIONs answered with another session id than asked */
  int session_other_secret; /* next SESSIONs answered with another secret than asked */
  int session_forbidden;   /* next SESSIONs answered FORBIDDEN (then the connection closes) */
  int hello_extra;         /* next HELLOs answered OK with FAKE_EXTRA_BYTES more */
  int session_extra;       /* next SESSIONs answered OK with FAKE_EXTRA_BYTES more */
  int down_hellos;         /* see FAKE_CRASH */
  int down_refuses;
  uint32_t max_value_bytes; /* announced in SESSION answers */
  /* record */
  struct fake_event events[FAKE_EVENTS_MAX];
  int event_count;
  int conns;
  int hellos;
  int sessions;
  int forbidden;           /* SESSIONs answered FORBIDDEN (scripted or a wrong secret) */
  int data_requests;
  int crashes;
  int hanging;             /* a HELLO or data request is being held unanswered now */
  int hangs_ended;         /* holds that ended (the client closed) */
  /* state */
  int down;
  uint64_t next_session_id;
  struct fake_session session_table[FAKE_SESSIONS_MAX];
  struct fake_value store[FAKE_STORE_MAX];
  struct fake_conn conn_slots[FAKE_CONNS_MAX]; /* concurrent mode; guarded by mu */
  uint8_t scratch[FAKE_SCRATCH_BYTES]; /* under serve */
};

static int fake_read_exact(int fd, void *buf, size_t n) {
  char *p = (char *)buf;
  while (n > 0) {
    ssize_t r = recv(fd, p, n, 0);
    if (r <= 0) {
      if (r < 0 && errno == EINTR) continue;
      return -1;
    }
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

static void fake_send_all(int fd, const void *buf, size_t n) {
  const char *p = (const char *)buf;
  while (n > 0) {
    ssize_t r = send(fd, p, n, MSG_NOSIGNAL);
    if (r <= 0) {
      if (r < 0 && errno == EINTR) continue;
      return;
    }
    p += r;
    n -= (size_t)r;
  }
}

static int fake_listen(int *port_out) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 16) < 0 ||
      getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
    perror("fake server: listen");
    exit(1);
  }
  *port_out = ntohs(a.sin_port);
  return fd;
}

/* Takes one from a "next N" counter (N > 0: the next N, -1: every one). Caller holds mu. */
static int fake_take(int *counter) {
  if (*counter < 0) return 1;
  if (*counter > 0) {
    (*counter)--;
    return 1;
  }
  return 0;
}

static void fake_record(struct fake *f, int conn, const psiskv_header *h, uint64_t session,
                        const uint8_t *secret) {
  pthread_mutex_lock(&f->mu);
  if (f->event_count < FAKE_EVENTS_MAX) {
    struct fake_event *ev = &f->events[f->event_count++];
    ev->conn = conn;
    ev->opcode = h->opcode;
    ev->request_id = h->request_id;
    ev->session = session;
    if (secret != NULL) {
      memcpy(ev->secret, secret, PSISKV_SESSION_SECRET_BYTES);
    } else {
      memset(ev->secret, 0, PSISKV_SESSION_SECRET_BYTES);
    }
    ev->key = h->key;
  }
  if (h->opcode == PSISKV_OP_HELLO) f->hellos++;
  if (h->opcode == PSISKV_OP_SESSION) f->sessions++;
  if (h->opcode == PSISKV_OP_PUT || h->opcode == PSISKV_OP_GET || h->opcode == PSISKV_OP_DELETE) {
    f->data_requests++;
  }
  pthread_cond_broadcast(&f->changed);
  pthread_mutex_unlock(&f->mu);
}

static void fake_set_hanging(struct fake *f, int hanging) {
  pthread_mutex_lock(&f->mu);
  f->hanging = hanging;
  if (!hanging) f->hangs_ended++;
  pthread_cond_broadcast(&f->changed);
  pthread_mutex_unlock(&f->mu);
}

/* Holds a connection without answering until the client closes it or the fake stops. */
static void fake_hang(struct fake *f, int fd) {
  fake_set_hanging(f, 1);
  while (!__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE)) {
    struct pollfd p;
    char c;
    p.fd = fd;
    p.events = POLLIN;
    p.revents = 0;
    if (poll(&p, 1, FAKE_POLL_MS) > 0 && recv(fd, &c, 1, 0) <= 0) break;
  }
  fake_set_hanging(f, 0);
}

/* ---- the store and the exactly-once table (fake thread only) ---- */

static struct fake_value *fake_find(struct fake *f, uint32_t key) {
  int i;
  for (i = 0; i < FAKE_STORE_MAX; i++) {
    if (f->store[i].used && f->store[i].key == key) return &f->store[i];
  }
  return NULL;
}

/* The secret the fake issues with session id: 16 bytes made from the id, never all zero. */
static inline void fake_secret(uint64_t id, uint8_t *secret) {
  int i;
  for (i = 0; i < PSISKV_SESSION_SECRET_BYTES; i++) {
    secret[i] = (uint8_t)((id >> (8 * (i % 8))) ^ (0xA5u + 0x3Bu * (unsigned)i));
  }
}

static struct fake_session *fake_session_find(struct fake *f, uint64_t id) {
  int i;
  for (i = 0; i < FAKE_SESSIONS_MAX; i++) {
    if (f->session_table[i].id == id) return &f->session_table[i];
  }
  return NULL;
}

static struct fake_session *fake_session_add(struct fake *f, uint64_t id, const uint8_t *secret) {
  struct fake_session *s = fake_session_find(f, 0);
  if (s == NULL) {
    fprintf(stderr, "fake server: too many sessions\n");
    exit(1);
  }
  memset(s, 0, sizeof *s);
  s->id = id;
  memcpy(s->secret, secret, PSISKV_SESSION_SECRET_BYTES);
  return s;
}

/* FNV-1a, 64 bits: the digest of a value that the exactly-once table keeps (12.5). */
static uint64_t fake_digest(const uint8_t *p, uint32_t n) {
  uint64_t h = 14695981039346656037ULL;
  uint32_t i;
  for (i = 0; i < n; i++) {
    h ^= p[i];
    h *= 1099511628211ULL;
  }
  return h;
}

/* Applies a PUT or DELETE exactly once per (session, request id) and returns its status. */
static uint8_t fake_apply(struct fake *f, uint64_t session, const psiskv_header *h,
                          const uint8_t *body) {
  struct fake_session *s = fake_session_find(f, session);
  struct fake_value *v = fake_find(f, h->key);
  uint32_t value_length = h->opcode == PSISKV_OP_PUT ? h->body_length : 0;
  uint64_t digest = fake_digest(body, value_length);
  uint8_t status;
  int i;
  if (s == NULL) {
    fprintf(stderr, "fake server: a data request without a session in the table\n");
    exit(1);
  }
  if (s->last_request_id != 0 && h->request_id == s->last_request_id) {
    /* 12.5: the same request again is answered its result; another one with its id is not. */
    return s->last_opcode == h->opcode && s->last_flags == h->flags_or_status &&
                   s->last_key == h->key && s->last_value_length == value_length &&
                   s->last_digest == digest
               ? s->last_status
               : PSISKV_ST_BAD_REQUEST;
  }
  if (h->request_id < s->last_request_id) return PSISKV_ST_BAD_REQUEST; /* u64: unsigned */
  if (h->opcode == PSISKV_OP_DELETE) {
    status = v == NULL ? PSISKV_ST_NOT_FOUND : PSISKV_ST_OK;
    if (v != NULL) {
      free(v->bytes);
      memset(v, 0, sizeof *v);
    }
  } else if (v != NULL && (h->flags_or_status & PSISKV_FLAG_OVERWRITE) == 0) {
    status = PSISKV_ST_KEY_EXISTS;
  } else {
    if (v == NULL) {
      for (i = 0; i < FAKE_STORE_MAX && v == NULL; i++) {
        if (!f->store[i].used) v = &f->store[i];
      }
      if (v == NULL) {
        fprintf(stderr, "fake server: store full\n");
        exit(1);
      }
    }
    free(v->bytes);
    v->bytes = (uint8_t *)malloc(h->body_length > 0 ? h->body_length : 1);
    if (v->bytes == NULL) exit(1);
    if (h->body_length > 0) memcpy(v->bytes, body, h->body_length);
    v->used = 1;
    v->key = h->key;
    v->length = h->body_length;
    status = PSISKV_ST_OK;
  }
  s->last_request_id = h->request_id;
  s->last_opcode = h->opcode;
  s->last_flags = h->flags_or_status;
  s->last_key = h->key;
  s->last_value_length = value_length;
  s->last_digest = digest;
  s->last_status = status;
  return status;
}

/* The honest answer to a data request, applying it; stored in f->scratch, returns its length. */
static size_t fake_honest(struct fake *f, uint64_t session, const psiskv_header *h,
                          const uint8_t *body) {
  if (h->opcode == PSISKV_OP_GET) {
    uint32_t capacity = psiskv_decode_get_capacity(body);
    struct fake_value *v = fake_find(f, h->key);
    uint32_t sent;
    size_t n;
    if (v == NULL) {
      return psiskv_encode_status(f->scratch, h->opcode, PSISKV_ST_NOT_FOUND, h->key,
                                  h->request_id);
    }
    sent = capacity < v->length ? capacity : v->length;
    if (sent > FAKE_SCRATCH_BYTES - PSISKV_MAX_FIXED_BYTES) {
      fprintf(stderr, "fake server: value too long to answer\n");
      exit(1);
    }
    n = psiskv_encode_get_ok_prefix(f->scratch, h->key, h->request_id, v->length, sent);
    memcpy(f->scratch + n, v->bytes, sent);
    return n + sent;
  }
  return psiskv_encode_status(f->scratch, h->opcode, fake_apply(f, session, h, body), h->key,
                              h->request_id);
}

static void fake_crash(struct fake *f) {
  pthread_mutex_lock(&f->mu);
  close(f->data_fd);
  f->data_fd = -1;
  f->dead_port = f->data_port;
  f->down = 1;
  f->crashes++;
  pthread_cond_broadcast(&f->changed);
  pthread_mutex_unlock(&f->mu);
}

/* Answers one data request as the action says; returns 0 to go on, -1 to close. */
static int fake_answer(struct fake *f, int fd, uint64_t session, const psiskv_header *h,
                       const uint8_t *body, enum fake_action action) {
  uint8_t out[PSISKV_MAX_FIXED_BYTES + 8];
  uint32_t capacity = h->opcode == PSISKV_OP_GET ? psiskv_decode_get_capacity(body) : 0;
  size_t n;
  switch (action) {
    case FAKE_DROP_BEFORE_ANSWER:
      return -1;
    case FAKE_APPLY_THEN_DROP:
      fake_honest(f, session, h, body);
      return -1;
    case FAKE_DROP_MID_ANSWER:
      n = fake_honest(f, session, h, body);
      fake_send_all(fd, f->scratch, n / 2);
      return -1;
    case FAKE_CRASH:
      fake_honest(f, session, h, body);
      fake_crash(f);
      return -1;
    case FAKE_UNAVAILABLE:
    case FAKE_SERVER_ERROR:
    case FAKE_TOO_LARGE:
      n = psiskv_encode_status(out, h->opcode,
                               action == FAKE_UNAVAILABLE    ? PSISKV_ST_UNAVAILABLE
                               : action == FAKE_SERVER_ERROR ? PSISKV_ST_SERVER_ERROR
                                                             : PSISKV_ST_TOO_LARGE,
                               h->key, h->request_id);
      fake_send_all(fd, out, n);
      return action == FAKE_TOO_LARGE ? -1 : 0;
    case FAKE_HANG:
      fake_hang(f, fd);
      return -1;
    case FAKE_GET_BODY_LONGER_THAN_CAPACITY:
      n = psiskv_encode_get_ok_prefix(out, h->key, h->request_id, capacity + 100, capacity + 100);
      fake_send_all(fd, out, n);
      memset(f->scratch, 'x', capacity + 100);
      fake_send_all(fd, f->scratch, capacity + 100);
      return 0;
    case FAKE_GET_BODY_DISAGREES_WITH_STORED:
      n = psiskv_encode_get_ok_prefix(out, h->key, h->request_id, capacity / 2, capacity);
      fake_send_all(fd, out, n);
      memset(f->scratch, 'x', capacity);
      fake_send_all(fd, f->scratch, capacity);
      return 0;
    case FAKE_GET_STORED_ABOVE_INT_MAX:
      n = psiskv_encode_get_ok_prefix(out, h->key, h->request_id, 0x90000000u, 0);
      fake_send_all(fd, out, n);
      return 0;
    case FAKE_BAD_MAGIC:
    case FAKE_BAD_VERSION:
    case FAKE_BAD_REQUEST_ID:
    case FAKE_BAD_OPCODE:
    case FAKE_BAD_KEY:
    case FAKE_UNKNOWN_STATUS:
      n = psiskv_encode_status(out, h->opcode, PSISKV_ST_OK, h->key, h->request_id);
      if (h->opcode == PSISKV_OP_GET) { /* a GET OK needs its stored length */
        n = psiskv_encode_get_ok_prefix(out, h->key, h->request_id, 0, 0);
      }
      if (action == FAKE_BAD_MAGIC) out[PSISKV_OFF_MAGIC] = PSISKV_REQUEST_MAGIC;
      if (action == FAKE_BAD_VERSION) out[PSISKV_OFF_VERSION] = PSISKV_PROTOCOL_VERSION + 1;
      if (action == FAKE_BAD_REQUEST_ID) out[PSISKV_OFF_REQUEST_ID + 7] ^= 1;
      if (action == FAKE_BAD_OPCODE) out[PSISKV_OFF_OPCODE] = PSISKV_OP_PING;
      if (action == FAKE_BAD_KEY) out[PSISKV_OFF_KEY + 3] ^= 1;
      if (action == FAKE_UNKNOWN_STATUS) out[PSISKV_OFF_FLAGS_OR_STATUS] = 0x7e;
      fake_send_all(fd, out, n);
      return 0;
    case FAKE_ERROR_WITH_BODY:
      n = psiskv_encode_status(out, h->opcode, PSISKV_ST_SERVER_ERROR, h->key, h->request_id);
      psiskv_put_u32(out + PSISKV_OFF_BODY_LENGTH, 4);
      memset(out + n, 0, 4);
      fake_send_all(fd, out, n + 4);
      return 0;
    case FAKE_CLOSE_MID_VALUE:
      n = psiskv_encode_get_ok_prefix(out, h->key, h->request_id, capacity, capacity);
      fake_send_all(fd, out, n);
      memset(f->scratch, 'x', capacity / 2);
      fake_send_all(fd, f->scratch, capacity / 2);
      return -1;
    case FAKE_KEY_EXISTS_TO_OVERWRITE:
      n = psiskv_encode_status(out, h->opcode, PSISKV_ST_KEY_EXISTS, h->key, h->request_id);
      fake_send_all(fd, out, n);
      return 0;
    case FAKE_EXTRA_AFTER_ANSWER:
      n = fake_honest(f, session, h, body);
      memset(f->scratch + n, 'x', FAKE_EXTRA_BYTES);
      fake_send_all(fd, f->scratch, n + FAKE_EXTRA_BYTES); /* one send: they arrive together */
      return 0;
    case FAKE_HONEST:
      break;
  }
  n = fake_honest(f, session, h, body);
  fake_send_all(fd, f->scratch, n);
  /* 3.2, 12.5: a write that breaks the id rules is answered BAD_REQUEST, then closed. */
  return f->scratch[PSISKV_OFF_FLAGS_OR_STATUS] == PSISKV_ST_BAD_REQUEST ? -1 : 0;
}

/* Reads one request (header and body, body malloc'd into *body); -1 when the peer is gone. */
static int fake_read_request(int fd, psiskv_header *h, uint8_t **body) {
  uint8_t raw[PSISKV_HEADER_BYTES];
  *body = NULL;
  if (fake_read_exact(fd, raw, sizeof raw) < 0) return -1;
  psiskv_header_decode(raw, h);
  if (h->body_length > 0) {
    *body = (uint8_t *)malloc(h->body_length);
    if (*body == NULL || fake_read_exact(fd, *body, h->body_length) < 0) {
      free(*body);
      *body = NULL;
      return -1;
    }
  }
  return 0;
}

/* A front connection: HELLOs until the client closes. */
static void fake_serve_front(struct fake *f, int fd, int conn) {
  for (;;) {
    uint8_t out[PSISKV_MAX_FIXED_BYTES + FAKE_EXTRA_BYTES];
    uint8_t *body;
    psiskv_header h;
    size_t n;
    int hang = 0;
    if (fake_read_request(fd, &h, &body) < 0) return;
    free(body);
    fake_record(f, conn, &h, 0, NULL);
    pthread_mutex_lock(&f->serve);
    pthread_mutex_lock(&f->mu);
    if (fake_take(&f->hello_hang)) {
      hang = 1;
      n = 0;
    } else if (f->down && f->down_hellos != 0) {
      fake_take(&f->down_hellos);
      n = f->down_refuses ? psiskv_encode_hello_ok(out, h.request_id, PSISKV_HELLO_SAME_HOST,
                                                   (uint16_t)f->dead_port)
                          : psiskv_encode_status(out, h.opcode, PSISKV_ST_UNAVAILABLE, 0,
                                                 h.request_id);
    } else {
      if (f->down) { /* relaunch */
        f->data_fd = fake_listen(&f->data_port);
        f->down = 0;
      }
      n = fake_take(&f->hello_unavailable)
              ? psiskv_encode_status(out, h.opcode, PSISKV_ST_UNAVAILABLE, 0, h.request_id)
              : psiskv_encode_hello_ok(out, h.request_id, PSISKV_HELLO_SAME_HOST,
                                       (uint16_t)f->data_port);
      if (fake_take(&f->hello_extra)) {
        memset(out + n, 'x', FAKE_EXTRA_BYTES);
        n += FAKE_EXTRA_BYTES;
      }
    }
    pthread_mutex_unlock(&f->mu);
    if (hang) {
      pthread_mutex_unlock(&f->serve);
      fake_hang(f, fd);
      return;
    }
    fake_send_all(fd, out, n);
    pthread_mutex_unlock(&f->serve);
  }
}

/*
 * Answers a SESSION request (PROTOCOL.md 6.2) into out, as honestly as the script allows, and
 * sets *session to the connection's session (0: none). Returns the answer's length; *go_on says
 * whether the connection stays open. Caller holds serve.
 */
static size_t fake_session(struct fake *f, const psiskv_header *h, const uint8_t *body,
                           uint64_t *session, int *go_on, uint8_t *out) {
  static const uint8_t zero[PSISKV_SESSION_SECRET_BYTES] = {0};
  uint8_t asked_secret[PSISKV_SESSION_SECRET_BYTES];
  uint8_t secret[PSISKV_SESSION_SECRET_BYTES];
  uint64_t asked = 0;
  uint64_t id;
  struct fake_session *s;
  size_t n;
  *go_on = 1;
  if (h->body_length != PSISKV_SESSION_REQUEST_BODY_BYTES) {
    *go_on = 0;
    return psiskv_encode_status(out, h->opcode, PSISKV_ST_BAD_REQUEST, 0, h->request_id);
  }
  psiskv_decode_session(body, &asked, asked_secret);
  if ((asked == PSISKV_SESSION_NEW) != (psiskv_session_secret_is_zero(asked_secret) != 0)) {
    *go_on = 0; /* 6.2: an id without a secret, or a secret without an id */
    return psiskv_encode_status(out, h->opcode, PSISKV_ST_BAD_REQUEST, 0, h->request_id);
  }
  pthread_mutex_lock(&f->mu);
  if (fake_take(&f->session_unavailable)) {
    pthread_mutex_unlock(&f->mu);
    return psiskv_encode_status(out, h->opcode, PSISKV_ST_UNAVAILABLE, 0, h->request_id);
  }
  s = asked == PSISKV_SESSION_NEW ? NULL : fake_session_find(f, asked);
  if (fake_take(&f->session_forbidden) ||
      (s != NULL && memcmp(s->secret, asked_secret, sizeof asked_secret) != 0)) {
    f->forbidden++;
    pthread_cond_broadcast(&f->changed);
    pthread_mutex_unlock(&f->mu);
    *go_on = 0;
    return psiskv_encode_status(out, h->opcode, PSISKV_ST_FORBIDDEN, 0, h->request_id);
  }
  if (asked == PSISKV_SESSION_NEW) {
    id = f->next_session_id++;
    fake_secret(id, secret);
    fake_session_add(f, id, secret);
  } else {
    id = asked; /* 12.6: a resumed id and secret are kept, also for a session forgotten */
    memcpy(secret, asked_secret, sizeof secret);
    if (s == NULL) fake_session_add(f, id, secret);
  }
  *session = id;
  if (fake_take(&f->session_id_zero)) id = 0;
  if (fake_take(&f->session_other_id)) id ^= 0x100;
  if (fake_take(&f->session_secret_zero)) memcpy(secret, zero, sizeof secret);
  if (fake_take(&f->session_other_secret)) secret[PSISKV_SESSION_SECRET_BYTES - 1] ^= 1;
  n = psiskv_encode_session_ok(out, h->request_id, id, secret, f->max_value_bytes);
  *go_on = !fake_take(&f->session_close);
  if (fake_take(&f->session_extra)) {
    memset(out + n, 'x', FAKE_EXTRA_BYTES);
    n += FAKE_EXTRA_BYTES;
  }
  pthread_mutex_unlock(&f->mu);
  return n;
}

/* A data connection: SESSION, then data requests until a scripted close or the client's. */
static void fake_serve_data(struct fake *f, int fd, int conn) {
  uint64_t session = 0;
  for (;;) {
    uint8_t out[PSISKV_MAX_FIXED_BYTES + FAKE_EXTRA_BYTES];
    uint8_t *body;
    psiskv_header h;
    size_t n;
    int go_on = 1;
    if (fake_read_request(fd, &h, &body) < 0) return;
    if (h.opcode == PSISKV_OP_SESSION) {
      uint64_t asked = 0;
      uint8_t asked_secret[PSISKV_SESSION_SECRET_BYTES] = {0};
      if (h.body_length == PSISKV_SESSION_REQUEST_BODY_BYTES) {
        psiskv_decode_session(body, &asked, asked_secret);
      }
      fake_record(f, conn, &h, asked, asked_secret);
      pthread_mutex_lock(&f->serve);
      n = fake_session(f, &h, body, &session, &go_on, out);
      fake_send_all(fd, out, n);
      pthread_mutex_unlock(&f->serve);
    } else {
      enum fake_action action = FAKE_HONEST;
      fake_record(f, conn, &h, session, NULL);
      pthread_mutex_lock(&f->serve);
      pthread_mutex_lock(&f->mu);
      if (f->queue_len > 0) {
        action = f->queue[0];
        memmove(f->queue, f->queue + 1, (size_t)(f->queue_len - 1) * sizeof f->queue[0]);
        f->queue_len--;
      }
      pthread_mutex_unlock(&f->mu);
      if (session == 0) {
        n = psiskv_encode_status(out, h.opcode, PSISKV_ST_NO_SESSION, h.key, h.request_id);
        fake_send_all(fd, out, n);
        go_on = 0;
      } else {
        go_on = fake_answer(f, fd, session, &h, body, action) == 0;
      }
      pthread_mutex_unlock(&f->serve);
    }
    free(body);
    if (!go_on) return;
  }
}

/* Serves one accepted connection to its end (front: HELLOs; data: SESSION and requests). */
static void fake_serve(struct fake *f, int fd, int conn, int front) {
  int reset;
  pthread_mutex_lock(&f->mu);
  reset = front && fake_take(&f->front_reset);
  pthread_mutex_unlock(&f->mu);
  if (reset) {
    struct linger l;
    l.l_onoff = 1;
    l.l_linger = 0; /* close sends RST: the client sees ECONNRESET */
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  } else if (front) {
    fake_serve_front(f, fd, conn);
  } else {
    fake_serve_data(f, fd, conn);
  }
}

/* Concurrent mode: one connection's thread. Closes its fd under mu (see fake_stop). */
static void *fake_conn_main(void *arg) {
  struct fake_conn *c = (struct fake_conn *)arg;
  fake_serve(c->f, c->fd, c->conn, c->front);
  pthread_mutex_lock(&c->f->mu);
  close(c->fd);
  c->fd = -1;
  pthread_mutex_unlock(&c->f->mu);
  return NULL;
}

static void *fake_main(void *arg) {
  struct fake *f = (struct fake *)arg;
  while (!__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE)) {
    struct pollfd p[2];
    int np = 1;
    int i;
    p[0].fd = f->front_fd;
    p[0].events = POLLIN;
    p[0].revents = 0;
    pthread_mutex_lock(&f->mu);
    if (f->data_fd >= 0) {
      p[1].fd = f->data_fd;
      p[1].events = POLLIN;
      p[1].revents = 0;
      np = 2;
    }
    pthread_mutex_unlock(&f->mu);
    if (poll(p, (nfds_t)np, FAKE_POLL_MS) <= 0) continue;
    for (i = 0; i < np; i++) {
      struct fake_conn *c = NULL;
      int fd;
      int conn;
      int slot;
      int concurrent;
      if ((p[i].revents & POLLIN) == 0) continue;
      fd = accept(p[i].fd, NULL, NULL);
      if (fd < 0) continue;
      pthread_mutex_lock(&f->mu);
      conn = ++f->conns;
      concurrent = f->concurrent;
      for (slot = 0; concurrent && slot < FAKE_CONNS_MAX && c == NULL; slot++) {
        if (!f->conn_slots[slot].used) c = &f->conn_slots[slot];
      }
      if (c != NULL) {
        c->used = 1;
        c->fd = fd;
        c->conn = conn;
        c->front = i == 0;
        c->f = f;
      }
      pthread_mutex_unlock(&f->mu);
      if (!concurrent) {
        fake_serve(f, fd, conn, i == 0);
        close(fd);
      } else if (c == NULL || pthread_create(&c->thread, NULL, fake_conn_main, c) != 0) {
        fprintf(stderr, "fake server: no thread for connection %d (at most %d)\n", conn,
                FAKE_CONNS_MAX);
        exit(1);
      }
    }
  }
  return NULL;
}

/* Starts a fake with an empty script. f is zeroed here. */
static void fake_start(struct fake *f) {
  pthread_condattr_t ca;
  memset(f, 0, sizeof *f);
  pthread_mutex_init(&f->mu, NULL);
  pthread_mutex_init(&f->serve, NULL);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&f->changed, &ca);
  pthread_condattr_destroy(&ca);
  f->max_value_bytes = FAKE_DEFAULT_MAX_VALUE_BYTES;
  f->next_session_id = FAKE_FIRST_SESSION_ID;
  f->front_fd = fake_listen(&f->front_port);
  f->data_fd = fake_listen(&f->data_port);
  if (pthread_create(&f->thread, NULL, fake_main, f) != 0) {
    perror("fake server: thread");
    exit(1);
  }
}

/* Starts a fake that serves every connection on a thread of its own. */
static inline void fake_start_concurrent(struct fake *f) {
  fake_start(f);
  pthread_mutex_lock(&f->mu);
  f->concurrent = 1; /* read by fake_main under mu before each accept: from now on */
  pthread_mutex_unlock(&f->mu);
}

static void fake_stop(struct fake *f) {
  int i;
  __atomic_store_n(&f->stop, 1, __ATOMIC_RELEASE);
  pthread_join(f->thread, NULL);
  /* Concurrent mode: wake every connection thread still reading (end of stream), join them. */
  pthread_mutex_lock(&f->mu);
  for (i = 0; i < FAKE_CONNS_MAX; i++) {
    if (f->conn_slots[i].used && f->conn_slots[i].fd >= 0) {
      shutdown(f->conn_slots[i].fd, SHUT_RDWR);
    }
  }
  pthread_mutex_unlock(&f->mu);
  for (i = 0; i < FAKE_CONNS_MAX; i++) {
    if (f->conn_slots[i].used) pthread_join(f->conn_slots[i].thread, NULL);
  }
  close(f->front_fd);
  if (f->data_fd >= 0) close(f->data_fd);
  for (i = 0; i < FAKE_STORE_MAX; i++) free(f->store[i].bytes);
  pthread_cond_destroy(&f->changed);
  pthread_mutex_destroy(&f->serve);
  pthread_mutex_destroy(&f->mu);
}

/* Queues the action for the next data request that has none yet. */
static inline void fake_push(struct fake *f, enum fake_action action) {
  pthread_mutex_lock(&f->mu);
  if (f->queue_len == FAKE_QUEUE_MAX) {
    fprintf(stderr, "fake server: queue full\n");
    exit(1);
  }
  f->queue[f->queue_len++] = action;
  pthread_mutex_unlock(&f->mu);
}

/* Sets a script field (one of the int counters above) under the fake's mutex. */
static inline void fake_set(struct fake *f, int *field, int value) {
  pthread_mutex_lock(&f->mu);
  *field = value;
  pthread_mutex_unlock(&f->mu);
}

/* Reads a counter of the fake under its mutex. */
static inline int fake_get(struct fake *f, const int *field) {
  int v;
  pthread_mutex_lock(&f->mu);
  v = *field;
  pthread_mutex_unlock(&f->mu);
  return v;
}

/* Waits until *field >= want or timeout_ms pass; returns whether it got there. */
static inline int fake_wait_for(struct fake *f, const int *field, int want, int timeout_ms) {
  struct timespec until;
  int ok;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += timeout_ms / 1000;
  until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  if (until.tv_nsec >= 1000000000L) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&f->mu);
  while (*field < want) {
    if (pthread_cond_timedwait(&f->changed, &f->mu, &until) != 0) break;
  }
  ok = *field >= want;
  pthread_mutex_unlock(&f->mu);
  return ok;
}

/* A copy of the events recorded so far (at most max); returns how many. */
static inline int fake_events(struct fake *f, struct fake_event *out, int max) {
  int n;
  pthread_mutex_lock(&f->mu);
  n = f->event_count < max ? f->event_count : max;
  memcpy(out, f->events, (size_t)n * sizeof *out);
  pthread_mutex_unlock(&f->mu);
  return n;
}

#endif /* PSISKV_TEST_FAKE_SERVER_H */
