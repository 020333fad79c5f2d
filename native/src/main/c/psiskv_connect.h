/*
 * psiskv_connect.h - a descriptor's connection: one request and its response on a socket
 * (psiskv_exchange), dropping a connection that is out of step, and one attempt of the set-up,
 * HELLO, connect and SESSION (psiskv_establish, PROTOCOL.md 2, 6.1, 6.2, 12.2). Retrying is not
 * here: psiskv_lib.c decides what is retried and when (with_retries). The names match the Java
 * client's (Calls.establish).
 *
 * Every function expects the caller to hold e->lock (psiskv_table.h).
 *
 * Internal to libpsiskv (hidden by -fvisibility=hidden).
 */
#ifndef PSISKV_CONNECT_H
#define PSISKV_CONNECT_H

#include <stddef.h>
#include <stdint.h>

#include "psiskv_proto.h"
#include "psiskv_table.h"

/* errno for an error status of PROTOCOL.md 5. */
int psiskv_status_errno(uint8_t status);

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
enum exchange_result psiskv_exchange(struct kv_entry *e, int fd, const uint8_t *request,
                                     size_t request_len, const void *tail, uint32_t tail_len,
                                     uint32_t key, uint64_t id, uint32_t capacity,
                                     int64_t deadline_ms, psiskv_header *h);

/* Whether the receive buffer is empty once a response has been read to its end: PROTOCOL.md 2,
 * a server sends nothing unasked (psiskv_lib.c, "System calls of a request"). */
int psiskv_nothing_follows(const struct kv_entry *e);

/* The connection is no longer in step with the server: shut it down (the server sees its end
 * now, also while a forked child still holds a copy of the socket), forget what its receive
 * buffer holds, and set errno to err. The dead socket keeps the number until the next connection
 * replaces it. Only a connection of this process is ever connected (adoption comes first). */
void psiskv_drop(struct kv_entry *e, int err);

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
 * 12.2), then the new connection goes to the descriptor's number (psiskv_entry_setup_keep).
 * Every socket is published in e->setup_fd while this thread may block on it.
 */
enum setup_result psiskv_establish(struct kv_entry *e, int64_t deadline_ms);

#endif /* PSISKV_CONNECT_H */
