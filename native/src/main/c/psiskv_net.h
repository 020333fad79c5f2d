/*
 * psiskv_net.h - socket I/O of libpsiskv: name resolution, connecting with a deadline, the
 * read-fully / write-fully loops, and the receive buffer that reads responses with as few recv
 * calls as their bytes allow. Knows nothing of the protocol (that is psiskv_proto.h).
 *
 * Contract: every function returns -1 with errno set on failure. Sends never raise SIGPIPE
 * (MSG_NOSIGNAL); EINTR is retried. Bytes move only with send/sendmsg/recv, never write/read: on a
 * number that no longer holds a socket (the program closed it and opened a file) they fail with
 * ENOTSOCK instead of writing into the file. Deadlines are absolute times of psiskv_net_now_ms();
 * PSISKV_NO_DEADLINE waits as long as the peer takes. Functions are thread-safe; one socket is
 * used by one thread at a time (the caller holds the descriptor's mutex).
 *
 * Internal to libpsiskv (hidden by -fvisibility=hidden).
 */
#ifndef PSISKV_NET_H
#define PSISKV_NET_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/* "No deadline": block until the peer answers or the connection breaks. */
#define PSISKV_NO_DEADLINE INT64_C(-1)

/* Milliseconds of a monotonic clock (unaffected by changes of the wall clock). */
int64_t psiskv_net_now_ms(void);

/*
 * Resolves a host name or dotted IPv4 address to an IPv4 address (getaddrinfo, AF_INET) and
 * stores it with the port in *out. Errors: EHOSTUNREACH (no such host or no IPv4 address),
 * ENOMEM. Name look-up blocks as the system resolver does; a dotted address needs no look-up.
 */
int psiskv_net_resolve_ipv4(const char *host, int port, struct sockaddr_in *out);

/*
 * A new close-on-exec TCP socket, not yet connected. Separate from psiskv_net_connect so that the
 * library can publish the socket (for kv_close to shut it down) before it blocks on it.
 * Errors: EMFILE, ENFILE, ENOMEM, those of socket(2). Unconnected, it also serves as the
 * placeholder that holds a descriptor's number while the descriptor has no connection of its own.
 */
int psiskv_net_socket(void);

/*
 * Connects the socket fd (from psiskv_net_socket) to addr, giving up at the deadline
 * (non-blocking connect + poll), and leaves it blocking with TCP_NODELAY set (requests are small
 * and answered one at a time: Nagle's algorithm would only add latency). On failure fd stays
 * open (the caller closes it). Errors: those of connect(2) (ECONNREFUSED, ENETUNREACH, ...),
 * ETIMEDOUT at the deadline.
 */
int psiskv_net_connect(int fd, const struct sockaddr_in *addr, int64_t deadline_ms);

/*
 * shutdown(2) of both directions, keeping errno: wakes up a thread blocked in connect, send or
 * recv on fd, whose call then fails (EPIPE, end of stream). The caller must know fd is still its
 * open socket (not closed and reused by another thread meanwhile).
 */
void psiskv_net_shutdown(int fd);

/*
 * Descriptor numbers. A descriptor of psiskv.h is the number of its data connection's socket, kept
 * for the descriptor's life while the socket under it changes (psiskv_table.c owns that policy; the
 * calls below are its moves). Every fd they make is close-on-exec, as psiskv_net_socket's are.
 */

/*
 * fd itself if it is >= lowest; else a duplicate at the lowest free number >= lowest
 * (F_DUPFD_CLOEXEC), and fd is closed. -1 with errno (EMFILE, fd closed) on failure.
 */
int psiskv_net_move_at_least(int fd, int lowest);

/*
 * Puts the socket fd at number target in one step (dup3, close-on-exec): whatever target held is
 * closed (in this process only: it is a close, never a shutdown), and target is never free
 * meanwhile, so no other open() can get the number. Then closes fd. Returns 0, or -1 with errno
 * (fd is closed either way, target unchanged on failure).
 */
int psiskv_net_replace(int fd, int target);

/* What makes one open socket (or file) distinct from any other open at the same time. */
typedef struct psiskv_net_identity {
  dev_t dev;
  ino_t ino;
} psiskv_net_identity;

/* The identity of what fd refers to now (fstat). -1 with errno (EBADF: fd is not open). */
int psiskv_net_identity_of(int fd, psiskv_net_identity *out);

/* Whether two identities name the same open socket. */
int psiskv_net_identity_same(const psiskv_net_identity *a, const psiskv_net_identity *b);

/* Sends all n bytes (one send when the socket takes them). Errors: EPIPE / ECONNRESET when the
 * peer is gone, and those of send(2). */
int psiskv_net_write_fully(int fd, const void *buf, size_t n);

/* Sends all bytes of iov[0..iovcnt) in order (one sendmsg when the socket takes it). Consumes the
 * iov array: its entries are advanced past what was sent. */
int psiskv_net_writev_fully(int fd, struct iovec *iov, int iovcnt);

/*
 * Reads exactly n bytes. Errors: ECONNRESET when the peer closes before n bytes (end of stream),
 * ETIMEDOUT when the deadline passes, and those of recv(2).
 */
int psiskv_net_read_fully(int fd, void *buf, size_t n, int64_t deadline_ms);

/* Closes a socket, keeping the caller's errno (close is a clean-up here, never the error). */
void psiskv_net_close(int fd);

/*
 * The receive buffer of a connection, so that a response arrives with as few recv calls as its
 * bytes allow: the server sends a small response (header, GET stored length and value) at once,
 * and one recv of up to PSISKV_NET_RECV_BUFFER_BYTES takes all of it instead of one recv per
 * field. It lives here, beside read_fully, because it is that loop with a buffer in front:
 * psiskv_net makes every recv; the caller parses the bytes it is handed with the codec
 * (psiskv_proto.h, which does no I/O) and decides what a response must be.
 *
 * Contract. Bytes enter the buffer only in psiskv_net_reader_take, whose recv asks for as much as
 * the buffer has room for: it cannot know where a response ends before the caller has parsed its
 * header, so it may take bytes that follow it. For a client that sends one request at a time
 * those are bytes the server had no reason to send; the caller checks psiskv_net_reader_unread
 * once a response is complete. psiskv_net_reader_read hands buffered bytes over first and then
 * receives the rest straight into the destination, asking recv for no more than that rest: a
 * large value does not pass through the buffer, and no byte beyond n is received into dst.
 * One reader is used by one thread at a time (the caller holds the descriptor's mutex), on one
 * connection at a time: the caller resets it whenever the socket under it changes.
 */

/*
 * Bytes of a receive buffer: one page. A response up to this size (a GET of a value up to 4072
 * bytes) comes with one recv; a longer value costs one more recv, for its remainder, which goes
 * straight to the caller's buffer. Each descriptor holds one (malloc'd with the descriptor, so a
 * program that never reads a large value touches only what its responses fill): 10,000
 * descriptors hold at most 40 MiB of them. A larger buffer saves only that extra recv, on values
 * whose copying costs more than the call: with 8 KiB values a 16 KiB buffer measured no cheaper
 * (DESIGN.md 9).
 */
#define PSISKV_NET_RECV_BUFFER_BYTES 4096

typedef struct psiskv_net_reader {
  uint8_t *bytes; /* PSISKV_NET_RECV_BUFFER_BYTES, or NULL before init */
  size_t pos;     /* the first unread byte */
  size_t fill;    /* the end of the bytes received; pos <= fill */
} psiskv_net_reader;

/* Allocates the buffer, empty. Errors: ENOMEM. */
int psiskv_net_reader_init(psiskv_net_reader *r);

/* Frees the buffer (NULL-safe after a failed init). Keeps errno. */
void psiskv_net_reader_free(psiskv_net_reader *r);

/* Forgets every unread byte: the reader is about to serve another connection. */
void psiskv_net_reader_reset(psiskv_net_reader *r);

/* Bytes received and not yet taken or read. */
size_t psiskv_net_reader_unread(const psiskv_net_reader *r);

/*
 * The next n bytes of the stream (n <= PSISKV_NET_RECV_BUFFER_BYTES), received from fd as far as
 * the buffer lacks them, and consumed. The pointer is valid until the next call on r. NULL with
 * errno on failure: as psiskv_net_read_fully (ECONNRESET at end of stream, ETIMEDOUT at the
 * deadline, those of recv(2)); whatever was received stays unread.
 */
const uint8_t *psiskv_net_reader_take(psiskv_net_reader *r, int fd, size_t n,
                                      int64_t deadline_ms);

/*
 * Copies the next n bytes of the stream into dst: the buffered ones, then the rest received from
 * fd straight into dst. Errors as psiskv_net_read_fully; dst then holds a part of them.
 */
int psiskv_net_reader_read(psiskv_net_reader *r, int fd, void *dst, size_t n, int64_t deadline_ms);

#endif /* PSISKV_NET_H */
