/*
 * psiskv_lib.c - the five functions of psiskv.h and the descriptor table behind them.
 *
 * Descriptors. A descriptor is a file-descriptor number that the library owns: the socket of the
 * descriptor's data connection, at a number >= DESCRIPTOR_LOWEST (never 0, 1 or 2, which a program
 * may close and reopen as its standard streams). The number stays the same for the descriptor's
 * life: a reconnection connects a new socket and puts it at the same number with one dup3
 * (psiskv_net_replace), which closes the old one, so the number is never free meanwhile. Between
 * connections the number holds the dead socket of the last one (shut down, so the server has seen
 * its end) or a placeholder, an unconnected socket (after a fork, below). So close(), poll(),
 * select() and the process's file limit see a socket, as with any socket of the program. The
 * table is indexed by that number; an entry keeps what reconnecting needs (the Front Server's
 * address, the session id and secret, the next request id).
 * A descriptor the program closed with close() instead of kv_close(), or whose number now holds
 * another file, is no longer the library's: every call checks the socket's identity (fstat st_dev
 * and st_ino, recorded whenever a socket is put at the number) and fails with EBADF on a
 * mismatch, and the entry is then "lost": it never touches the number again (no send, no
 * shutdown, no close), since the number belongs to someone else. Bytes move with send and recv
 * only, so a number reused by a file that is not a socket fails with ENOTSOCK even in the middle
 * of a call (the program closed the descriptor under a call of another thread: its bug, as with
 * any fd); the identity check catches reuse by another socket between calls.
 *
 * fork(). A child process inherits the parent's numbers, and with them the parent's data
 * connections and sessions; a child that went on using them would interleave its requests with
 * the parent's on one socket and in one session (the same request ids: writes answered OK that
 * were never stored, issue finding 5). So a descriptor belongs to the process that made its
 * connection. An atfork child handler (registered at the first kv_connect) increments
 * process_generation; each entry records the generation its socket was made in. The first call of
 * the child on an inherited descriptor (begin() sees the older generation) adopts it: puts a
 * placeholder at the number (a close of the child's copy of the parent's socket: never a
 * shutdown, which would cut the parent's connection), forgets the parent's session id and secret
 * (SESSION with id 0 and a zero secret asks for a session of its own) and connects anew, putting
 * the new connection at the same number. The parent's descriptors stay the parent's. Nothing is
 * done at the fork itself, so a program that forks and execs pays for no descriptor.
 *
 * Reconnection (PROTOCOL.md 12). When a request's data connection breaks (any I/O error while
 * sending or receiving, end of stream) or the request is answered UNAVAILABLE, perform() drops
 * the connection and reconnect() makes a new one: HELLO at the Front Server the descriptor was
 * connected to, connect to the Data Server it names, SESSION with the descriptor's session id and
 * secret (resume; the answer must echo both, else EPROTO). The interrupted request is then sent
 * again with the SAME request id, so the Data Server answers a write it had already applied with
 * the stored result (exactly once, 12.5). Attempts are spaced by a back-off of
 * RETRY_BACKOFF_FIRST_MS doubling to RETRY_BACKOFF_MAX_MS; the call fails (-1, ETIMEDOUT) once its
 * retry deadline has passed: PSISKV_RETRY_TIMEOUT_MS (environment, read once, psiskv_env.h) after
 * the failure, default PSISKV_DEFAULT_RETRY_TIMEOUT_MS; 0 disables reconnection. A protocol
 * violation or an error status other than UNAVAILABLE (FORBIDDEN among them: the session is
 * someone else's) fails the call at once. Each call has its own deadline: a descriptor whose call
 * gave up tries again on its next call. One attempt of the set-up (HELLO, connect, SESSION) is
 * bounded by the connect budget (PSISKV_CONNECT_TIMEOUT_MS) and by the retry deadline; a resent
 * request, like any request, waits for its answer as long as the server takes.
 *
 * Threads and locks:
 *   table_lock       guards table[], table_slots and every entry's refs. Held only for a look-up,
 *                    an insert or a removal (and across fork(), below); never while doing I/O.
 *   entry->lock      serialises the calls of one descriptor (one request and its response on the
 *                    connection at a time, reconnection and back-off included) and guards the
 *                    entry's connection state: connected, in, session_id, secret,
 *                    max_value_bytes, next_request_id. Held for a whole call, I/O included.
 *   entry->close_lock  guards the entry's sockets against kv_close and fork(): setup_fd, d's
 *                    identity and generation change only under it (and entry->lock), a socket of
 *                    the entry is closed or replaced only under it, and kv_close checks d's
 *                    identity and shuts the entry's sockets down under it, so kv_close never
 *                    touches an fd number that is not the entry's. close_cond (with it) wakes a
 *                    back-off wait when kv_close runs. Held only for a few system calls that
 *                    never block (close, dup3, fstat, shutdown), or in pthread_cond_timedwait.
 *   Lock order: entry->lock, then table_lock, then close_lock; never the reverse.
 *   fork(): the prepare handler takes table_lock and every entry's close_lock (brief holds, so
 *   fork waits for no I/O) and the parent and child handlers release them: the child's copies of
 *   the table and of every socket field are consistent and unlocked. An entry->lock may be held
 *   across the fork by a thread of the parent that is blocked in a call (for as long as a server
 *   takes to answer, so the prepare handler cannot wait for it); the child, which has no such
 *   thread, reinitialises every entry->lock and close_cond in its handler, and adoption resets
 *   the connection state those guard. (POSIX allows only async-signal-safe calls in the child of
 *   a multithreaded fork until exec; reinitialising the library's own mutexes in the atfork child
 *   handler, which is what pthread_atfork exists for, is what glibc supports, and a child that
 *   uses the library makes many other calls after that anyway: connect, malloc.) Calls in
 *   progress at the fork exist only in the parent: the child's handler sets each table entry's
 *   refs to the table's one. An entry that another thread of the parent had already taken out of
 *   the table (kv_close under a call) or not yet put in (kv_connect in progress) is unreachable in
 *   the child: its memory and its close-on-exec sockets stay until the child execs or exits.
 * Lifetime. An entry is reference counted: the table holds one reference while the descriptor is
 * open, and each call in progress holds one. kv_close removes the entry from the table (new calls
 * fail with EBADF at once), marks it closed (calls queued on its mutex then fail with EBADF),
 * shuts its sockets down (a call blocked on one wakes up; a call in back-off wakes up; either
 * returns -1 EBADF) and drops the table's reference; whoever drops the last reference closes the
 * number and frees the entry. So a call racing kv_close never touches freed memory nor a reused
 * number (the number stays open until that call has returned), and kv_close never blocks.
 * Request ids: u64, compared only for equality here (unsigned, PROTOCOL.md 3.2). next_request_id
 * starts at 1; every HELLO, SESSION and every call of kv_write, kv_read and kv_delete takes the
 * next one under entry->lock, so ids are strictly increasing per descriptor, except that a
 * request resent after a reconnection keeps its id (PROTOCOL.md 3.2). A child's new session goes
 * on from the inherited counter: increasing is all a session needs.
 *
 * System calls of a request. A request leaves in one call: a GET, a DELETE and a PUT of up to
 * PUT_COPIED_MAX_VALUE_BYTES are encoded into one buffer and sent with send; a longer PUT goes
 * with sendmsg, header and the caller's value as two iovecs. Its response comes through the
 * entry's receive buffer (in, psiskv_net.h): one recv takes the header, a GET's stored length
 * and up to a buffer's worth of value; the rest of a longer value is received straight into the
 * caller's buffer. One request is in flight at a time and a server sends nothing unasked
 * (PROTOCOL.md 2), so a byte left in the buffer after a complete response is a protocol
 * violation: the call fails with EPROTO and the connection is dropped, as for any other. Bytes
 * that come after a response in a later segment are not in the buffer yet; they are read as the
 * start of the next response, whose header then does not match (EPROTO too). The buffer is
 * emptied whenever the socket changes (each set-up socket, each drop). Each call also makes one
 * fstat, the identity check above: about 0.26 us on the 2-core VM of DESIGN.md 9, some 3% of the
 * client's CPU per operation (6.36 against 6.15 us, medians of 15 interleaved runs of
 * client_cost, 1 thread, against c-test-app's fake server), which is what it costs to never send
 * a request into another socket of the program.
 */
#define _POSIX_C_SOURCE 200809L

#include "psiskv.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "psiskv_env.h"
#include "psiskv_net.h"
#include "psiskv_proto.h"

/* The lowest number a descriptor gets: above stdin, stdout and stderr, so that a program that
 * closes one of those and opens a file to take its place never gets a descriptor's socket. */
#define DESCRIPTOR_LOWEST 3
/* Slots of the table when it is first needed; it grows (doubling, or to the number it must hold)
 * as descriptors with higher numbers come. The process's file limit bounds it. */
#define TABLE_INITIAL_SLOTS 64
/* PROTOCOL.md 12.3: back-off between reconnection attempts, first wait and the most it grows
 * to (doubling). Also between kv_connect's attempts while the Front Server answers UNAVAILABLE. */
#define RETRY_BACKOFF_FIRST_MS 50
#define RETRY_BACKOFF_MAX_MS 1000
/* A PUT whose value is at most this long is copied behind its header and sent from one buffer
 * (send); a longer one goes as two iovecs (sendmsg), header and the caller's value, without a
 * copy. Either way one call. A copy of at most 1 KiB is cheap next to the call, and the buffer
 * it goes to is on the stack, which the bound keeps small. */
#define PUT_COPIED_MAX_VALUE_BYTES 1024

struct kv_entry {
  /* Set by kv_connect before the entry is published, then fixed. */
  int d;                    /* the descriptor: the fd number this entry owns; -1 before */
  char *front_host;         /* the Front Server as the caller named it, and its port */
  int front_port;
  struct sockaddr_in front; /* front_host resolved once by kv_connect; reconnection uses this
                               (a name look-up could block without a deadline) */
  /* Guarded by lock. */
  pthread_mutex_t lock;     /* serialises calls */
  int connected;            /* d holds a data connection in step with the server, with a session */
  psiskv_net_reader in;     /* receive buffer of the socket being read (setup_fd, then d);
                               empty between responses */
  uint64_t session_id;      /* PROTOCOL.md 6.2, non-zero once connected; resumed on reconnect */
  uint8_t secret[PSISKV_SESSION_SECRET_BYTES]; /* the session's secret, presented to resume */
  uint32_t max_value_bytes; /* the Data Server's maximum value length (SESSION response) */
  uint64_t next_request_id; /* PROTOCOL.md 3.2: strictly increasing per descriptor */
  /* Guarded by close_lock; changed under lock too, so a call reads them under lock alone. */
  pthread_mutex_t close_lock; /* see the comment at the top */
  pthread_cond_t close_cond;  /* broadcast by kv_close; waits use CLOCK_MONOTONIC */
  int setup_fd;             /* socket of a set-up step in progress, else -1 */
  psiskv_net_identity identity; /* of the socket at d, recorded whenever one is put there */
  unsigned generation;      /* process_generation when the socket at d was put there */
  /* Guarded by table_lock. */
  unsigned refs;
  /* Set once under close_lock; read with __atomic builtins. */
  int closed;               /* kv_close ran */
  int lost;                 /* d is no longer this entry's (see the comment at the top) */
};

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kv_entry **table; /* table[d] for descriptor d; NULL where there is none */
static int table_slots;         /* allocated length of table */

/* PSISKV_RETRY_TIMEOUT_MS as read by library_init; written once, before any descriptor exists. */
static int64_t retry_timeout_ms;

/* Whether PSISKV_READ_RETURNS is "zero", as read by library_init; written once, before any
 * descriptor exists (kv_read needs one, so it always sees the value read). */
static int read_returns_zero;

/* How many forks the library has seen on the way to this process (the atfork child handler
 * increments it; nothing else writes it, and the child then has a single thread). */
static unsigned process_generation;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

/* A condition variable that waits on CLOCK_MONOTONIC. 0 or an error number. */
static int cond_init_monotonic(pthread_cond_t *c) {
  pthread_condattr_t ca;
  int rc = pthread_condattr_init(&ca);
  if (rc != 0) return rc;
  rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  if (rc == 0) rc = pthread_cond_init(c, &ca);
  pthread_condattr_destroy(&ca);
  return rc;
}

/* ---- fork (see the comment at the top) --------------------------------------------------- */

static void fork_prepare(void) {
  int i;
  pthread_mutex_lock(&table_lock);
  for (i = 0; i < table_slots; i++) {
    if (table[i] != NULL) pthread_mutex_lock(&table[i]->close_lock);
  }
}

static void fork_parent(void) {
  int i;
  for (i = 0; i < table_slots; i++) {
    if (table[i] != NULL) pthread_mutex_unlock(&table[i]->close_lock);
  }
  pthread_mutex_unlock(&table_lock);
}

static void fork_child(void) {
  int i;
  process_generation++; /* every socket of every entry is now the parent's */
  for (i = 0; i < table_slots; i++) {
    struct kv_entry *e = table[i];
    if (e == NULL) continue;
    /* Held, perhaps, by a thread of the parent that is blocked in a call; no such thread here. */
    pthread_mutex_init(&e->lock, NULL);
    cond_init_monotonic(&e->close_cond); /* its waiters, if any, were threads of the parent */
    e->refs = 1;                         /* the table's; the calls in progress are the parent's */
    pthread_mutex_unlock(&e->close_lock);
  }
  pthread_mutex_unlock(&table_lock);
}

/* Runs once, from the first kv_connect (no other call can come first: it needs a descriptor). */
static void library_init(void) {
  int saved = errno;
  pthread_atfork(fork_prepare, fork_parent, fork_child);
  retry_timeout_ms = psiskv_env_retry_timeout_ms();
  read_returns_zero = psiskv_env_read_returns_zero();
  errno = saved;
}

/* ---- entry lifetime ---------------------------------------------------------------------- */

/* A new entry for the Front Server host:port, not connected, or NULL (ENOMEM). */
static struct kv_entry *entry_new(const char *host, int port) {
  struct kv_entry *e = (struct kv_entry *)calloc(1, sizeof *e);
  if (e == NULL) return NULL;
  e->front_host = (char *)malloc(strlen(host) + 1);
  if (e->front_host == NULL) {
    free(e);
    return NULL;
  }
  strcpy(e->front_host, host);
  if (psiskv_net_reader_init(&e->in) < 0) {
    free(e->front_host);
    free(e);
    return NULL; /* ENOMEM */
  }
  e->front_port = port;
  e->d = -1;
  e->setup_fd = -1;
  e->next_request_id = 1;
  e->session_id = PSISKV_SESSION_NEW; /* and a zero secret (calloc) */
  e->generation = process_generation;
  if (cond_init_monotonic(&e->close_cond) != 0) goto fail_mem;
  if (pthread_mutex_init(&e->close_lock, NULL) != 0) {
    pthread_cond_destroy(&e->close_cond);
    goto fail_mem;
  }
  if (pthread_mutex_init(&e->lock, NULL) != 0) {
    pthread_mutex_destroy(&e->close_lock);
    pthread_cond_destroy(&e->close_cond);
    goto fail_mem;
  }
  return e;
fail_mem:
  psiskv_net_reader_free(&e->in);
  free(e->front_host);
  free(e);
  errno = ENOMEM;
  return NULL;
}

static int is_closed(struct kv_entry *e) { return __atomic_load_n(&e->closed, __ATOMIC_ACQUIRE); }
static int is_lost(struct kv_entry *e) { return __atomic_load_n(&e->lost, __ATOMIC_ACQUIRE); }

/* Closes the entry's sockets (the number d only if it is still the entry's) and frees it. Keeps
 * errno (it runs on error paths). Caller holds the last reference, or owns e alone. */
static void entry_free(struct kv_entry *e) {
  int saved = errno;
  if (!is_lost(e)) psiskv_net_close(e->d);
  psiskv_net_close(e->setup_fd);
  pthread_mutex_destroy(&e->lock);
  pthread_mutex_destroy(&e->close_lock);
  pthread_cond_destroy(&e->close_cond);
  psiskv_net_reader_free(&e->in);
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
  if (d >= 0 && d < table_slots && table[d] != NULL) {
    e = table[d];
    e->refs++;
  }
  pthread_mutex_unlock(&table_lock);
  if (e == NULL) errno = EBADF;
  return e;
}

/* Whether the number d still holds the socket the entry put there (fstat identity). Caller holds
 * e->lock or e->close_lock. */
static int still_ours(struct kv_entry *e) {
  psiskv_net_identity now;
  return psiskv_net_identity_of(e->d, &now) == 0 && psiskv_net_identity_same(&now, &e->identity);
}

/* Marks e lost under its close_lock (it never touches d again). */
static void mark_lost(struct kv_entry *e) {
  pthread_mutex_lock(&e->close_lock);
  __atomic_store_n(&e->lost, 1, __ATOMIC_RELEASE);
  pthread_mutex_unlock(&e->close_lock);
}

/* The program closed e's number, or another file has it now: e is lost and leaves the table (its
 * reference there is dropped; the caller's keeps it alive). Caller holds a reference, no
 * table_lock and no close_lock. */
static void lose(struct kv_entry *e) {
  mark_lost(e);
  pthread_mutex_lock(&table_lock);
  if (e->d >= 0 && e->d < table_slots && table[e->d] == e) {
    table[e->d] = NULL;
    e->refs--; /* not the last: the caller holds one */
  }
  pthread_mutex_unlock(&table_lock);
}

/*
 * Puts e into the table at its number e->d (the table's reference is e's first); -1 with ENOMEM.
 * An entry already there is lost: the program closed its number without kv_close, and the kernel
 * has just handed the number to e's socket.
 */
static int table_insert(struct kv_entry *e) {
  struct kv_entry *stale = NULL;
  pthread_mutex_lock(&table_lock);
  if (e->d >= table_slots) {
    int grown = table_slots < TABLE_INITIAL_SLOTS ? TABLE_INITIAL_SLOTS : table_slots;
    struct kv_entry **t;
    while (grown <= e->d) grown = grown > INT_MAX / 2 ? INT_MAX : grown * 2;
    t = (struct kv_entry **)realloc(table, (size_t)grown * sizeof *t);
    if (t == NULL) {
      pthread_mutex_unlock(&table_lock);
      errno = ENOMEM;
      return -1;
    }
    memset(t + table_slots, 0, (size_t)(grown - table_slots) * sizeof *t);
    table = t;
    table_slots = grown;
  }
  if (table[e->d] != NULL) {
    stale = table[e->d];
    mark_lost(stale); /* table_lock, then close_lock: the lock order */
    if (--stale->refs != 0) stale = NULL; /* a call in progress frees it */
  }
  table[e->d] = e;
  e->refs = 1;
  pthread_mutex_unlock(&table_lock);
  if (stale != NULL) entry_free(stale);
  return 0;
}

/* ---- the entry's sockets (caller holds e->lock, or owns e alone) ------------------------- */

/*
 * The child's first call on a descriptor inherited across fork() (see the comment at the top):
 * a placeholder replaces the child's copy of the parent's socket at d, the child's copy of a
 * set-up socket of the parent is closed, and the parent's session is forgotten; the caller then
 * connects anew. Returns 0, or -1 with errno (EMFILE: no placeholder; the descriptor stays
 * inherited and untouched, and the next call tries again).
 */
static int adopt(struct kv_entry *e) {
  int placeholder = psiskv_net_socket();
  int rc;
  if (placeholder < 0) return -1;
  pthread_mutex_lock(&e->close_lock);
  psiskv_net_close(e->setup_fd); /* a close: the child's copy only */
  e->setup_fd = -1;
  rc = psiskv_net_replace(placeholder, e->d);
  if (rc == 0 && psiskv_net_identity_of(e->d, &e->identity) == 0) {
    e->generation = process_generation;
  } else {
    rc = -1;
  }
  pthread_mutex_unlock(&e->close_lock);
  if (rc < 0) return -1;
  e->connected = 0;
  e->session_id = PSISKV_SESSION_NEW; /* 6.2: a session of the child's own */
  memset(e->secret, 0, sizeof e->secret);
  psiskv_net_reader_reset(&e->in);
  return 0;
}

/*
 * Starts a call on descriptor d: takes a reference and the entry's mutex, checks that d is still
 * the entry's socket, and adopts a descriptor inherited across fork(). Returns the entry, or NULL
 * with errno: EBADF (bad, closed or lost descriptor), or adopt's error.
 */
static struct kv_entry *begin(int d) {
  struct kv_entry *e = acquire(d);
  if (e == NULL) return NULL;
  pthread_mutex_lock(&e->lock);
  if (is_closed(e) || is_lost(e)) {
    errno = EBADF; /* kv_close ran while this call waited for the mutex, or d was found lost */
  } else if (!still_ours(e)) {
    lose(e);
    errno = EBADF;
  } else if (e->generation == process_generation || adopt(e) == 0) {
    return e;
  }
  pthread_mutex_unlock(&e->lock);
  release(e);
  return NULL;
}

/* Ends a call started by begin(). Keeps errno. */
static void end(struct kv_entry *e) {
  pthread_mutex_unlock(&e->lock);
  release(e);
}

/* The connection is no longer in step with the server: shut it down (the server sees its end
 * now, also while a forked child still holds a copy of the socket), forget what its receive
 * buffer holds, and set errno to err. The dead socket keeps the number until the next connection
 * replaces it. Only a connection of this process is ever connected (adopt() comes first). */
static void drop(struct kv_entry *e, int err) {
  psiskv_net_shutdown(e->d);
  e->connected = 0;
  psiskv_net_reader_reset(&e->in);
  errno = err;
}

/* A new socket for a set-up step, published as e->setup_fd so that kv_close can shut it down
 * while this thread blocks on it, with the receive buffer emptied for it; -1 with errno (EBADF
 * if the descriptor was closed). */
static int setup_open(struct kv_entry *e) {
  int fd = psiskv_net_socket();
  psiskv_net_reader_reset(&e->in);
  if (fd < 0) return -1;
  pthread_mutex_lock(&e->close_lock);
  if (is_closed(e)) {
    psiskv_net_close(fd);
    fd = -1;
    errno = EBADF;
  }
  e->setup_fd = fd;
  pthread_mutex_unlock(&e->close_lock);
  return fd;
}

/* Closes the set-up socket (a finished front connection or a failed step). Keeps errno. */
static void setup_close(struct kv_entry *e) {
  pthread_mutex_lock(&e->close_lock);
  psiskv_net_close(e->setup_fd);
  e->setup_fd = -1;
  pthread_mutex_unlock(&e->close_lock);
}

/*
 * The set-up socket becomes the data connection at the descriptor's number. kv_connect's first
 * connection: the socket is moved to a number >= DESCRIPTOR_LOWEST, which becomes e->d. Later
 * ones: put at e->d in one step (psiskv_net_replace), after checking that the number is still
 * the entry's. Returns 0, or -1 with errno: EMFILE, EBADF (kv_close ran, or the number is no
 * longer the entry's: e is then lost and out of the table).
 */
static int setup_keep(struct kv_entry *e) {
  int fd;
  int rc = 0;
  int lost_now = 0;
  pthread_mutex_lock(&e->close_lock);
  fd = e->setup_fd;
  e->setup_fd = -1;
  if (e->d < 0) {
    fd = psiskv_net_move_at_least(fd, DESCRIPTOR_LOWEST);
    if (fd < 0) {
      rc = -1;
    } else {
      e->d = fd;
    }
  } else if (is_closed(e)) {
    psiskv_net_close(fd);
    errno = EBADF;
    rc = -1;
  } else if (is_lost(e) || !still_ours(e)) {
    psiskv_net_close(fd);
    lost_now = !is_lost(e);
    errno = EBADF;
    rc = -1;
  } else {
    rc = psiskv_net_replace(fd, e->d);
  }
  if (rc == 0) {
    rc = psiskv_net_identity_of(e->d, &e->identity);
    e->generation = process_generation;
  }
  pthread_mutex_unlock(&e->close_lock);
  if (lost_now) lose(e);
  if (rc == 0) e->connected = 1;
  return rc;
}

/*
 * Waits ms milliseconds (a back-off), or less if kv_close runs meanwhile. Returns 0, or -1 with
 * EBADF when the descriptor was closed. A condition variable on CLOCK_MONOTONIC: kv_close wakes
 * it at once, a change of the wall clock does not stretch it, and signals do not cut it short.
 */
static int backoff_wait(struct kv_entry *e, int64_t ms) {
  struct timespec until;
  int closed;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += (time_t)(ms / 1000);
  until.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (until.tv_nsec >= 1000000000L) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&e->close_lock);
  while (!is_closed(e)) {
    /* 0: woken (kv_close, or spuriously: look again); ETIMEDOUT: waited enough. Any other error
     * also ends the wait, so that it can never spin. */
    if (pthread_cond_timedwait(&e->close_cond, &e->close_lock, &until) != 0) break;
  }
  closed = is_closed(e);
  pthread_mutex_unlock(&e->close_lock);
  if (closed) errno = EBADF;
  return closed ? -1 : 0;
}

/* ---- one exchange ------------------------------------------------------------------------ */

/* errno for an error status of PROTOCOL.md 5. */
static int status_errno(uint8_t status) {
  switch (status) {
    case PSISKV_ST_TOO_LARGE: return EMSGSIZE;
    case PSISKV_ST_SERVER_ERROR: return EIO;
    case PSISKV_ST_UNAVAILABLE: return EAGAIN;
    case PSISKV_ST_FORBIDDEN: return EACCES; /* 6.2: the session is another client's */
    default: return EPROTO; /* BAD_REQUEST, UNKNOWN_OPCODE, UNSUPPORTED_VERSION, NO_SESSION */
  }
}

/* How an exchange ended. */
enum exchange_result {
  EXCHANGE_OK,    /* *h holds a response header that matches the request */
  EXCHANGE_IO,    /* sending or receiving failed (errno): the connection is broken */
  EXCHANGE_PROTO  /* the response broke the protocol (PROTOCOL.md 8): errno EPROTO */
};

/*
 * Sends a request on fd in one call, request[0..request_len) followed by tail_len bytes of tail
 * (a long PUT's value, sent from the caller's memory as a second iovec; 0 for none), and takes
 * the response header from the receive buffer e->in, checked against the request
 * (psiskv_check_response). The body is left in e->in and on fd for the caller.
 */
static enum exchange_result exchange(struct kv_entry *e, int fd, const uint8_t *request,
                                     size_t request_len, const void *tail, uint32_t tail_len,
                                     uint32_t key, uint64_t id, uint32_t capacity,
                                     int64_t deadline_ms, psiskv_header *h) {
  const uint8_t *raw;
  if (tail_len == 0) {
    if (psiskv_net_write_fully(fd, request, request_len) < 0) return EXCHANGE_IO;
  } else {
    struct iovec iov[2];
    iov[0].iov_base = (void *)request; /* only read by sendmsg */
    iov[0].iov_len = request_len;
    iov[1].iov_base = (void *)tail;
    iov[1].iov_len = tail_len;
    if (psiskv_net_writev_fully(fd, iov, 2) < 0) return EXCHANGE_IO;
  }
  raw = psiskv_net_reader_take(&e->in, fd, PSISKV_HEADER_BYTES, deadline_ms);
  if (raw == NULL) return EXCHANGE_IO;
  psiskv_header_decode(raw, h);
  if (psiskv_check_response(h, request[PSISKV_OFF_OPCODE], key, id, capacity) !=
      PSISKV_CHECK_OK) {
    errno = EPROTO;
    return EXCHANGE_PROTO;
  }
  return EXCHANGE_OK;
}

/* Whether the receive buffer is empty once a response has been read to its end: PROTOCOL.md 2,
 * a server sends nothing unasked (see the comment at the top). */
static int nothing_follows(const struct kv_entry *e) {
  return psiskv_net_reader_unread(&e->in) == 0;
}

/* ---- connection set-up (PROTOCOL.md 2, 6.1, 6.2, 12.2) ----------------------------------- */

/* How one set-up attempt ended (errno says why unless SETUP_OK). */
enum setup_result {
  SETUP_OK,         /* e->d is a data connection with a session (e->connected) */
  SETUP_FRONT_DOWN, /* the Front Server could not be reached or broke off (refused, reset, ...) */
  SETUP_RETRY,      /* worth another attempt: UNAVAILABLE, or the Data Server not reachable */
  SETUP_FAILED      /* not retried: a protocol violation or another error status */
};

/*
 * One attempt to open the entry's data connection, bounded by deadline_ms: HELLO at the Front
 * Server (6.1), connect to the Data Server it names (0.0.0.0: the Front Server's host), SESSION
 * with e->session_id and e->secret (0 and zeros ask for a new session; a kept pair resumes it,
 * 12.2), then the new connection goes to the descriptor's number (setup_keep). Every socket is
 * published in e->setup_fd while this thread may block on it. Caller holds e->lock.
 */
static enum setup_result connect_once(struct kv_entry *e, int64_t deadline_ms) {
  struct sockaddr_in data;
  uint8_t buf[PSISKV_MAX_FIXED_BYTES];
  const uint8_t *body;
  psiskv_header h;
  uint64_t id;
  uint64_t session_id = 0;
  uint8_t secret[PSISKV_SESSION_SECRET_BYTES];
  uint32_t max_value_bytes = 0;
  uint32_t ipv4 = 0;
  uint16_t port = 0;
  size_t n;
  int fd;
  /* HELLO: where is the Data Server? */
  fd = setup_open(e);
  if (fd < 0) return SETUP_FRONT_DOWN;
  if (psiskv_net_connect(fd, &e->front, deadline_ms) < 0) goto front_down;
  id = e->next_request_id++;
  n = psiskv_encode_hello(buf, id);
  switch (exchange(e, fd, buf, n, NULL, 0, 0, id, 0, deadline_ms, &h)) {
    case EXCHANGE_OK: break;
    case EXCHANGE_IO: goto front_down;
    case EXCHANGE_PROTO: goto failed;
  }
  if (h.flags_or_status == PSISKV_ST_OK) {
    body = psiskv_net_reader_take(&e->in, fd, PSISKV_HELLO_RESPONSE_BODY_BYTES, deadline_ms);
    if (body == NULL) goto front_down;
    psiskv_decode_hello_ok(body, &ipv4, &port);
  }
  if (!nothing_follows(e)) {
    errno = EPROTO;
    goto failed;
  }
  if (h.flags_or_status != PSISKV_ST_OK) {
    errno = status_errno(h.flags_or_status);
    setup_close(e);
    /* 6.1: UNAVAILABLE while no Data Server is ready (being relaunched): try again. */
    return h.flags_or_status == PSISKV_ST_UNAVAILABLE ? SETUP_RETRY : SETUP_FAILED;
  }
  setup_close(e); /* 6.1: the client closes the front connection after the response */
  if (port == 0) {
    errno = EPROTO;
    return SETUP_FAILED;
  }
  data = e->front;
  if (ipv4 != PSISKV_HELLO_SAME_HOST) data.sin_addr.s_addr = htonl(ipv4);
  data.sin_port = htons(port);

  /* SESSION at the Data Server. */
  fd = setup_open(e);
  if (fd < 0) return SETUP_RETRY;
  if (psiskv_net_connect(fd, &data, deadline_ms) < 0) goto retry;
  id = e->next_request_id++;
  n = psiskv_encode_session(buf, id, e->session_id, e->secret);
  switch (exchange(e, fd, buf, n, NULL, 0, 0, id, 0, deadline_ms, &h)) {
    case EXCHANGE_OK: break;
    case EXCHANGE_IO: goto retry;
    case EXCHANGE_PROTO: goto failed;
  }
  if (h.flags_or_status == PSISKV_ST_OK) {
    body = psiskv_net_reader_take(&e->in, fd, PSISKV_SESSION_RESPONSE_BODY_BYTES, deadline_ms);
    if (body == NULL) goto retry;
    psiskv_decode_session_ok(body, &session_id, secret, &max_value_bytes);
  }
  if (!nothing_follows(e)) {
    errno = EPROTO;
    goto failed;
  }
  if (h.flags_or_status != PSISKV_ST_OK) {
    errno = status_errno(h.flags_or_status);
    setup_close(e);
    return h.flags_or_status == PSISKV_ST_UNAVAILABLE ? SETUP_RETRY : SETUP_FAILED;
  }
  /* 6.2: a session has a non-zero id and a secret (an all-zero one could never be presented).
   * 12.6: a resumed session keeps its id and secret; a Data Server that answers another pair has
   * not resumed it, and resending a write there would not be exactly once, so that is a protocol
   * violation too. */
  if (session_id == 0 || psiskv_session_secret_is_zero(secret) ||
      (e->session_id != PSISKV_SESSION_NEW &&
       (session_id != e->session_id || memcmp(secret, e->secret, sizeof secret) != 0))) {
    errno = EPROTO;
    goto failed;
  }
  e->session_id = session_id;
  memcpy(e->secret, secret, sizeof secret);
  e->max_value_bytes = max_value_bytes;
  if (setup_keep(e) < 0) return SETUP_FAILED; /* errno: EMFILE, EBADF */
  return SETUP_OK;
front_down:
  setup_close(e);
  return SETUP_FRONT_DOWN;
retry:
  setup_close(e);
  return SETUP_RETRY;
failed:
  setup_close(e);
  return SETUP_FAILED;
}

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
 * (Re)connects e with connect_once until an attempt succeeds (0), or the call must fail (-1 with
 * errno): EBADF when kv_close ran, ETIMEDOUT when the deadline of rs has passed, or the errno of
 * a SETUP_FAILED attempt (and of SETUP_FRONT_DOWN when front_down_fails: kv_connect reports a
 * Front Server it cannot reach at once). The first attempt of a call follows its failure at once;
 * later ones wait for the back-off. Each attempt is bounded by the connect budget and the
 * deadline. Caller holds e->lock; reconnection is on (retry_timeout_ms > 0).
 */
static int reconnect(struct kv_entry *e, struct retry *rs, int front_down_fails) {
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
      if (backoff_wait(e, rs->backoff_ms < left ? rs->backoff_ms : left) < 0) return -1;
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
    switch (connect_once(e, attempt_deadline_ms)) {
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
    if (is_closed(e)) {
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
    errno = status_errno(status);
  } else {
    drop(e, status_errno(status));
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
  switch (exchange(e, e->d, buf, n, tail, tail_len, r->key, r->id, capacity,
                   PSISKV_NO_DEADLINE, &h)) {
    case EXCHANGE_OK:
      break;
    case EXCHANGE_IO:
      drop(e, errno);
      return ATTEMPT_BROKEN;
    case EXCHANGE_PROTO:
      drop(e, EPROTO);
      return ATTEMPT_DONE;
  }
  /* The body: only a GET OK has one (psiskv_check_response holds every other to 0 bytes). */
  if (r->opcode == PSISKV_OP_GET && h.flags_or_status == PSISKV_ST_OK) {
    prefix = psiskv_net_reader_take(&e->in, e->d, PSISKV_GET_RESPONSE_PREFIX_BYTES,
                                    PSISKV_NO_DEADLINE);
    if (prefix == NULL) {
      drop(e, errno);
      return ATTEMPT_BROKEN;
    }
    stored = psiskv_decode_get_ok_stored_length(prefix);
    /* Checked before any value byte is copied: the body is exactly 4 + min(capacity, stored),
     * so at most value_length bytes land in out, whatever the server claims. */
    if (psiskv_check_get_ok_body(h.body_length, capacity, stored) != PSISKV_CHECK_OK ||
        stored > (uint32_t)INT_MAX) {
      drop(e, EPROTO);
      return ATTEMPT_DONE;
    }
    if (psiskv_net_reader_read(&e->in, e->d, r->out,
                               h.body_length - PSISKV_GET_RESPONSE_PREFIX_BYTES,
                               PSISKV_NO_DEADLINE) < 0) {
      drop(e, errno);
      return ATTEMPT_BROKEN;
    }
  }
  if (!nothing_follows(e)) {
    drop(e, EPROTO);
    return ATTEMPT_DONE;
  }
  if (h.flags_or_status == PSISKV_ST_UNAVAILABLE && retry_timeout_ms > 0) {
    drop(e, EAGAIN); /* 12.1: this Data Server cannot serve now; ask the Front Server again */
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
        drop(e, EPROTO);
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
 * makes. Caller holds e->lock.
 */
static int perform(struct kv_entry *e, const struct request *r) {
  struct retry rs;
  int rc;
  rs.started = 0;
  for (;;) {
    if (!e->connected) {
      if (retry_timeout_ms > 0) {
        if (reconnect(e, &rs, 0) < 0) return -1;
      } else if (e->session_id == PSISKV_SESSION_NEW) {
        int64_t deadline_ms = psiskv_net_now_ms() + psiskv_env_connect_timeout_ms();
        if (connect_once(e, deadline_ms) != SETUP_OK) return -1;
      } else {
        errno = ENOTCONN;
        return -1;
      }
    }
    if (attempt(e, r, &rc) == ATTEMPT_DONE) return rc;
    if (is_closed(e)) { /* kv_close shut the connection down under this call */
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
  e = entry_new(kv_server_ip, kv_server_port);
  if (e == NULL) return -1; /* ENOMEM */
  if (psiskv_net_resolve_ipv4(e->front_host, e->front_port, &e->front) < 0) goto fail;
  /* The first attempt has the whole connect budget. A Front Server that cannot be reached fails
   * at once; UNAVAILABLE (a Data Server being relaunched) or a Data Server that cannot be reached
   * yet is retried until the retry deadline, as a reconnection is (PROTOCOL.md 12.3). */
  switch (connect_once(e, deadline_ms)) {
    case SETUP_OK:
      break;
    case SETUP_RETRY:
      if (retry_timeout_ms == 0) goto fail;
      retry_start(&rs);
      if (reconnect(e, &rs, 1) < 0) goto fail;
      break;
    default:
      goto fail;
  }
  if (table_insert(e) < 0) goto fail;
  return e->d;
fail:
  entry_free(e);
  return -1;
}

PSISKV_API void kv_close(int kv_descriptor) {
  struct kv_entry *e = NULL;
  int saved = errno; /* a void function: leave the caller's errno as it was */
  pthread_mutex_lock(&table_lock);
  if (kv_descriptor >= 0 && kv_descriptor < table_slots) {
    e = table[kv_descriptor];
    table[kv_descriptor] = NULL;
  }
  pthread_mutex_unlock(&table_lock);
  if (e != NULL) {
    pthread_mutex_lock(&e->close_lock);
    __atomic_store_n(&e->closed, 1, __ATOMIC_RELEASE);
    if (!is_lost(e) && !still_ours(e)) {
      /* The program closed the number (another file may hold it now): not ours to close. */
      __atomic_store_n(&e->lost, 1, __ATOMIC_RELEASE);
    } else if (!is_lost(e) && e->generation == process_generation) {
      /* Wake a call of another thread blocked on a socket: it returns -1 EBADF. Only on sockets
       * of this process: after a fork, the sockets of a descriptor not yet adopted are the
       * parent's, and a shutdown would cut the parent's connection (the close of the last
       * reference only drops this process's copy). */
      psiskv_net_shutdown(e->d);
      psiskv_net_shutdown(e->setup_fd);
    }
    pthread_cond_broadcast(&e->close_cond); /* wakes a call in back-off */
    pthread_mutex_unlock(&e->close_lock);
    release(e); /* the table's reference; closes and frees now unless a call is in progress */
  }
  errno = saved;
}

PSISKV_API int kv_write(int kv_descriptor, uint32_t key, const char *value, uint32_t value_length,
                        int kv_overwrite) {
  struct request r;
  int rc = -1;
  struct kv_entry *e = begin(kv_descriptor);
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
    rc = perform(e, &r);
  }
  end(e);
  return rc;
}

PSISKV_API int kv_read(int kv_descriptor, uint32_t key, char *value, uint32_t value_length) {
  struct request r;
  int rc = -1;
  struct kv_entry *e = begin(kv_descriptor);
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
    rc = perform(e, &r);
    /* rc >= 0 is the stored length; the value is copied (at most value_length bytes) either way. */
    if (rc >= 0 && read_returns_zero) rc = 0;
  }
  end(e);
  return rc;
}

PSISKV_API int kv_delete(int kv_descriptor, uint32_t key) {
  struct request r;
  int rc;
  struct kv_entry *e = begin(kv_descriptor);
  if (e == NULL) return -1;
  memset(&r, 0, sizeof r);
  r.opcode = PSISKV_OP_DELETE;
  r.key = key;
  r.id = e->next_request_id++;
  rc = perform(e, &r);
  end(e);
  return rc;
}
