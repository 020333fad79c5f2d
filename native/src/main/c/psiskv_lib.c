/*
 * psiskv_lib.c - the five functions of psiskv.h, built from the descriptor table (psiskv_table.c),
 * the connection's exchanges and set-up (psiskv_connect.c), the sockets (psiskv_net.c), the codec
 * (psiskv_proto.c) and the settings (psiskv_env.c). This file decides what is retried.
 *
 * Reconnection (PROTOCOL.md 12). When a request's data connection breaks (any I/O error while
 * sending or receiving, end of stream) or the request is answered UNAVAILABLE, with_retries drops
 * the connection and retry_establish makes a new one (psiskv_establish, psiskv_connect.c): HELLO at
 * the Front Server the descriptor was connected to, connect to the Data Server it names, SESSION
 * with the descriptor's session id and secret (resume; the answer must echo both, else EPROTO). The
 * interrupted request is then sent again with the SAME request id, so the Data Server answers a
 * write it had already applied with the stored result (exactly once, 12.5). Attempts are spaced by
 * a back-off of RETRY_BACKOFF_FIRST_MS doubling to RETRY_BACKOFF_MAX_MS; the call fails (-1,
 * ETIMEDOUT) once its retry deadline has passed: PSISKV_RETRY_TIMEOUT_MS (environment, read once,
 * psiskv_env.h) after the failure, default PSISKV_DEFAULT_RETRY_TIMEOUT_MS; 0 disables
 * reconnection. A protocol violation or an error status other than UNAVAILABLE (FORBIDDEN among
 * them: the session is someone else's) fails the call at once. Each call has its own deadline: a
 * descriptor whose call gave up tries again on its next call. One attempt of the set-up (HELLO,
 * connect, SESSION) is bounded by the connect budget (PSISKV_CONNECT_TIMEOUT_MS) and by the retry
 * deadline; a resent request, like any request, waits for its answer as long as the server takes.
 *
 * System calls of a request. A request leaves in one call: a GET, a DELETE and a PUT of up to
 * PUT_COPIED_MAX_VALUE_BYTES are encoded into one buffer and sent with send; a longer PUT goes with
 * sendmsg, header and the caller's value as two iovecs. Its response comes through the entry's
 * receive buffer (in, psiskv_net.h): one recv takes the header, a GET's stored length and up to a
 * buffer's worth of value; the rest of a longer value is received straight into the caller's
 * buffer. One request is in flight at a time and a server sends nothing unasked (PROTOCOL.md 2), so
 * a byte left in the buffer after a complete response is a protocol violation: the call fails with
 * EPROTO and the connection is dropped, as for any other. Bytes that come after a response in a
 * later segment are not in the buffer yet; they are read as the start of the next response, whose
 * header then does not match (EPROTO too). The buffer is emptied whenever the socket changes (each
 * set-up socket, each drop). Each call also makes one fstat, the identity check of psiskv_table.c
 * ("Descriptors"): about 0.26 us on the 2-core VM of DESIGN.md 9, some 3% of the client's CPU per
 * operation (6.36 against 6.15 us, medians of 15 interleaved runs of client_cost, 1 thread, against
 * c-test-app's fake server), which is what it costs to never send a request into another socket of
 * the program.
 */
#define _POSIX_C_SOURCE 200809L

#include "psiskv.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>

#include "psiskv_connect.h"
#include "psiskv_env.h"
#include "psiskv_net.h"
#include "psiskv_proto.h"
#include "psiskv_table.h"

/* PROTOCOL.md 12.3: back-off between reconnection attempts, first wait and the most it grows
 * to (doubling). Also between kv_connect's attempts while the Front Server answers UNAVAILABLE. */
#define RETRY_BACKOFF_FIRST_MS 50
#define RETRY_BACKOFF_MAX_MS 1000
/* A PUT whose value is at most this long is copied behind its header and sent from one buffer
 * (send); a longer one goes as two iovecs (sendmsg), header and the caller's value, without a
 * copy. Either way one call. A copy of at most 1 KiB is cheap next to the call, and the buffer
 * it goes to is on the stack, which the bound keeps small. */
#define PUT_COPIED_MAX_VALUE_BYTES 1024

/* PSISKV_RETRY_TIMEOUT_MS as read by library_init; written once, before any descriptor exists. */
static int64_t retry_timeout_ms;

/* Whether PSISKV_READ_RETURNS is "zero", as read by library_init; written once, before any
 * descriptor exists (kv_read needs one, so it always sees the value read). */
static int read_returns_zero;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

/* Runs once, from the first kv_connect (no other call can come first: it needs a descriptor). */
static void library_init(void) {
  int saved = errno;
  psiskv_table_init();
  retry_timeout_ms = psiskv_env_retry_timeout_ms();
  read_returns_zero = psiskv_env_read_returns_zero();
  errno = saved;
}

/* ---- retries (PROTOCOL.md 12) ------------------------------------------------------------ */

/* The retry state of one call (PROTOCOL.md 12.3): its deadline and the next back-off. */
struct retry {
  int started;         /* 0 until the call's first failure */
  int64_t deadline_ms; /* the call gives up at this time (psiskv_net_now_ms) */
  int64_t backoff_ms;  /* the wait before the next attempt */
};

/* Starts the retry deadline of a call at its first failure (now). */
static void retry_start(struct retry *rs) {
  rs->started = 1;
  rs->deadline_ms = psiskv_net_now_ms() + retry_timeout_ms;
  rs->backoff_ms = RETRY_BACKOFF_FIRST_MS;
}

/*
 * (Re)connects e with psiskv_establish until an attempt succeeds (0), or the call must fail (-1
 * with errno): EBADF when kv_close ran, ETIMEDOUT when the deadline of rs has passed, or the errno
 * of a SETUP_FAILED attempt (and of SETUP_FRONT_DOWN when front_down_fails: kv_connect reports a
 * Front Server it cannot reach at once). The first attempt of a call follows its failure at once;
 * later ones wait for the back-off. Each attempt is bounded by the connect budget and the deadline.
 * Caller holds e->lock; reconnection is on (retry_timeout_ms > 0).
 */
static int retry_establish(struct kv_entry *e, struct retry *rs, int front_down_fails) {
  for (;;) {
    int64_t now;
    int64_t attempt_deadline_ms;
    if (!rs->started) {
      retry_start(rs);
    } else {
      int64_t left = rs->deadline_ms - psiskv_net_now_ms();
      if (left <= 0) {
        errno = ETIMEDOUT;
        return -1;
      }
      if (psiskv_entry_backoff_wait(e, rs->backoff_ms < left ? rs->backoff_ms : left) < 0) {
        return -1;
      }
      rs->backoff_ms =
          rs->backoff_ms * 2 > RETRY_BACKOFF_MAX_MS ? RETRY_BACKOFF_MAX_MS : rs->backoff_ms * 2;
    }
    now = psiskv_net_now_ms();
    if (now >= rs->deadline_ms) {
      errno = ETIMEDOUT;
      return -1;
    }
    attempt_deadline_ms = now + psiskv_env_connect_timeout_ms();
    if (attempt_deadline_ms > rs->deadline_ms) attempt_deadline_ms = rs->deadline_ms;
    switch (psiskv_establish(e, attempt_deadline_ms)) {
      case SETUP_OK:
        return 0;
      case SETUP_FAILED:
        return -1;
      case SETUP_FRONT_DOWN:
        if (front_down_fails) return -1;
        break;
      case SETUP_RETRY:
        break;
    }
    if (psiskv_entry_is_closed(e)) {
      errno = EBADF;
      return -1;
    }
  }
}

/* ---- one call ---------------------------------------------------------------------------- */

/* A data request as the caller asked for it; resent unchanged (same id) after a reconnection. */
struct request {
  uint8_t opcode;        /* PSISKV_OP_PUT, _GET or _DELETE */
  uint32_t key;
  uint64_t id;           /* taken once per call */
  int overwrite;         /* PUT */
  const char *value;     /* PUT: value_length bytes */
  uint32_t value_length; /* PUT: length of value; GET: capacity of out */
  char *out;             /* GET: the caller's buffer */
};

/* How one attempt of a request ended. */
enum attempt_result {
  ATTEMPT_DONE,  /* the call has its result (*rc, errno when it failed) */
  ATTEMPT_BROKEN /* the connection broke or the server answered UNAVAILABLE (12.1): it was
                    dropped, errno says why; resend after reconnecting */
};

/*
 * Handles an error status other than UNAVAILABLE-with-reconnection: sets errno and returns -1.
 * After a MUST-rule error the server closes the connection (PROTOCOL.md 8), so it is dropped;
 * SERVER_ERROR (and UNAVAILABLE when reconnection is off) answer a well-formed request and leave
 * the connection in step, so it is kept.
 */
static int error_status(struct kv_entry *e, uint8_t status) {
  if (status == PSISKV_ST_SERVER_ERROR || status == PSISKV_ST_UNAVAILABLE) {
    errno = psiskv_status_errno(status);
  } else {
    psiskv_drop(e, psiskv_status_errno(status));
  }
  return -1;
}

/* Sends r once on e->d (which is connected) and reads its answer. Caller holds e->lock. */
static enum attempt_result attempt(struct kv_entry *e, const struct request *r, int *rc) {
  uint8_t buf[PSISKV_MAX_FIXED_BYTES + PUT_COPIED_MAX_VALUE_BYTES];
  const uint8_t *prefix;
  const void *tail = NULL;
  uint32_t tail_len = 0;
  psiskv_header h;
  uint32_t stored = 0;
  uint32_t capacity = 0;
  size_t n;
  *rc = -1;
  switch (r->opcode) {
    case PSISKV_OP_PUT:
      if (r->value_length > e->max_value_bytes) {
        errno = EMSGSIZE; /* 6.2: refused locally, nothing sent (the maximum may have changed
                             with a reconnection) */
        return ATTEMPT_DONE;
      }
      n = psiskv_encode_put_header(buf, r->key, r->id, r->overwrite, r->value_length);
      if (r->value_length <= PUT_COPIED_MAX_VALUE_BYTES) {
        if (r->value_length > 0) memcpy(buf + n, r->value, r->value_length);
        n += r->value_length;
      } else {
        tail = r->value;
        tail_len = r->value_length;
      }
      break;
    case PSISKV_OP_GET:
      /* 6.5: capacity = value_length, so the server sends at most what the caller's buffer
       * holds. */
      capacity = r->value_length;
      n = psiskv_encode_get(buf, r->key, r->id, capacity);
      break;
    default:
      n = psiskv_encode_delete(buf, r->key, r->id);
      break;
  }
  switch (psiskv_exchange(e, e->d, buf, n, tail, tail_len, r->key, r->id, capacity,
                   PSISKV_NO_DEADLINE, &h)) {
    case EXCHANGE_OK:
      break;
    case EXCHANGE_IO:
      psiskv_drop(e, errno);
      return ATTEMPT_BROKEN;
    case EXCHANGE_PROTO:
      psiskv_drop(e, EPROTO);
      return ATTEMPT_DONE;
  }
  /* The body: only a GET OK has one (psiskv_check_response holds every other to 0 bytes). */
  if (r->opcode == PSISKV_OP_GET && h.flags_or_status == PSISKV_ST_OK) {
    prefix = psiskv_net_reader_take(&e->in, e->d, PSISKV_GET_RESPONSE_PREFIX_BYTES,
                                    PSISKV_NO_DEADLINE);
    if (prefix == NULL) {
      psiskv_drop(e, errno);
      return ATTEMPT_BROKEN;
    }
    stored = psiskv_decode_get_ok_stored_length(prefix);
    /* Checked before any value byte is copied: the body is exactly 4 + min(capacity, stored),
     * so at most value_length bytes land in out, whatever the server claims. */
    if (psiskv_check_get_ok_body(h.body_length, capacity, stored) != PSISKV_CHECK_OK ||
        stored > (uint32_t)INT_MAX) {
      psiskv_drop(e, EPROTO);
      return ATTEMPT_DONE;
    }
    if (psiskv_net_reader_read(&e->in, e->d, r->out,
                               h.body_length - PSISKV_GET_RESPONSE_PREFIX_BYTES,
                               PSISKV_NO_DEADLINE) < 0) {
      psiskv_drop(e, errno);
      return ATTEMPT_BROKEN;
    }
  }
  if (!psiskv_nothing_follows(e)) {
    psiskv_drop(e, EPROTO);
    return ATTEMPT_DONE;
  }
  if (h.flags_or_status == PSISKV_ST_UNAVAILABLE && retry_timeout_ms > 0) {
    /* 12.1: this Data Server cannot serve now; ask the Front Server again */
    psiskv_drop(e, EAGAIN);
    return ATTEMPT_BROKEN;
  }
  if (h.flags_or_status >= PSISKV_FIRST_ERROR_STATUS) {
    *rc = error_status(e, h.flags_or_status);
    return ATTEMPT_DONE;
  }
  /* A result status that psiskv_check_response allows for this opcode (5.1). */
  switch (r->opcode) {
    case PSISKV_OP_PUT:
      if (h.flags_or_status == PSISKV_ST_OK) {
        *rc = 0;
      } else if (r->overwrite) { /* an overwriting PUT never finds the key "existing" */
        psiskv_drop(e, EPROTO);
      } else {
        errno = EEXIST;
        *rc = -2;
      }
      return ATTEMPT_DONE;
    case PSISKV_OP_GET:
      if (h.flags_or_status == PSISKV_ST_NOT_FOUND) {
        errno = ENOENT;
        *rc = -2;
      } else {
        *rc = (int)stored;
      }
      return ATTEMPT_DONE;
    default:
      if (h.flags_or_status == PSISKV_ST_OK) {
        *rc = 0;
      } else {
        errno = ENOENT; /* 5.1: kv_delete of a missing key is -1 */
      }
      return ATTEMPT_DONE;
  }
}

/*
 * Runs request r to its result: on a broken connection, reconnects and resends r with its id
 * until the call's retry deadline (PROTOCOL.md 12). With reconnection off, a broken connection
 * fails the call with its cause, and a descriptor broken earlier with ENOTCONN; a descriptor
 * adopted after fork() (no session yet) gets one attempt at its first connection, as kv_connect
 * makes. The Java client's Calls.withRetries is this loop. Caller holds e->lock.
 */
static int with_retries(struct kv_entry *e, const struct request *r) {
  struct retry rs;
  int rc;
  rs.started = 0;
  for (;;) {
    if (!e->connected) {
      if (retry_timeout_ms > 0) {
        if (retry_establish(e, &rs, 0) < 0) return -1;
      } else if (e->session_id == PSISKV_SESSION_NEW) {
        int64_t deadline_ms = psiskv_net_now_ms() + psiskv_env_connect_timeout_ms();
        if (psiskv_establish(e, deadline_ms) != SETUP_OK) return -1;
      } else {
        errno = ENOTCONN;
        return -1;
      }
    }
    if (attempt(e, r, &rc) == ATTEMPT_DONE) return rc;
    if (psiskv_entry_is_closed(e)) { /* kv_close shut the connection down under this call */
      errno = EBADF;
      return -1;
    }
    if (retry_timeout_ms == 0) return -1; /* errno: what broke the connection */
  }
}

/* ---- the API ----------------------------------------------------------------------------- */

PSISKV_API int kv_connect(const char *kv_server_ip, int kv_server_port) {
  int64_t deadline_ms = psiskv_net_now_ms() + psiskv_env_connect_timeout_ms();
  struct kv_entry *e;
  struct retry rs;
  if (kv_server_ip == NULL || kv_server_port <= 0 || kv_server_port > 65535) {
    errno = EINVAL;
    return -1;
  }
  pthread_once(&init_once, library_init);
  e = psiskv_entry_new(kv_server_ip, kv_server_port);
  if (e == NULL) return -1; /* ENOMEM */
  if (psiskv_net_resolve_ipv4(e->front_host, e->front_port, &e->front) < 0) goto fail;
  /* The first attempt has the whole connect budget. A Front Server that cannot be reached fails
   * at once; UNAVAILABLE (a Data Server being relaunched) or a Data Server that cannot be reached
   * yet is retried until the retry deadline, as a reconnection is (PROTOCOL.md 12.3). */
  switch (psiskv_establish(e, deadline_ms)) {
    case SETUP_OK:
      break;
    case SETUP_RETRY:
      if (retry_timeout_ms == 0) goto fail;
      retry_start(&rs);
      if (retry_establish(e, &rs, 1) < 0) goto fail;
      break;
    default:
      goto fail;
  }
  if (psiskv_table_insert(e) < 0) goto fail;
  return e->d;
fail:
  psiskv_entry_free(e);
  return -1;
}

PSISKV_API void kv_close(int kv_descriptor) {
  int saved = errno; /* a void function: leave the caller's errno as it was */
  psiskv_table_close(kv_descriptor);
  errno = saved;
}

PSISKV_API int kv_write(int kv_descriptor, uint32_t key, const char *value, uint32_t value_length,
                        int kv_overwrite) {
  struct request r;
  int rc = -1;
  struct kv_entry *e = psiskv_entry_begin(kv_descriptor);
  if (e == NULL) return -1;
  if (value == NULL && value_length > 0) {
    errno = EINVAL;
  } else if (value_length > e->max_value_bytes) {
    errno = EMSGSIZE; /* 6.2: refused locally, nothing sent */
  } else {
    memset(&r, 0, sizeof r);
    r.opcode = PSISKV_OP_PUT;
    r.key = key;
    r.id = e->next_request_id++;
    r.overwrite = kv_overwrite != 0;
    r.value = value;
    r.value_length = value_length;
    rc = with_retries(e, &r);
  }
  psiskv_entry_end(e);
  return rc;
}

PSISKV_API int kv_read(int kv_descriptor, uint32_t key, char *value, uint32_t value_length) {
  struct request r;
  int rc = -1;
  struct kv_entry *e = psiskv_entry_begin(kv_descriptor);
  if (e == NULL) return -1;
  if (value == NULL && value_length > 0) {
    errno = EINVAL;
  } else {
    memset(&r, 0, sizeof r);
    r.opcode = PSISKV_OP_GET;
    r.key = key;
    r.id = e->next_request_id++;
    r.value_length = value_length;
    r.out = value;
    rc = with_retries(e, &r);
    /* rc >= 0 is the stored length; the value is copied (at most value_length bytes) either way. */
    if (rc >= 0 && read_returns_zero) rc = 0;
  }
  psiskv_entry_end(e);
  return rc;
}

PSISKV_API int kv_delete(int kv_descriptor, uint32_t key) {
  struct request r;
  int rc;
  struct kv_entry *e = psiskv_entry_begin(kv_descriptor);
  if (e == NULL) return -1;
  memset(&r, 0, sizeof r);
  r.opcode = PSISKV_OP_DELETE;
  r.key = key;
  r.id = e->next_request_id++;
  rc = with_retries(e, &r);
  psiskv_entry_end(e);
  return rc;
}
