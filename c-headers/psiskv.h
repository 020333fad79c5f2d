/*
 * psiskv.h - the psiskv C API (libpsiskv.so), a drop-in for the classic course API.
 *
 * A psiskv store maps unsigned 32-bit keys to byte-array values. A program connects to the
 * Front Server with kv_connect(), which hands back a descriptor; the library then talks to the
 * Data Server on that descriptor's behalf (PROTOCOL.md section 2).
 *
 * Build and link:   cc -I<psiskv>/c-headers prog.c -L<psiskv>/native/target -lpsiskv
 * Run:              LD_LIBRARY_PATH=<psiskv>/native/target ./prog   (or link with -Wl,-rpath,...)
 * Installed (build-scripts/install-libpsiskv --prefix P, default /usr/local):
 *                   cc prog.c $(pkg-config --cflags --libs psiskv)
 *                   (PKG_CONFIG_PATH=P/lib/pkgconfig, and -Wl,-rpath,P/lib or LD_LIBRARY_PATH=P/lib
 *                   for a prefix outside the system's search paths)
 *
 * Return codes (every function; errno is set only when a function fails, see "errno" below):
 *
 *   kv_connect   > 0   a descriptor: the file descriptor of the descriptor's data connection,
 *                      a socket the library owns, at a number >= 3 (never stdin, stdout or
 *                      stderr's); it keeps that number for its life, across reconnections (see
 *                      "Descriptors" below)
 *                -1    error (bad arguments, host unknown, Front Server refused or timed out,
 *                      protocol error, no Data Server ready within the retry deadline)
 *   kv_close     -     closes the descriptor (and its file descriptor); harmless on a
 *                      descriptor that is closed, negative or was never issued, and on any file
 *                      descriptor the library did not issue (it never closes one of those)
 *   kv_write      0    stored (kv_overwrite != 0: any earlier value replaced)
 *                -2    kv_overwrite == 0 and the key already holds a value: nothing changed
 *                -1    any other error (bad descriptor, NULL value with value_length > 0,
 *                      value longer than the server's maximum: refused without sending,
 *                      server error, connection lost and not regained in time, see below)
 *   kv_read     >= 0   the stored length of the value. min(stored length, value_length) bytes
 *                      were copied to value; the library NEVER writes more than value_length
 *                      bytes, so a return value > value_length means the value was truncated.
 *                      value_length 0 (value may then be NULL) asks for the length only.
 *                 0    instead, with PSISKV_READ_RETURNS=zero: found (see "kv_read's return
 *                      value" below)
 *                -2    no such key
 *                -1    error (as for kv_write)
 *   kv_delete     0    the key was removed
 *                -1    no such key (errno ENOENT), or any error
 *
 * errno, set on failure only:
 *   EBADF         the descriptor is negative, was never issued, was closed with kv_close, or
 *                 is no longer the library's: the program closed its file descriptor with
 *                 close() (then nothing is ever sent on, shut down or closed at that number
 *                 again, whatever file gets it next)
 *   EINVAL        NULL pointer with a nonzero length, NULL host, port outside 1..65535
 *   EMSGSIZE      kv_write: value_length exceeds the server's maximum value length (nothing
 *                 sent); also when the server answers TOO_LARGE
 *   EEXIST        kv_write returned -2
 *   ENOENT        kv_read returned -2, or kv_delete found no such key
 *   EHOSTUNREACH  kv_connect: the host name did not resolve to an IPv4 address, or is unreachable
 *   ECONNREFUSED, ENETUNREACH, ECONNRESET, ...   kv_connect: the Front Server could not be
 *                 reached (at once: a refused Front Server is not retried)
 *   ETIMEDOUT     a call (kv_write, kv_read, kv_delete, or kv_connect while the Front Server
 *                 answers UNAVAILABLE) lost its connection and could not regain it before its
 *                 retry deadline (see "Reconnection"); also kv_connect when one set-up attempt
 *                 (connects, HELLO, SESSION) outlasts PSISKV_CONNECT_TIMEOUT_MS (environment
 *                 variable, milliseconds, default 3000), e.g. a Front Server that never answers
 *   EACCES        the server answered FORBIDDEN: resuming the descriptor's session after a
 *                 reconnection presented a secret the server holds for another client, so the
 *                 session is not this descriptor's (never retried; each later call tries once
 *                 more and fails the same way while the server says so)
 *   EPROTO        the server's response broke the protocol (magic, version, echoed opcode or
 *                 request id, lengths, bytes after the response, a resumed session answered
 *                 with another id or secret, a session without a secret), or it
 *                 answered BAD_REQUEST, UNKNOWN_OPCODE, UNSUPPORTED_VERSION or NO_SESSION; the
 *                 connection is dropped (the next call reconnects), the call is not retried
 *   EIO           the server answered SERVER_ERROR (not retried: the write may or may not have
 *                 been applied)
 *   ECONNRESET, EPIPE, EAGAIN   only with reconnection off (PSISKV_RETRY_TIMEOUT_MS=0): the
 *                 connection broke (the server closed it or vanished mid-message), or the
 *                 server answered UNAVAILABLE (the connection is kept)
 *   ENOTCONN      only with reconnection off: the descriptor's connection broke earlier; it
 *                 stays open but unusable until closed
 *   ENOMEM, EMFILE   no memory / no file descriptors left (a descriptor is a file descriptor
 *                 and counts against the process's limit, as any socket does)
 *
 * Reconnection (PROTOCOL.md 12): a descriptor rides through a crash and relaunch of the Data
 * Server. When its data connection breaks (end of stream, reset, any I/O error) or a request is
 * answered UNAVAILABLE, the call reconnects by itself: HELLO at the Front Server it was connected
 * to (retried while refused, reset or UNAVAILABLE), then the Data Server named there, resuming
 * the descriptor's session, and sends the interrupted request again with the same request id, so
 * the server applies a write exactly once and answers a repeated one with its first result
 * (a kv_write with kv_overwrite == 0 that was applied before the crash returns 0, not -2). The
 * descriptor number stays the same. Resuming presents the session's secret, which only this
 * descriptor knows (PROTOCOL.md 6.2). Attempts are spaced by 50 ms doubling to 1 s; the call
 * returns -1 ETIMEDOUT when its retry deadline has passed: PSISKV_RETRY_TIMEOUT_MS (environment
 * variable, a whole number of milliseconds >= 0, read once at the first kv_connect; unset or
 * anything else: 10000) after the failure.
 * Each call has its own deadline: after a call gave up, the next call on the descriptor tries
 * again. One attempt (connects, HELLO, SESSION) is also bounded by PSISKV_CONNECT_TIMEOUT_MS; a
 * request, resent or not, waits for its answer as long as the server takes. A protocol violation
 * or an error status other than UNAVAILABLE is not retried. PSISKV_RETRY_TIMEOUT_MS=0 turns
 * reconnection off: a broken connection fails the call with its cause and the descriptor stays
 * broken (ENOTCONN) until kv_close().
 * kv_connect: a Front Server that refuses, cannot be reached, breaks off or does not answer HELLO
 * within PSISKV_CONNECT_TIMEOUT_MS fails at once (also between retries); a Front Server that
 * answers UNAVAILABLE (its Data Server being relaunched), and a Data Server that refuses, breaks
 * off or answers UNAVAILABLE, are retried as above until the retry deadline (then ETIMEDOUT).
 * On -1 from kv_read, the bytes of value are unspecified (a response may have been cut short).
 *
 * kv_read's return value (PSISKV_READ_RETURNS): an older lab API, for which many programs of the
 * course were written (its own cli-exe-1.c among them), returned 0 from a successful kv_read, and
 * those programs test kv_read(...) == 0 for success; with the stored length they take every
 * non-empty value for a failure. Setting the environment variable PSISKV_READ_RETURNS to exactly
 * "zero" makes a successful kv_read return 0 instead of the stored length, for such programs to
 * run unchanged. The value is still copied, at most value_length bytes, and -2 and -1 keep their
 * meaning; the stored length is then not reported, so a truncated value cannot be told from a
 * whole one (a program that needs the length must not set the variable). Any other value, or
 * none, keeps the specified behaviour, the stored length. Read once, at the first kv_connect of
 * the process (like PSISKV_RETRY_TIMEOUT_MS): setting it later changes nothing, and a forked child
 * keeps its parent's choice.
 *
 * Thread safety: every function may be called from any thread. The descriptor table is guarded
 * by one mutex, held only for a table look-up. One descriptor MAY be used by several threads at
 * once: its requests are serialised by a mutex of that descriptor (one request and its response
 * at a time, in the order the threads get the mutex), so separate descriptors are faster for
 * parallel work, and a call that is reconnecting holds up the calls queued behind it. kv_close()
 * on a descriptor that another thread is using makes the descriptor invalid at once for new and
 * queued calls (EBADF); a call under way that is waiting (for an answer, a connection or a
 * back-off) is woken up (its socket is shut down) and returns -1 EBADF, and whether its request
 * was applied is unknown. The connection is closed when the last such call returns; kv_close()
 * itself never blocks. No call ever touches freed memory.
 *
 * Descriptors: a descriptor is a file descriptor, the socket of its data connection, and behaves
 * as one towards the rest of the program: poll() and select() on it work (it is writable while
 * connected; readable only when the server sent something unasked or closed the connection, which
 * the next call then handles), it counts against the file limit, and it is close-on-exec. A
 * reconnection puts the new connection at the same number in one step (dup3), so the number is
 * never free in between and no open() of the program can take it. Do not read, write, shut down
 * or close it yourself: a descriptor closed with close() instead of kv_close() is no longer the
 * library's, and every later call on it fails with -1 EBADF without touching whatever file gets
 * the number next (the library checks the socket's identity, fstat st_dev/st_ino, at each call,
 * and sends with send(), which fails on anything that is not a socket). Closing it under a call in
 * progress in another thread is a bug, as it is for any file descriptor. A closed descriptor's
 * number is issued again as file descriptors are (the lowest free number).
 *
 * Signals: the library never raises SIGPIPE in the caller (it sends with MSG_NOSIGNAL), and it
 * retries reads and writes interrupted by a signal handler (EINTR).
 *
 * fork(): a descriptor belongs to the process that made its connection. A child may go on using
 * the descriptors it inherited: its first call on one gives it a connection and a session of its
 * own (the child's copy of the parent's socket is closed, never shut down, and the new connection
 * takes the same number), so the parent's connection and session stay the parent's and no write
 * of either is lost or answered for the other. That first call connects as a reconnection does
 * (with reconnection off: one attempt, whose error is the call's). A child may also call
 * kv_connect() itself; both work even if another thread of the parent was inside the library at
 * the fork.
 * kv_close() in the child closes only the child's copy.
 */
#ifndef PSISKV_H
#define PSISKV_H

#include <stdint.h> /* uint32_t in the prototypes below */
#include <stdlib.h> /* the classic programs call exit() and malloc() without including it */

/*
 * Library version. MAJOR changes exactly when the ABI does, and is the number in the soname
 * (libpsiskv.so.1). MINOR adds compatible features; PATCH fixes.
 */
#define PSISKV_VERSION_MAJOR 1
#define PSISKV_VERSION_MINOR 3
#define PSISKV_VERSION_PATCH 0
#define PSISKV_VERSION_STRING "1.3.0"

/*
 * The library is built with -fvisibility=hidden: only what carries PSISKV_API is exported from
 * libpsiskv.so, so the codec and socket helpers inside cannot clash with a program's symbols.
 */
#if defined(__GNUC__) && __GNUC__ >= 4
#define PSISKV_API __attribute__((visibility("default")))
#else
#define PSISKV_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Why the input pointers are const (the classic API had plain char *): a caller passing a string
 * literal, kv_connect("127.0.0.1", 9999) or kv_write(fd, k, "abc", 4, 0), must compile without
 * warnings. In C++ a literal is const char[N] and does not convert to char * (an error, or a
 * -Wwrite-strings warning); in C it does, but -Wwrite-strings warns too. The library never writes
 * through these pointers, and every char * converts to const char * implicitly, so every caller
 * of the classic API still compiles and links (const does not change a C symbol). kv_read's
 * buffer is written, and stays char *.
 */

/*
 * Connects to the Front Server at kv_server_ip (a dotted IPv4 address or a host name) and port,
 * learns where the Data Server is, and opens a session there. Returns a descriptor > 0, or -1.
 */
PSISKV_API int kv_connect(const char *kv_server_ip, int kv_server_port);

/* Closes a descriptor. Harmless (no-op) on a closed or bogus descriptor. */
PSISKV_API void kv_close(int kv_descriptor);

/*
 * Stores value_length bytes from value under key (value may be NULL when value_length is 0).
 * kv_overwrite == 0: only if the key holds no value (atomic check-and-insert), else -2.
 * kv_overwrite != 0: replaces any earlier value. Returns 0, -2 or -1.
 */
PSISKV_API int kv_write(int kv_descriptor, uint32_t key, const char *value, uint32_t value_length,
                        int kv_overwrite);

/*
 * Copies at most value_length bytes of the value stored under key into value and returns the
 * stored length (which may exceed value_length), -2 if there is no such key, or -1.
 * With PSISKV_READ_RETURNS=zero in the environment, 0 instead of the stored length (see above).
 */
PSISKV_API int kv_read(int kv_descriptor, uint32_t key, char *value, uint32_t value_length);

/* Removes key. Returns 0 if it was removed, -1 if there was no such key or on error. */
PSISKV_API int kv_delete(int kv_descriptor, uint32_t key);

#ifdef __cplusplus
}
#endif

#endif /* PSISKV_H */
