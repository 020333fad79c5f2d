/*
 * test_hostile.c - libpsiskv against a server that breaks the protocol (needs no real server).
 *
 *   usage: test_hostile
 *
 * A fake server runs in a thread of this program on an ephemeral loopback port. It answers HELLO
 * with "same host, my own port" and SESSION honestly, then answers the first data request of
 * each scenario with a scripted misbehaviour (a length that lies, a wrong magic, id or opcode, a
 * peer that vanishes mid-message, an error status) and later requests honestly. The library must
 * return -1 with the documented errno, never write past the caller's buffer, never raise SIGPIPE
 * (this program keeps the default disposition, so a SIGPIPE would kill it), and treat the
 * connection as broken (ENOTCONN afterwards) unless the status leaves it in step.
 *
 * The fake encodes with psiskv_proto.c, compiled into this program; the library under test is
 * libpsiskv.so, whose own copy of the codec is hidden, so the two do not clash.
 */
#define _POSIX_C_SOURCE 200809L

#include "psiskv.h"

#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "psiskv_proto.h"

#define SESSION_ID 0x5e55105ULL
#define MAX_VALUE_BYTES (4u * 1024u * 1024u)
#define BIG_VALUE_BYTES (1024u * 1024u)
#define ACCEPT_POLL_MS 50
#define MAX_SEEN_IDS 64
/* Connect budget while the fake answers HELLO with UNAVAILABLE for ever. */
#define UNAVAILABLE_TIMEOUT_MS 300
#define CANARY 0xA5

enum misbehaviour {
  HONEST,
  GET_BODY_LONGER_THAN_CAPACITY, /* body length 4 + capacity + 100, and that many bytes */
  GET_BODY_DISAGREES_WITH_STORED, /* body 4 + capacity but stored < capacity */
  GET_STORED_ABOVE_INT_MAX,       /* capacity 0, stored 0x90000000 */
  BAD_MAGIC,
  BAD_VERSION,
  BAD_REQUEST_ID,
  BAD_OPCODE,
  BAD_KEY,
  UNKNOWN_STATUS,
  ERROR_WITH_BODY,        /* SERVER_ERROR that carries a body */
  CLOSE_MID_HEADER,       /* 10 bytes of a header, then close */
  CLOSE_MID_VALUE,        /* GET OK, stored length, half the value, close */
  CLOSE_AFTER_SESSION,    /* the data connection closes right after SESSION */
  KEY_EXISTS_TO_OVERWRITE,
  STATUS_SERVER_ERROR,    /* a well-formed error: the connection stays usable */
  STATUS_UNAVAILABLE,     /* the same */
  STATUS_TOO_LARGE,       /* a MUST-rule error: the server closes, the client drops */
  SESSION_ID_ZERO,        /* SESSION answered with session id 0 */
  SESSION_REFUSED         /* SESSION answered with UNAVAILABLE */
};

struct fake {
  int listen_fd;
  int port;
  enum misbehaviour evil;
  int hello_unavailable; /* HELLOs to answer UNAVAILABLE first; -1: every one */
  int stop;              /* set with __atomic builtins by the test, read by the server */
  pthread_t thread;
  /* Written by the server thread, read by the test after join. */
  uint64_t ids[MAX_SEEN_IDS]; /* request ids in the order received, all connections */
  int id_count;
  int hellos;
};

static int read_exact(int fd, void *buf, size_t n) {
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

static void send_all(int fd, const void *buf, size_t n) {
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

/* Answers one data request; returns 0 to go on, -1 to close the connection. */
static int answer(struct fake *f, int fd, const psiskv_header *h, const uint8_t *body, int first) {
  uint8_t out[PSISKV_MAX_FIXED_BYTES + 256];
  enum misbehaviour evil = first ? f->evil : HONEST;
  size_t n;
  uint32_t capacity = h->opcode == PSISKV_OP_GET ? psiskv_decode_get_capacity(body) : 0;
  static uint8_t value[BIG_VALUE_BYTES];
  switch (evil) {
    case GET_BODY_LONGER_THAN_CAPACITY:
      n = psiskv_encode_get_ok_prefix(out, h->key, h->request_id, capacity + 100, capacity + 100);
      send_all(fd, out, n);
      memset(value, 'x', capacity + 100);
      send_all(fd, value, capacity + 100);
      return 0;
    case GET_BODY_DISAGREES_WITH_STORED:
      n = psiskv_encode_get_ok_prefix(out, h->key, h->request_id, capacity / 2, capacity);
      send_all(fd, out, n);
      memset(value, 'x', capacity);
      send_all(fd, value, capacity);
      return 0;
    case GET_STORED_ABOVE_INT_MAX:
      n = psiskv_encode_get_ok_prefix(out, h->key, h->request_id, 0x90000000u, 0);
      send_all(fd, out, n);
      return 0;
    case BAD_MAGIC:
    case BAD_VERSION:
    case BAD_REQUEST_ID:
    case BAD_OPCODE:
    case BAD_KEY:
    case UNKNOWN_STATUS:
      n = psiskv_encode_status(out, h->opcode, PSISKV_ST_OK, h->key, h->request_id);
      if (h->opcode == PSISKV_OP_GET) { /* a GET OK needs its stored length */
        n = psiskv_encode_get_ok_prefix(out, h->key, h->request_id, 0, 0);
      }
      if (evil == BAD_MAGIC) out[PSISKV_OFF_MAGIC] = PSISKV_REQUEST_MAGIC;
      if (evil == BAD_VERSION) out[PSISKV_OFF_VERSION] = 2;
      if (evil == BAD_REQUEST_ID) out[PSISKV_OFF_REQUEST_ID + 7] ^= 1;
      if (evil == BAD_OPCODE) out[PSISKV_OFF_OPCODE] = PSISKV_OP_PING;
      if (evil == BAD_KEY) out[PSISKV_OFF_KEY + 3] ^= 1;
      if (evil == UNKNOWN_STATUS) out[PSISKV_OFF_FLAGS_OR_STATUS] = 0x7e;
      send_all(fd, out, n);
      return 0;
    case ERROR_WITH_BODY:
      n = psiskv_encode_status(out, h->opcode, PSISKV_ST_SERVER_ERROR, h->key, h->request_id);
      psiskv_put_u32(out + PSISKV_OFF_BODY_LENGTH, 4);
      memset(out + n, 0, 4);
      send_all(fd, out, n + 4);
      return 0;
    case CLOSE_MID_HEADER:
      n = psiskv_encode_status(out, h->opcode, PSISKV_ST_OK, h->key, h->request_id);
      send_all(fd, out, 10);
      return -1;
    case CLOSE_MID_VALUE:
      n = psiskv_encode_get_ok_prefix(out, h->key, h->request_id, capacity, capacity);
      send_all(fd, out, n);
      memset(value, 'x', capacity / 2);
      send_all(fd, value, capacity / 2);
      return -1;
    case KEY_EXISTS_TO_OVERWRITE:
      n = psiskv_encode_status(out, h->opcode, PSISKV_ST_KEY_EXISTS, h->key, h->request_id);
      send_all(fd, out, n);
      return 0;
    case STATUS_SERVER_ERROR:
    case STATUS_UNAVAILABLE:
    case STATUS_TOO_LARGE:
      n = psiskv_encode_status(out, h->opcode,
                               evil == STATUS_SERVER_ERROR  ? PSISKV_ST_SERVER_ERROR
                               : evil == STATUS_UNAVAILABLE ? PSISKV_ST_UNAVAILABLE
                                                            : PSISKV_ST_TOO_LARGE,
                               h->key, h->request_id);
      send_all(fd, out, n);
      return evil == STATUS_TOO_LARGE ? -1 : 0;
    default:
      break;
  }
  /* Honest: PUT stores nothing but says OK; GET and DELETE find nothing. */
  n = psiskv_encode_status(out, h->opcode,
                           h->opcode == PSISKV_OP_PUT ? PSISKV_ST_OK : PSISKV_ST_NOT_FOUND, h->key,
                           h->request_id);
  send_all(fd, out, n);
  return 0;
}

/* Serves one connection until the peer closes or a scripted close. */
static void serve(struct fake *f, int fd) {
  int first_data_request = 1;
  for (;;) {
    uint8_t raw[PSISKV_HEADER_BYTES];
    uint8_t out[PSISKV_MAX_FIXED_BYTES];
    uint8_t *body = NULL;
    psiskv_header h;
    size_t n;
    int go_on = 1;
    if (read_exact(fd, raw, sizeof raw) < 0) return;
    psiskv_header_decode(raw, &h);
    if (h.body_length > 0) {
      body = (uint8_t *)malloc(h.body_length);
      if (body == NULL || read_exact(fd, body, h.body_length) < 0) {
        free(body);
        return;
      }
    }
    if (f->id_count < MAX_SEEN_IDS) f->ids[f->id_count++] = h.request_id;
    if (h.opcode == PSISKV_OP_HELLO) {
      int unavailable = f->hello_unavailable < 0 || f->hellos < f->hello_unavailable;
      f->hellos++;
      n = unavailable ? psiskv_encode_status(out, h.opcode, PSISKV_ST_UNAVAILABLE, 0, h.request_id)
                      : psiskv_encode_hello_ok(out, h.request_id, PSISKV_HELLO_SAME_HOST,
                                               (uint16_t)f->port);
      send_all(fd, out, n);
    } else if (h.opcode == PSISKV_OP_SESSION) {
      if (f->evil == SESSION_REFUSED) {
        n = psiskv_encode_status(out, h.opcode, PSISKV_ST_UNAVAILABLE, 0, h.request_id);
      } else {
        n = psiskv_encode_session_ok(out, h.request_id, f->evil == SESSION_ID_ZERO ? 0 : SESSION_ID,
                                     MAX_VALUE_BYTES);
      }
      send_all(fd, out, n);
      go_on = f->evil != CLOSE_AFTER_SESSION;
    } else {
      go_on = answer(f, fd, &h, body, first_data_request) == 0;
      first_data_request = 0;
    }
    free(body);
    if (!go_on) return;
  }
}

static void *fake_main(void *arg) {
  struct fake *f = (struct fake *)arg;
  while (!__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE)) {
    struct pollfd p;
    int fd;
    p.fd = f->listen_fd;
    p.events = POLLIN;
    if (poll(&p, 1, ACCEPT_POLL_MS) <= 0) continue;
    fd = accept(f->listen_fd, NULL, NULL);
    if (fd < 0) continue;
    serve(f, fd);
    close(fd);
  }
  return NULL;
}

static void fake_start(struct fake *f, enum misbehaviour evil, int hello_unavailable) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  memset(f, 0, sizeof *f);
  f->evil = evil;
  f->hello_unavailable = hello_unavailable;
  f->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (f->listen_fd < 0 || bind(f->listen_fd, (struct sockaddr *)&a, sizeof a) < 0 ||
      listen(f->listen_fd, 16) < 0 || getsockname(f->listen_fd, (struct sockaddr *)&a, &len) < 0 ||
      pthread_create(&f->thread, NULL, fake_main, f) != 0) {
    perror("test_hostile: fake server");
    exit(1);
  }
  f->port = ntohs(a.sin_port);
}

static void fake_stop(struct fake *f) {
  __atomic_store_n(&f->stop, 1, __ATOMIC_RELEASE);
  pthread_join(f->thread, NULL);
  close(f->listen_fd);
}

static int connect_fake(struct fake *f) {
  int kv = kv_connect("127.0.0.1", f->port);
  if (kv < 1) {
    fprintf(stderr, "test_hostile: kv_connect to the fake failed: %s\n", strerror(errno));
    exit(1);
  }
  return kv;
}

/* A GET into a 16-byte buffer that the fake answers with a lie: -1 EPROTO, buffer bounds kept,
 * and the connection is gone afterwards. */
static void get_lie(enum misbehaviour evil, const char *what) {
  struct fake f;
  char area[16 + 64];
  size_t i;
  int canary_ok = 1;
  int kv;
  fake_start(&f, evil, 0);
  kv = connect_fake(&f);
  memset(area, CANARY, sizeof area);
  CHECK_RC(kv_read(kv, 1, area, 16), -1, EPROTO);
  for (i = 16; i < sizeof area; i++) canary_ok &= (unsigned char)area[i] == CANARY;
  CHECK(canary_ok, "%s: kv_read wrote past value_length", what);
  CHECK_RC(kv_read(kv, 1, area, 16), -1, ENOTCONN);
  kv_close(kv);
  fake_stop(&f);
}

/* The first request gets a malformed response: -1 with err, then the connection is gone. */
static void broken_response(enum misbehaviour evil, int err) {
  struct fake f;
  int kv;
  fake_start(&f, evil, 0);
  kv = connect_fake(&f);
  CHECK_RC(kv_delete(kv, 5), -1, err);
  CHECK_RC(kv_delete(kv, 5), -1, ENOTCONN);
  kv_close(kv);
  fake_stop(&f);
}

static void test_lying_gets(void) {
  get_lie(GET_BODY_LONGER_THAN_CAPACITY, "body longer than capacity");
  get_lie(GET_BODY_DISAGREES_WITH_STORED, "body disagrees with stored length");
  {
    struct fake f;
    int kv;
    fake_start(&f, GET_STORED_ABOVE_INT_MAX, 0);
    kv = connect_fake(&f);
    CHECK_RC(kv_read(kv, 1, NULL, 0), -1, EPROTO);
    kv_close(kv);
    fake_stop(&f);
  }
}

static void test_malformed_responses(void) {
  broken_response(BAD_MAGIC, EPROTO);
  broken_response(BAD_VERSION, EPROTO);
  broken_response(BAD_REQUEST_ID, EPROTO);
  broken_response(BAD_OPCODE, EPROTO);
  broken_response(BAD_KEY, EPROTO);
  broken_response(UNKNOWN_STATUS, EPROTO);
  broken_response(ERROR_WITH_BODY, EPROTO);
  broken_response(CLOSE_MID_HEADER, ECONNRESET);
  broken_response(STATUS_TOO_LARGE, EMSGSIZE);
  {
    struct fake f;
    char buf[64];
    int kv;
    fake_start(&f, CLOSE_MID_VALUE, 0);
    kv = connect_fake(&f);
    CHECK_RC(kv_read(kv, 1, buf, sizeof buf), -1, ECONNRESET);
    kv_close(kv);
    fake_stop(&f);
  }
  {
    struct fake f;
    int kv;
    fake_start(&f, KEY_EXISTS_TO_OVERWRITE, 0);
    kv = connect_fake(&f);
    CHECK_RC(kv_write(kv, 1, "v", 2, 1), -1, EPROTO);
    CHECK_RC(kv_write(kv, 1, "v", 2, 1), -1, ENOTCONN);
    kv_close(kv);
    fake_stop(&f);
  }
}

/* SERVER_ERROR and UNAVAILABLE answer a well-formed request: -1, but the connection stays. */
static void test_error_statuses_keep_connection(void) {
  struct fake f;
  int kv;
  fake_start(&f, STATUS_SERVER_ERROR, 0);
  kv = connect_fake(&f);
  CHECK_RC(kv_write(kv, 1, "v", 2, 0), -1, EIO);
  CHECK_RC(kv_write(kv, 1, "v", 2, 0), 0, 0);
  kv_close(kv);
  fake_stop(&f);
  fake_start(&f, STATUS_UNAVAILABLE, 0);
  kv = connect_fake(&f);
  CHECK_RC(kv_delete(kv, 1), -1, EAGAIN);
  CHECK_RC(kv_delete(kv, 1), -1, ENOENT);
  kv_close(kv);
  fake_stop(&f);
}

/* The server vanished after SESSION: a 1 MiB write fails with -1 (EPIPE or ECONNRESET) and no
 * SIGPIPE kills this program. */
static void test_peer_vanished(void) {
  struct fake f;
  char *big = (char *)calloc(1, BIG_VALUE_BYTES);
  int kv;
  int rc;
  int err;
  if (big == NULL) exit(1);
  fake_start(&f, CLOSE_AFTER_SESSION, 0);
  kv = connect_fake(&f);
  errno = 0;
  rc = kv_write(kv, 1, big, BIG_VALUE_BYTES, 1);
  err = errno;
  CHECK(rc == -1 && (err == EPIPE || err == ECONNRESET),
        "write to a vanished server returned %d errno %d (%s)", rc, err, strerror(err));
  CHECK_RC(kv_write(kv, 1, big, 1, 1), -1, ENOTCONN);
  kv_close(kv);
  fake_stop(&f);
  free(big);
}

static void test_connect_set_up(void) {
  struct fake f;
  char budget[16];
  int kv;
  /* PROTOCOL.md 6.1: UNAVAILABLE on HELLO is retried. */
  fake_start(&f, HONEST, 2);
  kv = kv_connect("127.0.0.1", f.port);
  CHECK(kv > 0, "kv_connect after two UNAVAILABLE HELLOs returned %d (%s)", kv, strerror(errno));
  kv_close(kv);
  fake_stop(&f);
  CHECK(f.hellos == 3, "expected 3 HELLOs, saw %d", f.hellos);
  /* ... within the connect budget. */
  fake_start(&f, HONEST, -1);
  sprintf(budget, "%d", UNAVAILABLE_TIMEOUT_MS);
  setenv("PSISKV_CONNECT_TIMEOUT_MS", budget, 1);
  CHECK_RC(kv_connect("127.0.0.1", f.port), -1, ETIMEDOUT);
  unsetenv("PSISKV_CONNECT_TIMEOUT_MS");
  fake_stop(&f);
  /* PROTOCOL.md 6.2: a session id is non-zero. */
  fake_start(&f, SESSION_ID_ZERO, 0);
  CHECK_RC(kv_connect("127.0.0.1", f.port), -1, EPROTO);
  fake_stop(&f);
  fake_start(&f, SESSION_REFUSED, 0);
  CHECK_RC(kv_connect("127.0.0.1", f.port), -1, EAGAIN);
  fake_stop(&f);
}

/* PROTOCOL.md 3.2: HELLO, SESSION and every request of a descriptor take strictly increasing
 * ids. */
static void test_request_ids(void) {
  struct fake f;
  int kv;
  int i;
  fake_start(&f, HONEST, 0);
  kv = connect_fake(&f);
  for (i = 0; i < 10; i++) {
    CHECK_RC(kv_write(kv, (uint32_t)i, "v", 2, 0), 0, 0);
    CHECK_RC(kv_read(kv, (uint32_t)i, NULL, 0), -2, ENOENT);
    CHECK_RC(kv_delete(kv, (uint32_t)i), -1, ENOENT);
  }
  kv_close(kv);
  fake_stop(&f);
  CHECK(f.id_count == 32, "expected 32 requests (HELLO, SESSION, 30), saw %d", f.id_count);
  for (i = 1; i < f.id_count; i++) {
    CHECK(f.ids[i] > f.ids[i - 1], "request id %llu after %llu", (unsigned long long)f.ids[i],
          (unsigned long long)f.ids[i - 1]);
  }
}

int main(void) {
  test_lying_gets();
  test_malformed_responses();
  test_error_statuses_keep_connection();
  test_peer_vanished();
  test_connect_set_up();
  test_request_ids();
  return check_summary("test_hostile");
}
