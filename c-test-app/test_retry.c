/*
 * test_retry.c - libpsiskv rides through a Data Server crash (PROTOCOL.md 12), against the fake
 * server of fake_server.h (needs no real server).
 *
 *   usage: test_retry            runs the three modes below, each in a child process
 *          test_retry MODE       runs one mode in this process
 *
 * The library reads PSISKV_RETRY_TIMEOUT_MS once, at its first kv_connect, so each mode is a
 * process of its own that sets it before any library call:
 *   default  variable unset (10 s): an interrupted kv_write, kv_read and kv_delete are resent on
 *            a resumed session (same session id) with the same request id and return the
 *            server's answer (the fake's exactly-once table answers a write it already applied
 *            with its stored result, so a new id would show: putIfAbsent -2, delete -1); through
 *            a crash while the Front Server answers UNAVAILABLE, names a dead port (refused) or
 *            resets connections; SESSION UNAVAILABLE on resume; a server maximum that shrank;
 *            and kv_close from another thread ends a call in back-off, blocked on the data
 *            connection or blocked in HELLO, which returns -1 EBADF. PSISKV_CONNECT_TIMEOUT_MS is
 *            set to 60 s here, so only kv_close can end a blocked HELLO in time.
 *   short    500 ms: a server that never comes back fails the call with -1 ETIMEDOUT after more
 *            than one attempt; the next call tries again (its own deadline) and works once the
 *            server is back; kv_connect gives up on UNAVAILABLE at the deadline but reports a
 *            refusing Front Server at once (ECONNREFUSED, not ETIMEDOUT).
 *   off      0: no reconnection: the cause at once (ECONNRESET, EPIPE, EAGAIN, ECONNREFUSED),
 *            ENOTCONN on a broken descriptor, one HELLO only.
 * Timing is never asserted: a deadline is only the bound of a wait for a condition.
 */
#define _POSIX_C_SOURCE 200809L

#include "psiskv.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "check.h"
#include "fake_server.h"

#define SHORT_RETRY_TIMEOUT "500"
#define LONG_CONNECT_TIMEOUT "60000"
/* How long the tests wait for a condition (the fake saw a request, a worker returned); far below
 * the default retry timeout (10 s) and the long connect timeout, so a call that returns in this
 * time was ended by kv_close, not by a deadline. */
#define WAIT_FOR_MS 5000
#define BIG_VALUE_BYTES (1024u * 1024u)

static struct fake f; /* large (a scratch buffer), so not on the stack */
static struct fake_event ev[FAKE_EVENTS_MAX];

static int connect_fake(void) {
  int kv = kv_connect("127.0.0.1", f.front_port);
  if (kv < 1) {
    fprintf(stderr, "test_retry: kv_connect to the fake failed: %s\n", strerror(errno));
    exit(1);
  }
  return kv;
}

static int events_now(void) { return fake_get(&f, &f.event_count); }

/* The descriptor is a close-on-exec socket at its own number (>= 3), connected now to the fake's
 * Data Server of the moment; returns the socket's inode (0 if it is not one). */
static ino_t check_descriptor_socket(int kv, const char *what) {
  struct sockaddr_in peer;
  socklen_t len = sizeof peer;
  struct stat st;
  int is_socket = fstat(kv, &st) == 0 && S_ISSOCK(st.st_mode);
  int fd_flags = fcntl(kv, F_GETFD);
  CHECK(kv >= 3, "%s: descriptor %d, expected a number >= 3", what, kv);
  CHECK(is_socket, "%s: descriptor %d is not a socket", what, kv);
  CHECK(fd_flags != -1 && (fd_flags & FD_CLOEXEC) != 0, "%s: descriptor %d not close-on-exec",
        what, kv);
  CHECK(getpeername(kv, (struct sockaddr *)&peer, &len) == 0 &&
            ntohs(peer.sin_port) == fake_get(&f, &f.data_port),
        "%s: descriptor %d is not connected to the Data Server (port %d)", what, kv,
        fake_get(&f, &f.data_port));
  return is_socket ? st.st_ino : 0;
}

/*
 * The events since index mark hold the request (opcode, key) at least twice: the interrupted
 * one and its resends, each on a connection of its own, all with the same request id and the
 * session id want_session, and before each resend a SESSION on its connection asking for
 * want_session with its secret (a resume).
 */
static void check_resent(const char *what, int mark, uint8_t opcode, uint32_t key,
                         uint64_t want_session) {
  uint8_t secret[PSISKV_SESSION_SECRET_BYTES];
  int n = fake_events(&f, ev, FAKE_EVENTS_MAX);
  int seen = 0;
  uint64_t id = 0;
  int last_conn = -1;
  int i;
  fake_secret(want_session, secret);
  for (i = mark; i < n; i++) {
    if (ev[i].opcode != opcode || ev[i].key != key) continue;
    if (seen == 0) {
      id = ev[i].request_id;
    } else {
      int j;
      int resumed = 0;
      CHECK(ev[i].request_id == id, "%s: resent with request id %llu, first sent with %llu", what,
            (unsigned long long)ev[i].request_id, (unsigned long long)id);
      CHECK(ev[i].conn != last_conn, "%s: resent on the same connection %d", what, last_conn);
      for (j = i - 1; j >= mark && !resumed; j--) {
        resumed = ev[j].conn == ev[i].conn && ev[j].opcode == PSISKV_OP_SESSION &&
                  ev[j].session == want_session &&
                  memcmp(ev[j].secret, secret, sizeof secret) == 0;
      }
      CHECK(resumed, "%s: no SESSION resuming %llx with its secret before the resend", what,
            (unsigned long long)want_session);
    }
    CHECK(ev[i].session == want_session, "%s: sent on session %llx, expected %llx", what,
          (unsigned long long)ev[i].session, (unsigned long long)want_session);
    last_conn = ev[i].conn;
    seen++;
  }
  CHECK(seen >= 2, "%s: the request was seen %d times, expected a resend", what, seen);
}

/* Events since mark of opcode (and key, for data requests). */
static int count_since(int mark, uint8_t opcode, uint32_t key) {
  int n = fake_events(&f, ev, FAKE_EVENTS_MAX);
  int c = 0;
  int i;
  for (i = mark; i < n; i++) {
    c += ev[i].opcode == opcode && (opcode == PSISKV_OP_HELLO || opcode == PSISKV_OP_SESSION ||
                                    ev[i].key == key);
  }
  return c;
}

/* PROTOCOL.md 3.2: every request of the descriptor has a new, larger id, except a resend, which
 * repeats the id of an earlier request with the same opcode and key. */
static void check_ids(const char *what) {
  int n = fake_events(&f, ev, FAKE_EVENTS_MAX);
  uint64_t max = 0;
  int i;
  for (i = 0; i < n; i++) {
    int resend = 0;
    int j;
    for (j = 0; j < i && !resend; j++) {
      resend = ev[j].request_id == ev[i].request_id && ev[j].opcode == ev[i].opcode &&
               ev[j].key == ev[i].key && ev[i].opcode != PSISKV_OP_HELLO &&
               ev[i].opcode != PSISKV_OP_SESSION;
    }
    CHECK(ev[i].request_id > max || resend, "%s: event %d (opcode %02x) has id %llu after %llu",
          what, i, ev[i].opcode, (unsigned long long)ev[i].request_id, (unsigned long long)max);
    if (ev[i].request_id > max) max = ev[i].request_id;
  }
}

/* ---- a call on another thread, for the kv_close tests ---- */

struct worker {
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t done_cond;
  int kv;
  int done;
  int rc;
  int err;
};

static void *worker_main(void *arg) {
  struct worker *w = (struct worker *)arg;
  int rc = kv_write(w->kv, 77, "w", 2, 1);
  int err = errno;
  pthread_mutex_lock(&w->mu);
  w->rc = rc;
  w->err = err;
  w->done = 1;
  pthread_cond_broadcast(&w->done_cond);
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

static void worker_start(struct worker *w, int kv) {
  pthread_condattr_t ca;
  memset(w, 0, sizeof *w);
  w->kv = kv;
  pthread_mutex_init(&w->mu, NULL);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&w->done_cond, &ca);
  pthread_condattr_destroy(&ca);
  if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
    perror("test_retry: worker");
    exit(1);
  }
}

/* Waits (bounded) for the worker's call to return; checks it was -1 EBADF; joins it. */
static void worker_expect_closed(struct worker *w, const char *what) {
  struct timespec until;
  int done;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += WAIT_FOR_MS / 1000;
  pthread_mutex_lock(&w->mu);
  while (!w->done) {
    if (pthread_cond_timedwait(&w->done_cond, &w->mu, &until) != 0) break;
  }
  done = w->done;
  pthread_mutex_unlock(&w->mu);
  CHECK(done, "%s: the call did not return within %d ms of kv_close", what, WAIT_FOR_MS);
  if (!done) { /* it may never return (blocked on a server that never answers): give up */
    check_summary("test_retry");
    fflush(stdout);
    _exit(1);
  }
  pthread_join(w->thread, NULL);
  CHECK(w->rc == -1 && w->err == EBADF, "%s: the call returned %d errno %d (%s), expected -1 EBADF",
        what, w->rc, w->err, strerror(w->err));
  pthread_cond_destroy(&w->done_cond);
  pthread_mutex_destroy(&w->mu);
}

/* ---- default mode ---- */

static void test_resend_on_resumed_session(void) {
  const uint64_t s = FAKE_FIRST_SESSION_ID; /* the session of the descriptor below */
  char buf[64];
  int kv;
  int mark;
  int hellos;
  ino_t first_socket;
  ino_t socket_now;
  fake_start(&f);
  kv = connect_fake();
  first_socket = check_descriptor_socket(kv, "after kv_connect");

  /* PUT applied, the answer lost: the resend is answered OK from the exactly-once table. */
  mark = events_now();
  fake_push(&f, FAKE_APPLY_THEN_DROP);
  CHECK_RC(kv_write(kv, 1, "one", 4, 0), 0, 0);
  check_resent("interrupted kv_write", mark, PSISKV_OP_PUT, 1, s);
  CHECK_RC(kv_read(kv, 1, buf, sizeof buf), 4, 0);
  CHECK(memcmp(buf, "one", 4) == 0, "kv_read after the resent write: wrong bytes");
  CHECK_RC(kv_write(kv, 1, "two", 4, 0), -2, EEXIST); /* a new request, a new id */

  /* GET cut in the middle of its value: resent, the buffer gets the whole value. */
  CHECK_RC(kv_write(kv, 2, "hello, world", 13, 1), 0, 0);
  mark = events_now();
  fake_push(&f, FAKE_DROP_MID_ANSWER);
  memset(buf, 0, sizeof buf);
  CHECK_RC(kv_read(kv, 2, buf, sizeof buf), 13, 0);
  CHECK(memcmp(buf, "hello, world", 13) == 0, "resent kv_read: wrong bytes");
  check_resent("interrupted kv_read", mark, PSISKV_OP_GET, 2, s);

  /* DELETE applied, the answer lost: OK from the exactly-once table, not NOT_FOUND. */
  CHECK_RC(kv_write(kv, 3, "three", 6, 1), 0, 0);
  mark = events_now();
  fake_push(&f, FAKE_APPLY_THEN_DROP);
  CHECK_RC(kv_delete(kv, 3), 0, 0);
  check_resent("interrupted kv_delete", mark, PSISKV_OP_DELETE, 3, s);
  CHECK_RC(kv_read(kv, 3, NULL, 0), -2, ENOENT);

  /* Dropped before it was applied: the resend applies it. */
  mark = events_now();
  fake_push(&f, FAKE_DROP_BEFORE_ANSWER);
  CHECK_RC(kv_write(kv, 4, "four", 5, 1), 0, 0);
  check_resent("kv_write dropped before the answer", mark, PSISKV_OP_PUT, 4, s);
  CHECK_RC(kv_read(kv, 4, NULL, 0), 5, 0);

  /* UNAVAILABLE from the Data Server: reconnect through the Front Server and resend. */
  mark = events_now();
  fake_push(&f, FAKE_UNAVAILABLE);
  CHECK_RC(kv_delete(kv, 5), -1, ENOENT);
  check_resent("kv_delete answered UNAVAILABLE", mark, PSISKV_OP_DELETE, 5, s);

  /* A crash; the Front Server answers UNAVAILABLE three times, then names the relaunched Data
   * Server (a new port). */
  mark = events_now();
  fake_set(&f, &f.down_hellos, 3);
  fake_set(&f, &f.down_refuses, 0);
  fake_push(&f, FAKE_CRASH);
  CHECK_RC(kv_write(kv, 6, "six", 4, 0), 0, 0);
  check_resent("kv_write through a crash (front UNAVAILABLE)", mark, PSISKV_OP_PUT, 6, s);
  hellos = count_since(mark, PSISKV_OP_HELLO, 0);
  CHECK(hellos == 4, "crash, front UNAVAILABLE: %d HELLOs, expected 4", hellos);
  CHECK_RC(kv_read(kv, 6, buf, sizeof buf), 4, 0);
  /* The relaunched Data Server's connection is at the descriptor's number: a new socket. */
  socket_now = check_descriptor_socket(kv, "after a crash and relaunch");
  CHECK(socket_now != first_socket, "after a crash: the descriptor holds its first socket still");

  /* A crash; the Front Server names the dead port three times (connections refused). */
  mark = events_now();
  fake_set(&f, &f.down_hellos, 3);
  fake_set(&f, &f.down_refuses, 1);
  fake_push(&f, FAKE_CRASH);
  CHECK_RC(kv_delete(kv, 6), 0, 0);
  check_resent("kv_delete through a crash (refused)", mark, PSISKV_OP_DELETE, 6, s);
  hellos = count_since(mark, PSISKV_OP_HELLO, 0);
  CHECK(hellos == 4, "crash, refused: %d HELLOs, expected 4", hellos);

  /* A crash; the Front Server resets two connections before it answers. */
  mark = events_now();
  fake_set(&f, &f.down_hellos, 0);
  fake_set(&f, &f.front_reset, 2);
  fake_push(&f, FAKE_CRASH);
  CHECK_RC(kv_write(kv, 7, "seven", 6, 1), 0, 0);
  check_resent("kv_write through a crash (front reset)", mark, PSISKV_OP_PUT, 7, s);
  CHECK(fake_get(&f, &f.front_reset) == 0, "front reset: the library gave up on the front");

  /* SESSION answered UNAVAILABLE twice on resume. */
  mark = events_now();
  fake_set(&f, &f.session_unavailable, 2);
  fake_push(&f, FAKE_DROP_BEFORE_ANSWER);
  CHECK_RC(kv_read(kv, 7, buf, sizeof buf), 6, 0);
  check_resent("kv_read with SESSION UNAVAILABLE", mark, PSISKV_OP_GET, 7, s);
  CHECK(count_since(mark, PSISKV_OP_SESSION, 0) == 3, "SESSION UNAVAILABLE: %d SESSIONs",
        count_since(mark, PSISKV_OP_SESSION, 0));

  /* The relaunched server takes shorter values: the resend is refused locally (EMSGSIZE), not
   * sent; the descriptor goes on. */
  mark = events_now();
  pthread_mutex_lock(&f.mu);
  f.max_value_bytes = 2;
  pthread_mutex_unlock(&f.mu);
  fake_push(&f, FAKE_DROP_BEFORE_ANSWER);
  CHECK_RC(kv_write(kv, 8, "abc", 3, 1), -1, EMSGSIZE);
  CHECK(count_since(mark, PSISKV_OP_PUT, 8) == 1, "EMSGSIZE after reconnecting: PUT sent %d times",
        count_since(mark, PSISKV_OP_PUT, 8));
  CHECK_RC(kv_write(kv, 8, "ab", 2, 1), 0, 0);
  CHECK_RC(kv_write(kv, 8, "abc", 3, 1), -1, EMSGSIZE);

  check_ids("default mode");
  kv_close(kv);
  fake_stop(&f);
}

/* kv_connect while the Data Server is down: UNAVAILABLE or refused is retried. */
static void test_connect_while_relaunching(void) {
  int kv;
  fake_start(&f);
  fake_set(&f, &f.down_hellos, 2);
  fake_set(&f, &f.down_refuses, 1);
  fake_crash(&f);
  kv = kv_connect("127.0.0.1", f.front_port);
  CHECK(kv > 0, "kv_connect while the Data Server is refused: %d (%s)", kv, strerror(errno));
  CHECK(fake_get(&f, &f.hellos) == 3, "kv_connect, refused: %d HELLOs, expected 3",
        fake_get(&f, &f.hellos));
  CHECK_RC(kv_write(kv, 1, "x", 2, 0), 0, 0);
  kv_close(kv);
  fake_stop(&f);
}

/* kv_close from another thread ends a call that is retrying. */
static void test_close_during_retry(void) {
  struct worker w;
  int kv;
  int h0;
  fake_start(&f);

  /* In back-off: the Data Server crashed and the Front Server answers UNAVAILABLE for ever. */
  kv = connect_fake();
  fake_set(&f, &f.down_hellos, -1);
  fake_set(&f, &f.down_refuses, 0);
  fake_push(&f, FAKE_CRASH);
  h0 = fake_get(&f, &f.hellos);
  worker_start(&w, kv);
  CHECK(fake_wait_for(&f, &f.hellos, h0 + 3, WAIT_FOR_MS), "retrying call: fewer than 3 HELLOs");
  kv_close(kv);
  worker_expect_closed(&w, "kv_close during back-off");
  CHECK_RC(kv_write(kv, 1, "x", 2, 1), -1, EBADF);

  /* Blocked on the data connection: the server read the request and never answers. */
  fake_set(&f, &f.down_hellos, 0); /* relaunch at the next HELLO */
  kv = connect_fake();
  fake_push(&f, FAKE_HANG);
  worker_start(&w, kv);
  CHECK(fake_wait_for(&f, &f.hanging, 1, WAIT_FOR_MS), "blocked call: the request never came");
  kv_close(kv);
  worker_expect_closed(&w, "kv_close while blocked on the data connection");
  CHECK(fake_wait_for(&f, &f.hangs_ended, 1, WAIT_FOR_MS), "blocked call: the fake still hangs");

  /* Blocked in HELLO during a reconnection (the connect budget is 60 s in this mode). */
  kv = connect_fake();
  fake_set(&f, &f.down_hellos, -1);
  fake_set(&f, &f.hello_hang, 1);
  fake_push(&f, FAKE_CRASH);
  worker_start(&w, kv);
  CHECK(fake_wait_for(&f, &f.hanging, 1, WAIT_FOR_MS), "reconnecting call: no HELLO came");
  kv_close(kv);
  worker_expect_closed(&w, "kv_close while blocked in HELLO");
  fake_stop(&f);
}

/* ---- short mode ---- */

static void test_gives_up_at_deadline(void) {
  char buf[16];
  int kv;
  int mark;
  int n;
  fake_start(&f);
  kv = connect_fake();

  /* The Data Server crashed (after applying the PUT) and is not relaunched. */
  mark = events_now();
  fake_set(&f, &f.down_hellos, -1);
  fake_set(&f, &f.down_refuses, 0);
  fake_push(&f, FAKE_CRASH);
  CHECK_RC(kv_write(kv, 1, "x", 2, 1), -1, ETIMEDOUT);
  n = count_since(mark, PSISKV_OP_HELLO, 0);
  CHECK(n > 1, "front UNAVAILABLE for ever: %d HELLOs, expected more than one attempt", n);
  /* The next call has a deadline of its own. */
  mark = events_now();
  CHECK_RC(kv_read(kv, 1, buf, sizeof buf), -1, ETIMEDOUT);
  n = count_since(mark, PSISKV_OP_HELLO, 0);
  CHECK(n > 1, "the next call: %d HELLOs, expected more than one attempt", n);
  /* Back again: the descriptor works, on its session. */
  mark = events_now();
  fake_set(&f, &f.down_hellos, 0);
  CHECK_RC(kv_read(kv, 1, buf, sizeof buf), 2, 0);
  CHECK(count_since(mark, PSISKV_OP_SESSION, 0) == 1, "relaunched: one SESSION expected");

  /* The Front Server names a dead port for ever: refused until the deadline. */
  mark = events_now();
  fake_set(&f, &f.down_hellos, -1);
  fake_set(&f, &f.down_refuses, 1);
  fake_push(&f, FAKE_CRASH);
  CHECK_RC(kv_delete(kv, 1), -1, ETIMEDOUT);
  n = count_since(mark, PSISKV_OP_HELLO, 0);
  CHECK(n > 1, "refused for ever: %d HELLOs, expected more than one attempt", n);

  /* The Front Server resets every connection. */
  mark = fake_get(&f, &f.conns);
  fake_set(&f, &f.down_hellos, 0);
  fake_set(&f, &f.front_reset, -1);
  CHECK_RC(kv_delete(kv, 1), -1, ETIMEDOUT);
  n = fake_get(&f, &f.conns) - mark;
  CHECK(n > 1, "front resets for ever: %d connections, expected more than one attempt", n);
  fake_set(&f, &f.front_reset, 0);
  CHECK_RC(kv_delete(kv, 1), -1, ENOENT); /* the crashed server had applied the DELETE */
  kv_close(kv);
  fake_stop(&f);
}

static void test_connect_gives_up(void) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  int s;
  int n;
  /* UNAVAILABLE for ever from the Front Server, then from SESSION: ETIMEDOUT at the deadline. */
  fake_start(&f);
  fake_set(&f, &f.hello_unavailable, -1);
  CHECK_RC(kv_connect("127.0.0.1", f.front_port), -1, ETIMEDOUT);
  n = fake_get(&f, &f.hellos);
  CHECK(n > 1, "kv_connect, HELLO UNAVAILABLE: %d HELLOs, expected more than one", n);
  fake_set(&f, &f.hello_unavailable, 0);
  fake_set(&f, &f.session_unavailable, -1);
  CHECK_RC(kv_connect("127.0.0.1", f.front_port), -1, ETIMEDOUT);
  n = fake_get(&f, &f.sessions);
  CHECK(n > 1, "kv_connect, SESSION UNAVAILABLE: %d SESSIONs, expected more than one", n);
  fake_stop(&f);
  /* A Front Server that refuses: at once, not retried (ECONNREFUSED, not ETIMEDOUT). A bound,
   * non-listening port refuses, and stays ours meanwhile. */
  s = socket(AF_INET, SOCK_STREAM, 0);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) < 0 ||
      getsockname(s, (struct sockaddr *)&a, &len) < 0) {
    perror("test_retry: bind");
    exit(1);
  }
  CHECK_RC(kv_connect("127.0.0.1", ntohs(a.sin_port)), -1, ECONNREFUSED);
  close(s);
}

/* ---- off mode ---- */

static void test_reconnection_off(void) {
  char *big;
  int kv;
  int err;
  int rc;
  fake_start(&f);
  kv = connect_fake();
  /* A broken connection fails the call with its cause; the descriptor stays broken. */
  fake_push(&f, FAKE_APPLY_THEN_DROP);
  CHECK_RC(kv_write(kv, 1, "x", 2, 1), -1, ECONNRESET);
  CHECK_RC(kv_read(kv, 1, NULL, 0), -1, ENOTCONN);
  CHECK_RC(kv_delete(kv, 1), -1, ENOTCONN);
  CHECK(fake_get(&f, &f.hellos) == 1, "off: %d HELLOs, expected 1", fake_get(&f, &f.hellos));
  CHECK(fake_get(&f, &f.data_requests) == 1, "off: %d data requests, expected 1",
        fake_get(&f, &f.data_requests));
  kv_close(kv);
  /* UNAVAILABLE: -1 EAGAIN, and the connection stays in step. */
  kv = connect_fake();
  fake_push(&f, FAKE_UNAVAILABLE);
  CHECK_RC(kv_delete(kv, 5), -1, EAGAIN);
  CHECK_RC(kv_delete(kv, 5), -1, ENOENT);
  CHECK(fake_get(&f, &f.hellos) == 2, "off: %d HELLOs, expected 2", fake_get(&f, &f.hellos));
  kv_close(kv);
  /* The server vanished after SESSION: a 1 MiB write fails (EPIPE or ECONNRESET; never
   * SIGPIPE, which would kill this program). */
  big = (char *)calloc(1, BIG_VALUE_BYTES);
  if (big == NULL) exit(1);
  fake_set(&f, &f.session_close, 1);
  kv = connect_fake();
  errno = 0;
  rc = kv_write(kv, 1, big, BIG_VALUE_BYTES, 1);
  err = errno;
  CHECK(rc == -1 && (err == EPIPE || err == ECONNRESET),
        "write to a vanished server returned %d errno %d (%s)", rc, err, strerror(err));
  CHECK_RC(kv_write(kv, 1, big, 1, 1), -1, ENOTCONN);
  kv_close(kv);
  free(big);
  /* kv_connect: the first failure is the answer. */
  fake_set(&f, &f.hello_unavailable, 1);
  CHECK_RC(kv_connect("127.0.0.1", f.front_port), -1, EAGAIN);
  fake_set(&f, &f.session_unavailable, 1);
  CHECK_RC(kv_connect("127.0.0.1", f.front_port), -1, EAGAIN);
  fake_set(&f, &f.down_hellos, -1);
  fake_set(&f, &f.down_refuses, 1);
  fake_crash(&f);
  CHECK_RC(kv_connect("127.0.0.1", f.front_port), -1, ECONNREFUSED);
  fake_stop(&f);
}

/* ---- modes ---- */

static int run_mode(const char *mode) {
  char name[64];
  /* Before any library call: the library reads PSISKV_RETRY_TIMEOUT_MS once. */
  if (strcmp(mode, "default") == 0) {
    unsetenv("PSISKV_RETRY_TIMEOUT_MS");
    setenv("PSISKV_CONNECT_TIMEOUT_MS", LONG_CONNECT_TIMEOUT, 1);
    test_resend_on_resumed_session();
    test_connect_while_relaunching();
    test_close_during_retry();
  } else if (strcmp(mode, "short") == 0) {
    setenv("PSISKV_RETRY_TIMEOUT_MS", SHORT_RETRY_TIMEOUT, 1);
    test_gives_up_at_deadline();
    test_connect_gives_up();
  } else if (strcmp(mode, "off") == 0) {
    setenv("PSISKV_RETRY_TIMEOUT_MS", "0", 1);
    test_reconnection_off();
  } else {
    fprintf(stderr, "usage: test_retry [default|short|off]\n");
    return 2;
  }
  snprintf(name, sizeof name, "test_retry %s", mode);
  return check_summary(name);
}

int main(int argc, char **argv) {
  static const char *const modes[] = {"default", "short", "off"};
  int failed = 0;
  size_t i;
  if (argc == 2) return run_mode(argv[1]);
  if (argc != 1) return run_mode("");
  /* One child per mode, one after the other; this process never calls the library. */
  for (i = 0; i < sizeof modes / sizeof modes[0]; i++) {
    int status = 0;
    pid_t pid;
    fflush(stdout);
    pid = fork();
    if (pid < 0) {
      perror("test_retry: fork");
      return 1;
    }
    if (pid == 0) exit(run_mode(modes[i]));
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fprintf(stderr, "test_retry: mode %s failed (status %#x)\n", modes[i], status);
      failed++;
    }
  }
  printf("test_retry: %d of %d modes failed\n", failed, (int)(sizeof modes / sizeof modes[0]));
  return failed == 0 ? 0 : 1;
}
