/*
 * psiskv_table.h - the descriptor table of libpsiskv: one entry per open descriptor, what its
 * calls lock, how long it lives, and the moves of the sockets at its number. What a descriptor
 * is and what fork() does to it are written at the top of psiskv_table.c.
 *
 * Threads and locks:
 *   table_lock       guards the table, its slots and every entry's refs. Held only for a look-up,
 *                    an insert or a removal (and across fork(), psiskv_table.c); never while
 *                    doing I/O. Private to psiskv_table.c.
 *   entry->lock      serialises the calls of one descriptor (one request and its response on the
 *                    connection at a time, reconnection and back-off included) and guards the
 *                    entry's connection state: connected, in, session_id, secret,
 *                    max_value_bytes, next_request_id. Held for a whole call, I/O included:
 *                    psiskv_entry_begin takes it, psiskv_entry_end releases it.
 *   entry->close_lock  guards the entry's sockets against kv_close and fork(): setup_fd, d's
 *                    identity and generation change only under it (and entry->lock), a socket of
 *                    the entry is closed or replaced only under it, and kv_close checks d's
 *                    identity and shuts the entry's sockets down under it, so kv_close never
 *                    touches an fd number that is not the entry's. close_cond (with it) wakes a
 *                    back-off wait when kv_close runs. Held only for a few system calls that
 *                    never block (close, dup3, fstat, shutdown), or in pthread_cond_timedwait.
 *                    Taken only in psiskv_table.c.
 *   Lock order: entry->lock, then table_lock, then close_lock; never the reverse.
 *
 * Lifetime. An entry is reference counted: the table holds one reference while the descriptor is
 * open, and each call in progress holds one. kv_close (psiskv_table_close) removes the entry from
 * the table (new calls fail with EBADF at once), marks it closed (calls queued on its mutex then
 * fail with EBADF), shuts its sockets down (a call blocked on one wakes up; a call in back-off
 * wakes up; either returns -1 EBADF) and drops the table's reference; whoever drops the last
 * reference closes the number and frees the entry. So a call racing kv_close never touches freed
 * memory nor a reused number (the number stays open until that call has returned), and kv_close
 * never blocks.
 *
 * Request ids: u64, compared only for equality here (unsigned, PROTOCOL.md 3.2). next_request_id
 * starts at 1; every HELLO, SESSION and every call of kv_write, kv_read and kv_delete takes the
 * next one under entry->lock, so ids are strictly increasing per descriptor, except that a
 * request resent after a reconnection keeps its id (PROTOCOL.md 3.2). A child's new session goes
 * on from the inherited counter: increasing is all a session needs.
 *
 * Internal to libpsiskv (hidden by -fvisibility=hidden).
 */
#ifndef PSISKV_TABLE_H
#define PSISKV_TABLE_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>

#include "psiskv_net.h"
#include "psiskv_proto.h"

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
  int lost;                 /* d is no longer this entry's (psiskv_table.c, "Descriptors") */
};

/* Registers the fork handlers. Runs once, from the first kv_connect (no other call can come
 * first: it needs a descriptor). */
void psiskv_table_init(void);

/* ---- entry lifetime ---------------------------------------------------------------------- */

/* A new entry for the Front Server host:port, not connected, or NULL (ENOMEM). */
struct kv_entry *psiskv_entry_new(const char *host, int port);

/* Closes the entry's sockets (the number d only if it is still the entry's) and frees it. Keeps
 * errno (it runs on error paths). Caller holds the last reference, or owns e alone. */
void psiskv_entry_free(struct kv_entry *e);

/*
 * Puts e into the table at its number e->d (the table's reference is e's first); -1 with ENOMEM.
 * An entry already there is lost: the program closed its number without kv_close, and the kernel
 * has just handed the number to e's socket.
 */
int psiskv_table_insert(struct kv_entry *e);

/* kv_close: takes descriptor d out of the table and closes its entry (see "Lifetime" above). A
 * descriptor that is not open is ignored. Changes errno. */
void psiskv_table_close(int d);

/*
 * Starts a call on descriptor d: takes a reference and the entry's mutex, checks that d is still
 * the entry's socket, and adopts a descriptor inherited across fork(). Returns the entry, or NULL
 * with errno: EBADF (bad, closed or lost descriptor), or the adoption's error.
 */
struct kv_entry *psiskv_entry_begin(int d);

/* Ends a call started by psiskv_entry_begin. Keeps errno. */
void psiskv_entry_end(struct kv_entry *e);

/* Whether kv_close ran on e. */
int psiskv_entry_is_closed(struct kv_entry *e);

/* ---- the entry's sockets (caller holds e->lock, or owns e alone) ------------------------- */

/* A new socket for a set-up step, published as e->setup_fd so that kv_close can shut it down
 * while this thread blocks on it, with the receive buffer emptied for it; -1 with errno (EBADF
 * if the descriptor was closed). */
int psiskv_entry_setup_open(struct kv_entry *e);

/* Closes the set-up socket (a finished front connection or a failed step). Keeps errno. */
void psiskv_entry_setup_close(struct kv_entry *e);

/*
 * The set-up socket becomes the data connection at the descriptor's number. kv_connect's first
 * connection: the socket is moved to a number >= DESCRIPTOR_LOWEST, which becomes e->d. Later
 * ones: put at e->d in one step (psiskv_net_replace), after checking that the number is still
 * the entry's. Returns 0, or -1 with errno: EMFILE, EBADF (kv_close ran, or the number is no
 * longer the entry's: e is then lost and out of the table).
 */
int psiskv_entry_setup_keep(struct kv_entry *e);

/*
 * Waits ms milliseconds (a back-off), or less if kv_close runs meanwhile. Returns 0, or -1 with
 * EBADF when the descriptor was closed. A condition variable on CLOCK_MONOTONIC: kv_close wakes
 * it at once, a change of the wall clock does not stretch it, and signals do not cut it short.
 */
int psiskv_entry_backoff_wait(struct kv_entry *e, int64_t ms);

#endif /* PSISKV_TABLE_H */
