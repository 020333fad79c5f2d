/*
 * psiskv_lib.c - the five functions of psiskv.h and the descriptor table behind them.
 *
 * Descriptors. A descriptor is an index into the table below (1, 2, ...), never a socket fd, so
 * that a descriptor can outlive its connection: the entry keeps what reconnecting needs (the Front
 * Server's host and port, the session id, the next request id), and the fault-tolerance work will
 * reconnect through the Front Server, resume the session (SESSION with the kept id) and retry the
 * interrupted request with its original id, all behind the same descriptor. Today a broken
 * connection leaves the descriptor open but unusable (ENOTCONN) until kv_close.
 *
 * Threads and locks:
 *   table_lock   guards table[], table_slots, table_cursor and every entry's refs. Held only for
 *                a look-up, an insert or a removal; never while doing I/O.
 *   entry->lock  serialises the requests of one descriptor (one request and its response on the
 *                connection at a time) and guards the entry's connection state: fd, session_id,
 *                max_value_bytes, next_request_id. Held for a whole request, I/O included.
 *   Lock order: entry->lock, then table_lock (release() may run inside a request's error path);
 *   never the other way round.
 * Lifetime. An entry is reference counted: the table holds one reference while the descriptor is
 * open, and each call in progress holds one. kv_close removes the entry from the table (new calls
 * fail with EBADF at once), marks it closed (calls queued on its mutex then fail with EBADF) and
 * drops the table's reference; whoever drops the last reference closes the socket and frees the
 * entry. So a call racing kv_close on another thread never touches freed memory nor a reused fd.
 * Request ids: next_request_id starts at 1 and every request (HELLO, SESSION, PUT, GET, DELETE)
 * takes the next one under entry->lock, so ids are strictly increasing per descriptor
 * (PROTOCOL.md 3.2).
 */
#define _POSIX_C_SOURCE 200809L

#include "psiskv.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "psiskv_net.h"
#include "psiskv_proto.h"

/* Slots of the table when it is first needed; it doubles when full. */
#define TABLE_INITIAL_SLOTS 16
/* Most slots the table grows to: kv_connect fails with EMFILE beyond (descriptor 1..max-1). */
#define TABLE_MAX_SLOTS 65536
/* Back-off between HELLOs while the Front Server answers UNAVAILABLE (PROTOCOL.md 6.1 says a
 * client SHOULD retry): starts here and doubles up to the maximum, within the connect budget. */
#define HELLO_RETRY_FIRST_MS 10
#define HELLO_RETRY_MAX_MS 200

struct kv_entry {
  pthread_mutex_t lock;     /* serialises requests; guards the next four fields */
  int fd;                   /* data connection, -1 when broken */
  uint64_t session_id;      /* PROTOCOL.md 6.2, non-zero once connected; resumed on reconnect */
  uint32_t max_value_bytes; /* the Data Server's maximum value length (SESSION response) */
  uint64_t next_request_id; /* PROTOCOL.md 3.2: strictly increasing per descriptor */
  char *front_host;         /* the Front Server as the caller named it (re-resolved when */
  int front_port;           /*   reconnecting); both immutable after kv_connect */
  struct sockaddr_in front; /* front_host resolved by kv_connect */
  unsigned refs;            /* guarded by table_lock */
  int closed;               /* set once by kv_close; read and written with __atomic builtins */
};

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kv_entry **table; /* table[d] for descriptor d >= 1; table[0] is never used */
static int table_slots;         /* allocated length of table */
static int table_cursor;        /* where the search for a free slot starts (delays reuse) */

/*
 * fork(): the child gets a copy of the table with one thread, so a table_lock held by another
 * thread of the parent at the fork would never be released in the child. The handlers below hold
 * table_lock across fork() so that the child's copy is unlocked and the child may call
 * kv_connect. (The child must not use the parent's descriptors: their sockets are shared.)
 */
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void table_lock_acquire(void) { pthread_mutex_lock(&table_lock); }
static void table_lock_release(void) { pthread_mutex_unlock(&table_lock); }
static void register_atfork(void) {
  pthread_atfork(table_lock_acquire, table_lock_release, table_lock_release);
}

/* ---- entry lifetime ---------------------------------------------------------------------- */

/* Closes the entry's connection and frees it. Keeps errno (it runs on error paths). */
static void entry_free(struct kv_entry *e) {
  int saved = errno;
  psiskv_net_close(e->fd);
  pthread_mutex_destroy(&e->lock);
  free(e->front_host);
  free(e);
  errno = saved;
}

/* Drops one reference; the last one frees the entry. Keeps errno. Caller holds no table_lock. */
static void release(struct kv_entry *e) {
  unsigned left;
  int saved = errno;
  pthread_mutex_lock(&table_lock);
  left = --e->refs;
  pthread_mutex_unlock(&table_lock);
  if (left == 0) entry_free(e);
  errno = saved;
}

/* The entry of an open descriptor, with a reference taken; NULL and EBADF if there is none. */
static struct kv_entry *acquire(int d) {
  struct kv_entry *e = NULL;
  pthread_mutex_lock(&table_lock);
  if (d > 0 && d < table_slots && table[d] != NULL) {
    e = table[d];
    e->refs++;
  }
  pthread_mutex_unlock(&table_lock);
  if (e == NULL) errno = EBADF;
  return e;
}

/* Puts e into a free slot and returns its descriptor (the table's reference is e's first), or -1
 * with ENOMEM or EMFILE. Slots are searched from the cursor round the table, so a number just
 * closed is issued again only after every other free slot. */
static int table_insert(struct kv_entry *e) {
  int d = -1;
  int i;
  pthread_mutex_lock(&table_lock);
  for (i = 0; i < table_slots - 1 && d < 0; i++) {
    int slot = 1 + (table_cursor + i) % (table_slots - 1);
    if (table[slot] == NULL) d = slot;
  }
  if (d < 0) {
    int grown = table_slots == 0 ? TABLE_INITIAL_SLOTS : table_slots * 2;
    struct kv_entry **t;
    if (grown > TABLE_MAX_SLOTS) {
      pthread_mutex_unlock(&table_lock);
      errno = EMFILE;
      return -1;
    }
    t = (struct kv_entry **)realloc(table, (size_t)grown * sizeof *t);
    if (t == NULL) {
      pthread_mutex_unlock(&table_lock);
      errno = ENOMEM;
      return -1;
    }
    memset(t + table_slots, 0, (size_t)(grown - table_slots) * sizeof *t);
    d = table_slots == 0 ? 1 : table_slots;
    table = t;
    table_slots = grown;
  }
  table[d] = e;
  e->refs = 1;
  table_cursor = d; /* next search starts just after d */
  pthread_mutex_unlock(&table_lock);
  return d;
}

/*
 * Starts a request on descriptor d: takes a reference and the entry's mutex. Returns the entry,
 * or NULL with errno EBADF (bad or closed descriptor) or ENOTCONN (connection broken earlier).
 */
static struct kv_entry *begin(int d) {
  struct kv_entry *e = acquire(d);
  if (e == NULL) return NULL;
  pthread_mutex_lock(&e->lock);
  if (__atomic_load_n(&e->closed, __ATOMIC_ACQUIRE)) {
    errno = EBADF; /* kv_close ran while this call waited for the mutex */
  } else if (e->fd < 0) {
    errno = ENOTCONN; /* the fault-tolerance work reconnects here instead */
  } else {
    return e;
  }
  pthread_mutex_unlock(&e->lock);
  release(e);
  return NULL;
}

/* Ends a request started by begin(). Keeps errno. */
static void end(struct kv_entry *e) {
  pthread_mutex_unlock(&e->lock);
  release(e);
}

/* The connection is no longer in step with the server: close it and fail with err. Caller holds
 * e->lock. */
static void drop(struct kv_entry *e, int err) {
  psiskv_net_close(e->fd);
  e->fd = -1;
  errno = err;
}

/* ---- one request ------------------------------------------------------------------------- */

/* errno for an error status of PROTOCOL.md 5. */
static int status_errno(uint8_t status) {
  switch (status) {
    case PSISKV_ST_TOO_LARGE: return EMSGSIZE;
    case PSISKV_ST_SERVER_ERROR: return EIO;
    case PSISKV_ST_UNAVAILABLE: return EAGAIN;
    default: return EPROTO; /* BAD_REQUEST, UNKNOWN_OPCODE, UNSUPPORTED_VERSION, NO_SESSION */
  }
}

/*
 * Handles an error status: sets errno and returns -1. After a MUST-rule error the server closes
 * the connection (PROTOCOL.md 8), so it is dropped; SERVER_ERROR and UNAVAILABLE are answers to a
 * well-formed request and leave the connection in step, so it is kept.
 */
static int error_status(struct kv_entry *e, uint8_t status) {
  if (status == PSISKV_ST_SERVER_ERROR || status == PSISKV_ST_UNAVAILABLE) {
    errno = status_errno(status);
  } else {
    drop(e, status_errno(status));
  }
  return -1;
}

/*
 * Sends a request (the encoded prefix, then value_len bytes of value) on fd and reads the
 * response header into *h, checked against the request (psiskv_check_response). Returns 0, or -1
 * with errno set: an I/O error (the caller drops the connection) or EPROTO (a response that
 * breaks the protocol). No body is read.
 */
static int exchange(int fd, const uint8_t *prefix, size_t prefix_len, const void *value,
                    uint32_t value_len, uint32_t key, uint64_t id, uint32_t capacity,
                    int64_t deadline_ms, psiskv_header *h) {
  struct iovec iov[2];
  uint8_t buf[PSISKV_HEADER_BYTES];
  int n = 1;
  iov[0].iov_base = (void *)prefix; /* only read by sendmsg */
  iov[0].iov_len = prefix_len;
  if (value_len > 0) {
    iov[1].iov_base = (void *)value;
    iov[1].iov_len = value_len;
    n = 2;
  }
  if (psiskv_net_writev_fully(fd, iov, n) < 0) return -1;
  if (psiskv_net_read_fully(fd, buf, sizeof buf, deadline_ms) < 0) return -1;
  psiskv_header_decode(buf, h);
  if (psiskv_check_response(h, prefix[PSISKV_OFF_OPCODE], key, id, capacity) != PSISKV_CHECK_OK) {
    errno = EPROTO;
    return -1;
  }
  return 0;
}

/* exchange() on the entry's data connection, dropping the connection on failure. */
static int entry_exchange(struct kv_entry *e, const uint8_t *prefix, size_t prefix_len,
                          const void *value, uint32_t value_len, uint32_t key, uint64_t id,
                          uint32_t capacity, psiskv_header *h) {
  if (exchange(e->fd, prefix, prefix_len, value, value_len, key, id, capacity,
               PSISKV_NO_DEADLINE, h) < 0) {
    drop(e, errno);
    return -1;
  }
  return 0;
}

/* ---- connection set-up (PROTOCOL.md 2) --------------------------------------------------- */

/*
 * Asks the Front Server where the Data Server is (HELLO, 6.1), retrying while it answers
 * UNAVAILABLE, until the deadline. On success *data holds the Data Server's address: 0.0.0.0 in
 * the answer means the Front Server's own host.
 */
static int ask_front(struct kv_entry *e, int64_t deadline_ms, struct sockaddr_in *data) {
  int64_t backoff_ms = HELLO_RETRY_FIRST_MS;
  for (;;) {
    uint8_t buf[PSISKV_MAX_FIXED_BYTES];
    psiskv_header h;
    uint32_t ipv4;
    uint16_t port;
    uint64_t id = e->next_request_id++;
    size_t n = psiskv_encode_hello(buf, id);
    int fd = psiskv_net_connect(&e->front, deadline_ms);
    if (fd < 0) return -1;
    if (exchange(fd, buf, n, NULL, 0, 0, id, 0, deadline_ms, &h) < 0) {
      psiskv_net_close(fd);
      return -1;
    }
    if (h.flags_or_status == PSISKV_ST_UNAVAILABLE) {
      /* No Data Server ready yet: try again until the budget is spent. */
      int64_t left = deadline_ms - psiskv_net_now_ms();
      psiskv_net_close(fd);
      if (left <= backoff_ms) {
        errno = ETIMEDOUT;
        return -1;
      }
      psiskv_net_sleep_ms(backoff_ms);
      backoff_ms = backoff_ms * 2 > HELLO_RETRY_MAX_MS ? HELLO_RETRY_MAX_MS : backoff_ms * 2;
      continue;
    }
    if (h.flags_or_status != PSISKV_ST_OK) {
      psiskv_net_close(fd);
      errno = status_errno(h.flags_or_status);
      return -1;
    }
    if (psiskv_net_read_fully(fd, buf, PSISKV_HELLO_RESPONSE_BODY_BYTES, deadline_ms) < 0) {
      psiskv_net_close(fd);
      return -1;
    }
    psiskv_net_close(fd); /* 6.1: the client closes the front connection after the response */
    psiskv_decode_hello_ok(buf, &ipv4, &port);
    if (port == 0) {
      errno = EPROTO;
      return -1;
    }
    *data = e->front;
    if (ipv4 != PSISKV_HELLO_SAME_HOST) data->sin_addr.s_addr = htonl(ipv4);
    data->sin_port = htons(port);
    return 0;
  }
}

/*
 * Opens the entry's data connection: HELLO at the Front Server, then connect to the Data Server
 * and SESSION with e->session_id (0 asks for a new session; a kept id resumes it, which is what
 * reconnecting will do). All within the deadline. Caller holds e->lock or owns e alone.
 */
static int entry_connect(struct kv_entry *e, int64_t deadline_ms) {
  struct sockaddr_in data;
  uint8_t buf[PSISKV_MAX_FIXED_BYTES];
  psiskv_header h;
  uint64_t id;
  uint64_t session_id;
  uint32_t max_value_bytes;
  size_t n;
  int fd;
  if (ask_front(e, deadline_ms, &data) < 0) return -1;
  fd = psiskv_net_connect(&data, deadline_ms);
  if (fd < 0) return -1;
  id = e->next_request_id++;
  n = psiskv_encode_session(buf, id, e->session_id);
  if (exchange(fd, buf, n, NULL, 0, 0, id, 0, deadline_ms, &h) < 0) goto fail;
  if (h.flags_or_status != PSISKV_ST_OK) {
    errno = status_errno(h.flags_or_status);
    goto fail;
  }
  if (psiskv_net_read_fully(fd, buf, PSISKV_SESSION_RESPONSE_BODY_BYTES, deadline_ms) < 0) {
    goto fail;
  }
  psiskv_decode_session_ok(buf, &session_id, &max_value_bytes);
  if (session_id == 0) { /* 6.2: a session id is non-zero */
    errno = EPROTO;
    goto fail;
  }
  e->fd = fd;
  e->session_id = session_id;
  e->max_value_bytes = max_value_bytes;
  return 0;
fail:
  psiskv_net_close(fd);
  return -1;
}

/* ---- the API ----------------------------------------------------------------------------- */

PSISKV_API int kv_connect(const char *kv_server_ip, int kv_server_port) {
  int64_t deadline_ms = psiskv_net_now_ms() + psiskv_net_connect_timeout_ms();
  struct kv_entry *e;
  int d;
  if (kv_server_ip == NULL || kv_server_port <= 0 || kv_server_port > 65535) {
    errno = EINVAL;
    return -1;
  }
  pthread_once(&atfork_once, register_atfork);
  e = (struct kv_entry *)calloc(1, sizeof *e);
  if (e == NULL) return -1; /* ENOMEM */
  e->fd = -1;
  e->next_request_id = 1;
  e->session_id = PSISKV_SESSION_NEW;
  if (pthread_mutex_init(&e->lock, NULL) != 0) {
    free(e);
    errno = ENOMEM;
    return -1;
  }
  e->front_port = kv_server_port;
  e->front_host = (char *)malloc(strlen(kv_server_ip) + 1);
  if (e->front_host == NULL) {
    entry_free(e); /* ENOMEM */
    return -1;
  }
  strcpy(e->front_host, kv_server_ip);
  if (psiskv_net_resolve_ipv4(e->front_host, e->front_port, &e->front) < 0 ||
      entry_connect(e, deadline_ms) < 0 || (d = table_insert(e)) < 0) {
    entry_free(e);
    return -1;
  }
  return d;
}

PSISKV_API void kv_close(int kv_descriptor) {
  struct kv_entry *e = NULL;
  int saved = errno; /* a void function: leave the caller's errno as it was */
  pthread_mutex_lock(&table_lock);
  if (kv_descriptor > 0 && kv_descriptor < table_slots) {
    e = table[kv_descriptor];
    table[kv_descriptor] = NULL;
  }
  pthread_mutex_unlock(&table_lock);
  if (e != NULL) {
    __atomic_store_n(&e->closed, 1, __ATOMIC_RELEASE);
    release(e); /* the table's reference; frees now unless a call is in progress */
  }
  errno = saved;
}

PSISKV_API int kv_write(int kv_descriptor, uint32_t key, const char *value, uint32_t value_length,
                        int kv_overwrite) {
  uint8_t buf[PSISKV_MAX_FIXED_BYTES];
  psiskv_header h;
  uint64_t id;
  size_t n;
  int rc = -1;
  struct kv_entry *e = begin(kv_descriptor);
  if (e == NULL) return -1;
  if (value == NULL && value_length > 0) {
    errno = EINVAL;
    goto out;
  }
  if (value_length > e->max_value_bytes) {
    errno = EMSGSIZE; /* 6.2: refused locally, nothing sent */
    goto out;
  }
  id = e->next_request_id++;
  n = psiskv_encode_put_header(buf, key, id, kv_overwrite != 0, value_length);
  if (entry_exchange(e, buf, n, value, value_length, key, id, 0, &h) < 0) goto out;
  switch (h.flags_or_status) { /* 5.1 */
    case PSISKV_ST_OK:
      rc = 0;
      break;
    case PSISKV_ST_KEY_EXISTS:
      if (kv_overwrite != 0) { /* an overwriting PUT never finds the key "existing" */
        drop(e, EPROTO);
        break;
      }
      errno = EEXIST;
      rc = -2;
      break;
    default:
      rc = error_status(e, h.flags_or_status);
  }
out:
  end(e);
  return rc;
}

PSISKV_API int kv_read(int kv_descriptor, uint32_t key, char *value, uint32_t value_length) {
  uint8_t buf[PSISKV_MAX_FIXED_BYTES];
  psiskv_header h;
  uint32_t stored;
  uint64_t id;
  size_t n;
  int rc = -1;
  struct kv_entry *e = begin(kv_descriptor);
  if (e == NULL) return -1;
  if (value == NULL && value_length > 0) {
    errno = EINVAL;
    goto out;
  }
  id = e->next_request_id++;
  /* 6.5: capacity = value_length, so the server sends at most what the caller's buffer holds. */
  n = psiskv_encode_get(buf, key, id, value_length);
  if (entry_exchange(e, buf, n, NULL, 0, key, id, value_length, &h) < 0) goto out;
  switch (h.flags_or_status) { /* 5.1 */
    case PSISKV_ST_OK:
      if (psiskv_net_read_fully(e->fd, buf, PSISKV_GET_RESPONSE_PREFIX_BYTES,
                                PSISKV_NO_DEADLINE) < 0) {
        drop(e, errno);
        break;
      }
      stored = psiskv_decode_get_ok_stored_length(buf);
      /* Checked before any value byte is read: the body is exactly 4 + min(capacity, stored),
       * so at most value_length bytes land in value, whatever the server claims. */
      if (psiskv_check_get_ok_body(h.body_length, value_length, stored) != PSISKV_CHECK_OK ||
          stored > (uint32_t)INT_MAX) {
        drop(e, EPROTO);
        break;
      }
      if (psiskv_net_read_fully(e->fd, value, h.body_length - PSISKV_GET_RESPONSE_PREFIX_BYTES,
                                PSISKV_NO_DEADLINE) < 0) {
        drop(e, errno);
        break;
      }
      rc = (int)stored;
      break;
    case PSISKV_ST_NOT_FOUND:
      errno = ENOENT;
      rc = -2;
      break;
    default:
      rc = error_status(e, h.flags_or_status);
  }
out:
  end(e);
  return rc;
}

PSISKV_API int kv_delete(int kv_descriptor, uint32_t key) {
  uint8_t buf[PSISKV_MAX_FIXED_BYTES];
  psiskv_header h;
  uint64_t id;
  size_t n;
  int rc = -1;
  struct kv_entry *e = begin(kv_descriptor);
  if (e == NULL) return -1;
  id = e->next_request_id++;
  n = psiskv_encode_delete(buf, key, id);
  if (entry_exchange(e, buf, n, NULL, 0, key, id, 0, &h) < 0) goto out;
  switch (h.flags_or_status) { /* 5.1 */
    case PSISKV_ST_OK:
      rc = 0;
      break;
    case PSISKV_ST_NOT_FOUND:
      errno = ENOENT;
      break;
    default:
      rc = error_status(e, h.flags_or_status);
  }
out:
  end(e);
  return rc;
}
