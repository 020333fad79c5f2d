/*
 * test_hostile.c - libpsiskv against a server that breaks the protocol (needs no real server).
 *
 *   usage: test_hostile
 *
 * The fake server of fake_server.h runs in a thread of this program on ephemeral loopback ports.
 * Each scenario scripts a misbehaviour for one data request (a length that lies, a wrong magic,
 * id or opcode, an error status, a peer that vanishes mid-message) and the library must return
 * -1 with the documented errno, never write past the caller's buffer, and never raise SIGPIPE
 * (this program keeps the default disposition, so a SIGPIPE would kill it). A protocol violation
 * or an error status is not retried (PROTOCOL.md 12.1): the fake sees the request once; the
 * descriptor then reconnects and resumes its session on its next call. A broken connection is
 * retried (test_retry.c covers that in depth). PSISKV_RETRY_TIMEOUT_MS is set for this process
 * before the first library call, long enough that no scenario here runs into it.
 *
 * The library's socket calls, seen from inside. This program defines recv, send and sendmsg, and
 * the dynamic linker binds the library's calls to them (the symbols of the executable come
 * first), which pass them on to the C library's own (dlsym RTLD_NEXT). Calls of the main thread,
 * where every kv_* call of this program runs, are counted and logged, and the scenario may cap
 * the bytes each recv returns or make it fail with EINTR: so a response reaches the library in
 * exactly the pieces a scenario names (one byte at a time, header then body), with no timing
 * involved. The fake server's thread passes straight through.
 */
#define _GNU_SOURCE /* RTLD_NEXT */
/* The wrappers below replace recv; a fortified <sys/socket.h> would define recv inline. */
#undef _FORTIFY_SOURCE

#include "psiskv.h"

#include <dlfcn.h>
#include <sys/socket.h>

#include "check.h"
#include "fake_server.h"
#include "psiskv_net.h" /* PSISKV_NET_RECV_BUFFER_BYTES */

#define RETRY_TIMEOUT "5000"
#define BIG_VALUE_BYTES (1024u * 1024u)
#define CANARY 0xA5
/* A value as the applications of the figures in DESIGN.md 9 write and read it. */
#define SMALL_VALUE_BYTES 100
/* A value longer than the library's receive buffer, not a multiple of it. */
#define LONG_VALUE_BYTES (3u * PSISKV_NET_RECV_BUFFER_BYTES + 5u)
/* A PUT value long enough to be sent from the caller's memory (sendmsg), not copied. */
#define UNCOPIED_PUT_VALUE_BYTES (64u * 1024u)
#define IO_CAPS_MAX 8
#define IO_LOG_MAX 64

/* ---- the socket calls of the main thread (see the comment at the top) ---- */

static ssize_t (*real_recv)(int, void *, size_t, int);
static ssize_t (*real_send)(int, const void *, size_t, int);
static ssize_t (*real_sendmsg)(int, const struct msghdr *, int);
static pthread_t main_thread;

/* Touched by the main thread only. */
static struct io_watch {
  int recvs;
  int sends;
  int sendmsgs;
  size_t caps[IO_CAPS_MAX]; /* most bytes each of the coming recvs returns, in order */
  int cap_count;
  int cap_next;
  size_t cap_after;         /* most bytes of every recv after those; 0: no cap */
  int eintr_recvs;          /* the coming recvs that fail with EINTR before anything */
  struct {
    char *buf;
    size_t len;
  } log[IO_LOG_MAX];        /* the first IO_LOG_MAX recvs: where to, how many bytes asked */
} io;

static int watched(void) { return pthread_equal(pthread_self(), main_thread); }

ssize_t recv(int fd, void *buf, size_t n, int flags) {
  if (watched()) {
    size_t cap = io.cap_next < io.cap_count ? io.caps[io.cap_next++] : io.cap_after;
    if (io.recvs < IO_LOG_MAX) {
      io.log[io.recvs].buf = (char *)buf;
      io.log[io.recvs].len = n;
    }
    io.recvs++;
    if (io.eintr_recvs > 0) {
      io.eintr_recvs--;
      errno = EINTR;
      return -1;
    }
    if (cap > 0 && n > cap) n = cap;
  }
  return real_recv(fd, buf, n, flags);
}

ssize_t send(int fd, const void *buf, size_t n, int flags) {
  if (watched()) io.sends++;
  return real_send(fd, buf, n, flags);
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags) {
  if (watched()) io.sendmsgs++;
  return real_sendmsg(fd, msg, flags);
}

static void *next_symbol(const char *name) {
  void *sym = dlsym(RTLD_NEXT, name);
  if (sym == NULL) {
    fprintf(stderr, "test_hostile: dlsym(%s): %s\n", name, dlerror());
    exit(1);
  }
  return sym;
}

/* Before any thread starts: finds the C library's calls. */
static void io_init(void) {
  void *sym;
  main_thread = pthread_self();
  sym = next_symbol("recv");
  memcpy(&real_recv, &sym, sizeof sym); /* ISO C has no cast from void * to a function pointer */
  sym = next_symbol("send");
  memcpy(&real_send, &sym, sizeof sym);
  sym = next_symbol("sendmsg");
  memcpy(&real_sendmsg, &sym, sizeof sym);
}

/* Counts from zero with no caps; then the coming recvs return at most caps[0], caps[1], ...
 * bytes, and every one after those at most cap_after (0: no cap). */
static void io_watch(const size_t *caps, int cap_count, size_t cap_after) {
  memset(&io, 0, sizeof io);
  if (cap_count > IO_CAPS_MAX) exit(1);
  if (cap_count > 0) memcpy(io.caps, caps, (size_t)cap_count * sizeof caps[0]);
  io.cap_count = cap_count;
  io.cap_after = cap_after;
}

static void io_watch_none(void) { io_watch(NULL, 0, 0); }

static struct fake f; /* one at a time; large (a scratch buffer), so not on the stack */

static int connect_fake(void) {
  int kv = kv_connect("127.0.0.1", f.front_port);
  if (kv < 1) {
    fprintf(stderr, "test_hostile: kv_connect to the fake failed: %s\n", strerror(errno));
    exit(1);
  }
  return kv;
}

/* Events of opcode seen so far. */
static int count(uint8_t opcode) {
  static struct fake_event ev[FAKE_EVENTS_MAX];
  int n = fake_events(&f, ev, FAKE_EVENTS_MAX);
  int c = 0;
  int i;
  for (i = 0; i < n; i++) c += ev[i].opcode == opcode;
  return c;
}

/* After a call that dropped the connection: the next call reconnected and resumed the session
 * (a second SESSION, presenting the first one's id and secret; the first asked for a new one). */
static void check_resumed(const char *what) {
  static struct fake_event ev[FAKE_EVENTS_MAX];
  uint8_t secret[PSISKV_SESSION_SECRET_BYTES];
  int n = fake_events(&f, ev, FAKE_EVENTS_MAX);
  uint64_t first = 0;
  int sessions = 0;
  int i;
  fake_secret(FAKE_FIRST_SESSION_ID, secret);
  for (i = 0; i < n; i++) {
    if (ev[i].opcode != PSISKV_OP_SESSION) continue;
    sessions++;
    if (sessions == 1) {
      first = ev[i].session;
      CHECK(psiskv_session_secret_is_zero(ev[i].secret), "%s: a new session with a secret", what);
    }
    if (sessions == 2) {
      CHECK(first == PSISKV_SESSION_NEW && ev[i].session == FAKE_FIRST_SESSION_ID,
            "%s: second SESSION asked for %llx (first asked %llx)", what,
            (unsigned long long)ev[i].session, (unsigned long long)first);
      CHECK(memcmp(ev[i].secret, secret, sizeof secret) == 0,
            "%s: the resume did not present the session's secret", what);
    }
  }
  CHECK(sessions == 2, "%s: %d SESSIONs, expected 2 (connect, reconnect)", what, sessions);
}

/* A GET into a 16-byte buffer that the fake answers with a lie: -1 EPROTO, buffer bounds kept,
 * not resent; the next call reconnects. */
static void get_lie(enum fake_action lie, const char *what) {
  char area[16 + 64];
  size_t i;
  int canary_ok = 1;
  int kv;
  fake_start(&f);
  kv = connect_fake();
  fake_push(&f, lie);
  memset(area, CANARY, sizeof area);
  CHECK_RC(kv_read(kv, 1, area, 16), -1, EPROTO);
  for (i = 16; i < sizeof area; i++) canary_ok &= (unsigned char)area[i] == CANARY;
  CHECK(canary_ok, "%s: kv_read wrote past value_length", what);
  CHECK(count(PSISKV_OP_GET) == 1, "%s: the GET was sent %d times", what, count(PSISKV_OP_GET));
  CHECK_RC(kv_read(kv, 1, area, 16), -2, ENOENT);
  check_resumed(what);
  kv_close(kv);
  fake_stop(&f);
}

/* The first request gets a malformed response or a MUST-rule error: -1 with err, not resent;
 * the server closed (or the client dropped) the connection, and the next call reconnects. */
static void broken_response(enum fake_action evil, int err, const char *what) {
  int kv;
  fake_start(&f);
  kv = connect_fake();
  fake_push(&f, evil);
  CHECK_RC(kv_delete(kv, 5), -1, err);
  CHECK(count(PSISKV_OP_DELETE) == 1, "%s: the DELETE was sent %d times", what,
        count(PSISKV_OP_DELETE));
  CHECK_RC(kv_delete(kv, 5), -1, ENOENT);
  check_resumed(what);
  kv_close(kv);
  fake_stop(&f);
}

static void test_lying_gets(void) {
  int kv;
  get_lie(FAKE_GET_BODY_LONGER_THAN_CAPACITY, "body longer than capacity");
  get_lie(FAKE_GET_BODY_DISAGREES_WITH_STORED, "body disagrees with stored length");
  fake_start(&f);
  kv = connect_fake();
  fake_push(&f, FAKE_GET_STORED_ABOVE_INT_MAX);
  CHECK_RC(kv_read(kv, 1, NULL, 0), -1, EPROTO);
  kv_close(kv);
  fake_stop(&f);
}

static void test_malformed_responses(void) {
  int kv;
  broken_response(FAKE_BAD_MAGIC, EPROTO, "bad magic");
  broken_response(FAKE_BAD_VERSION, EPROTO, "bad version");
  broken_response(FAKE_BAD_REQUEST_ID, EPROTO, "bad request id");
  broken_response(FAKE_BAD_OPCODE, EPROTO, "bad opcode");
  broken_response(FAKE_BAD_KEY, EPROTO, "bad key");
  broken_response(FAKE_UNKNOWN_STATUS, EPROTO, "unknown status");
  broken_response(FAKE_ERROR_WITH_BODY, EPROTO, "error status with a body");
  broken_response(FAKE_TOO_LARGE, EMSGSIZE, "TOO_LARGE");
  fake_start(&f);
  kv = connect_fake();
  fake_push(&f, FAKE_KEY_EXISTS_TO_OVERWRITE);
  CHECK_RC(kv_write(kv, 1, "v", 2, 1), -1, EPROTO);
  CHECK_RC(kv_write(kv, 1, "v", 2, 1), 0, 0);
  check_resumed("KEY_EXISTS to an overwriting PUT");
  kv_close(kv);
  fake_stop(&f);
}

/* SERVER_ERROR answers a well-formed request: -1 EIO, not retried, the connection stays. */
static void test_server_error_keeps_connection(void) {
  int kv;
  fake_start(&f);
  kv = connect_fake();
  fake_push(&f, FAKE_SERVER_ERROR);
  CHECK_RC(kv_write(kv, 1, "v", 2, 0), -1, EIO);
  CHECK_RC(kv_write(kv, 1, "v", 2, 0), 0, 0);
  CHECK(fake_get(&f, &f.conns) == 2, "SERVER_ERROR: %d connections, expected 2 (front, data)",
        fake_get(&f, &f.conns));
  CHECK(count(PSISKV_OP_PUT) == 2, "SERVER_ERROR: %d PUTs, expected 2", count(PSISKV_OP_PUT));
  kv_close(kv);
  fake_stop(&f);
}

/* A close in the middle of a GET's value is a broken connection: the GET is resent and the
 * buffer holds the honest answer's bytes (here: none, no such key). */
static void test_close_mid_value(void) {
  char buf[64];
  int kv;
  fake_start(&f);
  kv = connect_fake();
  fake_push(&f, FAKE_CLOSE_MID_VALUE);
  CHECK_RC(kv_read(kv, 1, buf, sizeof buf), -2, ENOENT);
  CHECK(count(PSISKV_OP_GET) == 2, "close mid-value: %d GETs, expected 2", count(PSISKV_OP_GET));
  check_resumed("close mid-value");
  kv_close(kv);
  fake_stop(&f);
}

/* The server vanished right after SESSION: sending 1 MiB fails inside the library (EPIPE or
 * ECONNRESET, never SIGPIPE: this program would die of it), which reconnects and resends. */
static void test_peer_vanished(void) {
  char *big = (char *)calloc(1, BIG_VALUE_BYTES);
  int kv;
  if (big == NULL) exit(1);
  fake_start(&f);
  fake_set(&f, &f.session_close, 1);
  kv = connect_fake();
  CHECK_RC(kv_write(kv, 1, big, BIG_VALUE_BYTES, 1), 0, 0);
  CHECK_RC(kv_read(kv, 1, NULL, 0), (int)BIG_VALUE_BYTES, 0);
  check_resumed("peer vanished");
  kv_close(kv);
  fake_stop(&f);
  free(big);
}

/* ---- system calls and pieces of a response ---- */

/* Fills v with a pattern that differs from byte to byte and from key to key. */
static void pattern(char *v, size_t n, uint32_t key) {
  size_t i;
  for (i = 0; i < n; i++) v[i] = (char)(i * 7u + key);
}

/* The calls of the last io_watch period were exactly these. */
static void expect_calls(int sends, int sendmsgs, int recvs, const char *what) {
  CHECK(io.sends == sends && io.sendmsgs == sendmsgs && io.recvs == recvs,
        "%s: %d send, %d sendmsg, %d recv; expected %d, %d, %d", what, io.sends, io.sendmsgs,
        io.recvs, sends, sendmsgs, recvs);
}

/* Each request leaves in one call and each small answer comes with one recv: set-up, a PUT of
 * 100 bytes (copied behind its header, send), a GET of them, a GET of no key, a DELETE, and a
 * long PUT (header and value as two iovecs, sendmsg). */
static void test_one_call_each_way(void) {
  static char big[UNCOPIED_PUT_VALUE_BYTES];
  char value[SMALL_VALUE_BYTES];
  char buf[SMALL_VALUE_BYTES];
  int kv;
  fake_start(&f);
  pattern(value, sizeof value, 1);
  io_watch_none();
  kv = connect_fake();
  expect_calls(2, 0, 2, "kv_connect (HELLO, SESSION)");
  io_watch_none();
  CHECK_RC(kv_write(kv, 1, value, sizeof value, 1), 0, 0);
  expect_calls(1, 0, 1, "kv_write of 100 bytes");
  io_watch_none();
  CHECK_RC(kv_read(kv, 1, buf, sizeof buf), SMALL_VALUE_BYTES, 0);
  expect_calls(1, 0, 1, "kv_read of 100 bytes");
  CHECK(memcmp(buf, value, sizeof buf) == 0, "kv_read of 100 bytes: wrong bytes");
  io_watch_none();
  CHECK_RC(kv_read(kv, 2, buf, sizeof buf), -2, ENOENT);
  expect_calls(1, 0, 1, "kv_read of no key");
  io_watch_none();
  CHECK_RC(kv_delete(kv, 1), 0, 0);
  expect_calls(1, 0, 1, "kv_delete");
  io_watch_none();
  CHECK_RC(kv_write(kv, 3, big, sizeof big, 1), 0, 0);
  expect_calls(0, 1, 1, "kv_write of 64 KiB");
  kv_close(kv);
  fake_stop(&f);
}

/* Set-up and calls whose every answer reaches the library one byte at a time: the same results
 * as in one piece, and no reconnection. */
static void test_answers_one_byte_at_a_time(void) {
  char value[SMALL_VALUE_BYTES];
  char buf[SMALL_VALUE_BYTES];
  int kv;
  fake_start(&f);
  pattern(value, sizeof value, 7);
  io_watch(NULL, 0, 1);
  kv = connect_fake();
  CHECK_RC(kv_write(kv, 7, value, sizeof value, 0), 0, 0);
  CHECK_RC(kv_write(kv, 7, value, sizeof value, 0), -2, EEXIST);
  memset(buf, 0, sizeof buf);
  CHECK_RC(kv_read(kv, 7, buf, sizeof buf), SMALL_VALUE_BYTES, 0);
  CHECK(memcmp(buf, value, sizeof buf) == 0, "one byte at a time: kv_read got wrong bytes");
  CHECK_RC(kv_read(kv, 7, buf, 10), SMALL_VALUE_BYTES, 0);
  CHECK_RC(kv_delete(kv, 7), 0, 0);
  CHECK_RC(kv_read(kv, 7, buf, sizeof buf), -2, ENOENT);
  /* Every answer byte took one recv: HELLO 26, SESSION 48, PUT 20 + 20, GET 124 + 34, DELETE
   * 20, GET 20. */
  CHECK(io.recvs == 26 + 48 + 20 + 20 + 124 + 34 + 20 + 20, "one byte at a time: %d recvs",
        io.recvs);
  io_watch_none();
  kv_close(kv);
  CHECK(count(PSISKV_OP_SESSION) == 1, "one byte at a time: %d SESSIONs, expected 1",
        count(PSISKV_OP_SESSION));
  fake_stop(&f);
}

/* A GET answer (124 bytes) whose first recv returns only first_cap bytes: in the header, at its
 * end, in the stored length, in the value. The rest comes with one more recv. */
static void get_in_two_pieces(size_t first_cap) {
  char value[SMALL_VALUE_BYTES];
  char buf[SMALL_VALUE_BYTES + 16];
  size_t i;
  int canary_ok = 1;
  int kv;
  fake_start(&f);
  pattern(value, sizeof value, 9);
  kv = connect_fake();
  CHECK_RC(kv_write(kv, 9, value, sizeof value, 1), 0, 0);
  memset(buf, CANARY, sizeof buf);
  io_watch(&first_cap, 1, 0);
  CHECK_RC(kv_read(kv, 9, buf, SMALL_VALUE_BYTES), SMALL_VALUE_BYTES, 0);
  CHECK(io.recvs == 2, "GET split after %zu bytes: %d recvs, expected 2", first_cap, io.recvs);
  io_watch_none();
  CHECK(memcmp(buf, value, sizeof value) == 0, "GET split after %zu bytes: wrong bytes",
        first_cap);
  for (i = SMALL_VALUE_BYTES; i < sizeof buf; i++) canary_ok &= (unsigned char)buf[i] == CANARY;
  CHECK(canary_ok, "GET split after %zu bytes: kv_read wrote past value_length", first_cap);
  CHECK_RC(kv_delete(kv, 9), 0, 0); /* still in step */
  kv_close(kv);
  fake_stop(&f);
}

static void test_answers_in_two_pieces(void) {
  get_in_two_pieces(1);
  get_in_two_pieces(7);
  get_in_two_pieces(PSISKV_HEADER_BYTES);
  get_in_two_pieces(PSISKV_HEADER_BYTES + 2);
  get_in_two_pieces(PSISKV_HEADER_BYTES + PSISKV_GET_RESPONSE_PREFIX_BYTES);
  get_in_two_pieces(PSISKV_HEADER_BYTES + PSISKV_GET_RESPONSE_PREFIX_BYTES + 30);
  get_in_two_pieces(PSISKV_HEADER_BYTES + PSISKV_GET_RESPONSE_PREFIX_BYTES + SMALL_VALUE_BYTES -
                    1);
}

/* A recv and a send interrupted by a signal (EINTR) are repeated. */
static void test_interrupted_calls(void) {
  char value[SMALL_VALUE_BYTES];
  char buf[SMALL_VALUE_BYTES];
  int kv;
  fake_start(&f);
  pattern(value, sizeof value, 3);
  kv = connect_fake();
  CHECK_RC(kv_write(kv, 3, value, sizeof value, 1), 0, 0);
  io_watch_none();
  io.eintr_recvs = 2;
  CHECK_RC(kv_read(kv, 3, buf, sizeof buf), SMALL_VALUE_BYTES, 0);
  CHECK(memcmp(buf, value, sizeof buf) == 0, "EINTR: kv_read got wrong bytes");
  CHECK(io.recvs == 3, "EINTR: %d recvs, expected 3 (two interrupted)", io.recvs);
  io_watch_none();
  CHECK(count(PSISKV_OP_SESSION) == 1, "EINTR: %d SESSIONs, expected 1",
        count(PSISKV_OP_SESSION));
  kv_close(kv);
  fake_stop(&f);
}

/* A value longer than the receive buffer: what the first recv brings is copied from the buffer,
 * the rest is received straight into the caller's buffer, never asking for a byte past
 * value_length; exact, short and tiny buffers. */
static void long_get(uint32_t value_length) {
  static char value[LONG_VALUE_BYTES];
  static char buf[LONG_VALUE_BYTES + 64];
  size_t copied = value_length < LONG_VALUE_BYTES ? value_length : LONG_VALUE_BYTES;
  size_t i;
  int canary_ok = 1;
  int asks_ok = 1;
  int kv;
  fake_start(&f);
  pattern(value, sizeof value, 11);
  kv = connect_fake();
  CHECK_RC(kv_write(kv, 11, value, sizeof value, 1), 0, 0);
  memset(buf, CANARY, sizeof buf);
  io_watch_none();
  CHECK_RC(kv_read(kv, 11, buf, value_length), (int)LONG_VALUE_BYTES, 0);
  CHECK(memcmp(buf, value, copied) == 0, "long GET into %u bytes: wrong bytes", value_length);
  for (i = copied; i < sizeof buf; i++) canary_ok &= (unsigned char)buf[i] == CANARY;
  CHECK(canary_ok, "long GET into %u bytes: kv_read wrote past value_length", value_length);
  for (i = 0; i < (size_t)io.recvs && i < IO_LOG_MAX; i++) {
    char *to = io.log[i].buf;
    if (to >= buf && to < buf + sizeof buf) asks_ok &= to + io.log[i].len <= buf + copied;
  }
  CHECK(asks_ok, "long GET into %u bytes: a recv asked for bytes past value_length",
        value_length);
  if (copied > PSISKV_NET_RECV_BUFFER_BYTES) {
    CHECK(io.recvs >= 2 && io.log[io.recvs - 1].buf > buf &&
              io.log[io.recvs - 1].buf < buf + copied,
          "long GET into %u bytes: the rest of the value was not received into the caller's "
          "buffer (%d recvs)", value_length, io.recvs);
  }
  io_watch_none();
  CHECK_RC(kv_delete(kv, 11), 0, 0); /* still in step */
  kv_close(kv);
  fake_stop(&f);
}

static void test_value_longer_than_the_receive_buffer(void) {
  long_get(LONG_VALUE_BYTES);
  long_get(2u * PSISKV_NET_RECV_BUFFER_BYTES + 3u);
  long_get(PSISKV_NET_RECV_BUFFER_BYTES - 10u);
  long_get(0);
}

/* kv_connect to the fake must fail with EPROTO; a descriptor it hands out anyway is closed, so
 * that the fake (serving one connection at a time) can stop. */
static void connect_fails_eproto(const char *what) {
  int kv;
  errno = 0;
  kv = kv_connect("127.0.0.1", f.front_port);
  CHECK(kv == -1 && errno == EPROTO, "%s: kv_connect returned %d errno %d (%s), expected -1 "
        "EPROTO", what, kv, errno, strerror(errno));
  if (kv > 0) kv_close(kv);
}

/* Bytes after an answer, in the same segment: a protocol violation (EPROTO), not retried; the
 * next call reconnects. */
static void test_bytes_after_an_answer(void) {
  char value[SMALL_VALUE_BYTES];
  char area[SMALL_VALUE_BYTES];
  size_t delete_answer = PSISKV_HEADER_BYTES;
  int kv;
  get_lie(FAKE_EXTRA_AFTER_ANSWER, "bytes after a GET answer NOT_FOUND");
  broken_response(FAKE_EXTRA_AFTER_ANSWER, EPROTO, "bytes after a DELETE answer");
  /* After a GET OK with its value. */
  fake_start(&f);
  pattern(value, sizeof value, 5);
  kv = connect_fake();
  CHECK_RC(kv_write(kv, 5, value, sizeof value, 1), 0, 0);
  fake_push(&f, FAKE_EXTRA_AFTER_ANSWER);
  CHECK_RC(kv_read(kv, 5, area, sizeof area), -1, EPROTO);
  CHECK(count(PSISKV_OP_GET) == 1, "bytes after a GET OK: the GET was sent %d times",
        count(PSISKV_OP_GET));
  CHECK_RC(kv_read(kv, 5, area, sizeof area), SMALL_VALUE_BYTES, 0);
  check_resumed("bytes after a GET OK");
  kv_close(kv);
  fake_stop(&f);
  /* Bytes that come after the answer has been read (here: the library is handed the answer
   * alone) are read as the start of the next answer, whose header breaks the protocol. */
  fake_start(&f);
  kv = connect_fake();
  fake_push(&f, FAKE_EXTRA_AFTER_ANSWER);
  io_watch(&delete_answer, 1, 0);
  CHECK_RC(kv_delete(kv, 6), -1, ENOENT);
  io_watch_none();
  CHECK_RC(kv_delete(kv, 6), -1, EPROTO);
  CHECK_RC(kv_delete(kv, 6), -1, ENOENT);
  check_resumed("bytes after an answer, in a later segment");
  kv_close(kv);
  fake_stop(&f);
  /* After the set-up answers: kv_connect fails at once. */
  fake_start(&f);
  fake_set(&f, &f.hello_extra, 1);
  connect_fails_eproto("bytes after HELLO");
  CHECK(fake_get(&f, &f.hellos) == 1, "bytes after HELLO: %d HELLOs, expected 1",
        fake_get(&f, &f.hellos));
  fake_stop(&f);
  fake_start(&f);
  fake_set(&f, &f.session_extra, 1);
  connect_fails_eproto("bytes after SESSION");
  CHECK(fake_get(&f, &f.sessions) == 1, "bytes after SESSION: %d SESSIONs, expected 1",
        fake_get(&f, &f.sessions));
  fake_stop(&f);
}

static void test_connect_set_up(void) {
  /* PROTOCOL.md 6.1: UNAVAILABLE on HELLO is retried. */
  int kv;
  fake_start(&f);
  fake_set(&f, &f.hello_unavailable, 2);
  kv = kv_connect("127.0.0.1", f.front_port);
  CHECK(kv > 0, "kv_connect after two UNAVAILABLE HELLOs returned %d (%s)", kv, strerror(errno));
  kv_close(kv);
  CHECK(fake_get(&f, &f.hellos) == 3, "expected 3 HELLOs, saw %d", fake_get(&f, &f.hellos));
  fake_stop(&f);
  /* PROTOCOL.md 6.2: a session has a non-zero id and a secret; a violation is not retried. */
  fake_start(&f);
  fake_set(&f, &f.session_id_zero, 1);
  CHECK_RC(kv_connect("127.0.0.1", f.front_port), -1, EPROTO);
  CHECK(fake_get(&f, &f.sessions) == 1, "session id 0: %d SESSIONs, expected 1",
        fake_get(&f, &f.sessions));
  fake_stop(&f);
  fake_start(&f);
  fake_set(&f, &f.session_secret_zero, 1);
  CHECK_RC(kv_connect("127.0.0.1", f.front_port), -1, EPROTO);
  CHECK(fake_get(&f, &f.sessions) == 1, "zero secret: %d SESSIONs, expected 1",
        fake_get(&f, &f.sessions));
  fake_stop(&f);
  /* FORBIDDEN is never retried: -1 EACCES. */
  fake_start(&f);
  fake_set(&f, &f.session_forbidden, 1);
  CHECK_RC(kv_connect("127.0.0.1", f.front_port), -1, EACCES);
  CHECK(fake_get(&f, &f.sessions) == 1, "FORBIDDEN at kv_connect: %d SESSIONs, expected 1",
        fake_get(&f, &f.sessions));
  fake_stop(&f);
}

/* Resuming after a reconnection (PROTOCOL.md 6.2, 12.7): the answer must echo the session's id
 * and secret (else EPROTO, the request not resent); FORBIDDEN fails the call with EACCES and is
 * not retried, and so is each later call while the server says so. */
static void resume_refused(int *script, int err, const char *what) {
  int kv;
  int sessions;
  fake_start(&f);
  kv = connect_fake();
  CHECK_RC(kv_write(kv, 1, "v", 2, 1), 0, 0);
  fake_push(&f, FAKE_DROP_BEFORE_ANSWER);
  fake_set(&f, script, 1);
  CHECK_RC(kv_write(kv, 2, "w", 2, 1), -1, err);
  sessions = fake_get(&f, &f.sessions);
  CHECK(sessions == 2, "%s: %d SESSIONs, expected 2 (connect, one resume)", what, sessions);
  CHECK(count(PSISKV_OP_PUT) == 2, "%s: %d PUTs, expected 2 (not resent)", what,
        count(PSISKV_OP_PUT));
  check_resumed(what);
  /* The script is spent: the next call resumes the session for real, and it is the same. */
  CHECK_RC(kv_read(kv, 1, NULL, 0), 2, 0);
  CHECK_RC(kv_write(kv, 2, "w", 2, 0), 0, 0);
  kv_close(kv);
  fake_stop(&f);
}

static void test_resume_checks(void) {
  int kv;
  int i;
  resume_refused(&f.session_other_secret, EPROTO, "resume answered with another secret");
  resume_refused(&f.session_other_id, EPROTO, "resume answered with another id");
  resume_refused(&f.session_secret_zero, EPROTO, "resume answered without a secret");
  resume_refused(&f.session_forbidden, EACCES, "resume answered FORBIDDEN");
  /* FORBIDDEN for good: each call tries once and fails with EACCES; never another session. */
  fake_start(&f);
  kv = connect_fake();
  fake_push(&f, FAKE_DROP_BEFORE_ANSWER);
  fake_set(&f, &f.session_forbidden, -1);
  for (i = 0; i < 3; i++) CHECK_RC(kv_delete(kv, 1), -1, EACCES);
  CHECK(fake_get(&f, &f.forbidden) == 3, "FORBIDDEN for good: %d SESSIONs answered FORBIDDEN, "
        "expected 3 (one per call)", fake_get(&f, &f.forbidden));
  CHECK(count(PSISKV_OP_DELETE) == 1, "FORBIDDEN for good: %d DELETEs, expected 1",
        count(PSISKV_OP_DELETE));
  fake_set(&f, &f.session_forbidden, 0);
  kv_close(kv);
  fake_stop(&f);
}

/* PROTOCOL.md 3.2: HELLO, SESSION and every request of a descriptor take strictly increasing
 * ids. */
static void test_request_ids(void) {
  static struct fake_event ev[FAKE_EVENTS_MAX];
  int kv;
  int n;
  int i;
  fake_start(&f);
  kv = connect_fake();
  for (i = 0; i < 10; i++) {
    CHECK_RC(kv_write(kv, (uint32_t)i, "v", 2, 0), 0, 0);
    CHECK_RC(kv_read(kv, (uint32_t)i + 100, NULL, 0), -2, ENOENT);
    CHECK_RC(kv_delete(kv, (uint32_t)i + 100), -1, ENOENT);
  }
  kv_close(kv);
  n = fake_events(&f, ev, FAKE_EVENTS_MAX);
  fake_stop(&f);
  CHECK(n == 32, "expected 32 requests (HELLO, SESSION, 30), saw %d", n);
  for (i = 1; i < n; i++) {
    CHECK(ev[i].request_id > ev[i - 1].request_id, "request id %llu after %llu",
          (unsigned long long)ev[i].request_id, (unsigned long long)ev[i - 1].request_id);
  }
}

int main(void) {
  io_init();
  /* Read once by the library, at its first kv_connect: set before any call. */
  setenv("PSISKV_RETRY_TIMEOUT_MS", RETRY_TIMEOUT, 1);
  test_lying_gets();
  test_malformed_responses();
  test_server_error_keeps_connection();
  test_close_mid_value();
  test_peer_vanished();
  test_connect_set_up();
  test_resume_checks();
  test_request_ids();
  test_one_call_each_way();
  test_answers_one_byte_at_a_time();
  test_answers_in_two_pieces();
  test_interrupted_calls();
  test_value_longer_than_the_receive_buffer();
  test_bytes_after_an_answer();
  return check_summary("test_hostile");
}
