/*
 * psiskv_table.c - the descriptor table of libpsiskv and the life of its entries (the locks and
 * the reference counts are written in psiskv_table.h).
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
 * were never stored). So a descriptor belongs to the process that made its connection. An
 * atfork child handler (registered at the first kv_connect) increments process_generation; each
 * entry records the generation its socket was made in. The first call of the child on an
 * inherited descriptor (psiskv_entry_begin sees the older generation) adopts it: puts a
 * placeholder at the number (a close of the child's copy of the parent's socket: never a
 * shutdown, which would cut the parent's connection), forgets the parent's session id and secret
 * (SESSION with id 0 and a zero secret asks for a session of its own) and connects anew, putting
 * the new connection at the same number. The parent's descriptors stay the parent's. Nothing is
 * done at the fork itself, so a program that forks and execs pays for no descriptor.
 *
 * The fork handlers keep the locks of psiskv_table.h consistent: the prepare handler takes
 * table_lock and every entry's close_lock (brief holds, so fork waits for no I/O) and the parent
 * and child handlers release them, so the child's copies of the table and of every socket field
 * are consistent and unlocked. An entry->lock may be held across the fork by a thread of the
 * parent that is blocked in a call (for as long as a server takes to answer, so the prepare
 * handler cannot wait for it); the child, which has no such thread, reinitialises every
 * entry->lock and close_cond in its handler, and adoption resets the connection state those
 * guard. (POSIX allows only async-signal-safe calls in the child of a multithreaded fork until
 * exec; reinitialising the library's own mutexes in the atfork child handler, which is what
 * pthread_atfork exists for, is what glibc supports, and a child that uses the library makes
 * many other calls after that anyway: connect, malloc.) Calls in progress at the fork exist only
 * in the parent: the child's handler sets each table entry's refs to the table's one. An entry
 * that another thread of the parent had already taken out of the table (kv_close under a call)
 * or not yet put in (kv_connect in progress) is unreachable in the child: its memory and its
 * close-on-exec sockets stay until the child execs or exits.
 */
#define _POSIX_C_SOURCE 200809L

#include "psiskv_table.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "psiskv_net.h"
#include "psiskv_proto.h"

/* The lowest number a descriptor gets: above stdin, stdout and stderr, so that a program that
 * closes one of those and opens a file to take its place never gets a descriptor's socket. */
#define DESCRIPTOR_LOWEST 3
/* Slots of the table when it is first needed; it grows (doubling, or to the number it must hold)
 * as descriptors with higher numbers come. The process's file limit bounds it. */
#define TABLE_INITIAL_SLOTS 64
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kv_entry **table; /* table[d] for descriptor d; NULL where there is none */
static int table_slots;         /* allocated length of table */


/* How many forks the library has seen on the way to this process (the atfork child handler
 * increments it; nothing else writes it, and the child then has a single thread). */
static unsigned process_generation;

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

void psiskv_table_init(void) { pthread_atfork(fork_prepare, fork_parent, fork_child); }

/* ---- entry lifetime ---------------------------------------------------------------------- */

struct kv_entry *psiskv_entry_new(const char *host, int port) {
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

int psiskv_entry_is_closed(struct kv_entry *e) {
  return __atomic_load_n(&e->closed, __ATOMIC_ACQUIRE);
}
static int is_lost(struct kv_entry *e) { return __atomic_load_n(&e->lost, __ATOMIC_ACQUIRE); }

void psiskv_entry_free(struct kv_entry *e) {
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
  if (left == 0) psiskv_entry_free(e);
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

int psiskv_table_insert(struct kv_entry *e) {
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
  if (stale != NULL) psiskv_entry_free(stale);
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

struct kv_entry *psiskv_entry_begin(int d) {
  struct kv_entry *e = acquire(d);
  if (e == NULL) return NULL;
  pthread_mutex_lock(&e->lock);
  if (psiskv_entry_is_closed(e) || is_lost(e)) {
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

void psiskv_entry_end(struct kv_entry *e) {
  pthread_mutex_unlock(&e->lock);
  release(e);
}

int psiskv_entry_setup_open(struct kv_entry *e) {
  int fd = psiskv_net_socket();
  psiskv_net_reader_reset(&e->in);
  if (fd < 0) return -1;
  pthread_mutex_lock(&e->close_lock);
  if (psiskv_entry_is_closed(e)) {
    psiskv_net_close(fd);
    fd = -1;
    errno = EBADF;
  }
  e->setup_fd = fd;
  pthread_mutex_unlock(&e->close_lock);
  return fd;
}

void psiskv_entry_setup_close(struct kv_entry *e) {
  pthread_mutex_lock(&e->close_lock);
  psiskv_net_close(e->setup_fd);
  e->setup_fd = -1;
  pthread_mutex_unlock(&e->close_lock);
}

int psiskv_entry_setup_keep(struct kv_entry *e) {
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
  } else if (psiskv_entry_is_closed(e)) {
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

int psiskv_entry_backoff_wait(struct kv_entry *e, int64_t ms) {
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
  while (!psiskv_entry_is_closed(e)) {
    /* 0: woken (kv_close, or spuriously: look again); ETIMEDOUT: waited enough. Any other error
     * also ends the wait, so that it can never spin. */
    if (pthread_cond_timedwait(&e->close_cond, &e->close_lock, &until) != 0) break;
  }
  closed = psiskv_entry_is_closed(e);
  pthread_mutex_unlock(&e->close_lock);
  if (closed) errno = EBADF;
  return closed ? -1 : 0;
}

void psiskv_table_close(int d) {
  struct kv_entry *e = NULL;
  pthread_mutex_lock(&table_lock);
  if (d >= 0 && d < table_slots) {
    e = table[d];
    table[d] = NULL;
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
}
