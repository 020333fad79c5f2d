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
 */
#define _POSIX_C_SOURCE 200809L

#include "psiskv.h"

#include "check.h"
#include "fake_server.h"

#define RETRY_TIMEOUT "5000"
#define BIG_VALUE_BYTES (1024u * 1024u)
#define CANARY 0xA5

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
 * (a second SESSION, asking for the first one's id). */
static void check_resumed(const char *what) {
  static struct fake_event ev[FAKE_EVENTS_MAX];
  int n = fake_events(&f, ev, FAKE_EVENTS_MAX);
  uint64_t first = 0;
  int sessions = 0;
  int i;
  for (i = 0; i < n; i++) {
    if (ev[i].opcode != PSISKV_OP_SESSION) continue;
    sessions++;
    if (sessions == 1) first = ev[i].session;
    if (sessions == 2) {
      CHECK(first == PSISKV_SESSION_NEW && ev[i].session == FAKE_FIRST_SESSION_ID,
            "%s: second SESSION asked for %llx (first asked %llx)", what,
            (unsigned long long)ev[i].session, (unsigned long long)first);
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
  /* PROTOCOL.md 6.2: a session id is non-zero; a violation is not retried. */
  fake_start(&f);
  fake_set(&f, &f.session_id_zero, 1);
  CHECK_RC(kv_connect("127.0.0.1", f.front_port), -1, EPROTO);
  CHECK(fake_get(&f, &f.sessions) == 1, "session id 0: %d SESSIONs, expected 1",
        fake_get(&f, &f.sessions));
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
  /* Read once by the library, at its first kv_connect: set before any call. */
  setenv("PSISKV_RETRY_TIMEOUT_MS", RETRY_TIMEOUT, 1);
  test_lying_gets();
  test_malformed_responses();
  test_server_error_keeps_connection();
  test_close_mid_value();
  test_peer_vanished();
  test_connect_set_up();
  test_request_ids();
  return check_summary("test_hostile");
}
