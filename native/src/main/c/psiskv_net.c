/*
 * psiskv_net.c - socket I/O of libpsiskv (see psiskv_net.h for the contract).
 */
#define _GNU_SOURCE /* dup3 */

#include "psiskv_net.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int64_t psiskv_net_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left until the deadline, clamped to poll()'s int; -1 (infinite) for none. */
static int poll_timeout_ms(int64_t deadline_ms) {
  int64_t left;
  if (deadline_ms == PSISKV_NO_DEADLINE) return -1;
  left = deadline_ms - psiskv_net_now_ms();
  if (left <= 0) return 0;
  return left > INT_MAX ? INT_MAX : (int)left;
}

/* Waits until fd is ready for events or the deadline passes (ETIMEDOUT). Retries EINTR. */
static int wait_ready(int fd, short events, int64_t deadline_ms) {
  for (;;) {
    struct pollfd p;
    int r;
    p.fd = fd;
    p.events = events;
    p.revents = 0;
    r = poll(&p, 1, poll_timeout_ms(deadline_ms));
    if (r > 0) return 0; /* ready, or an error/hang-up the next call will report */
    if (r == 0) {
      errno = ETIMEDOUT;
      return -1;
    }
    if (errno != EINTR) return -1;
  }
}

void psiskv_net_close(int fd) {
  int saved = errno;
  if (fd >= 0) close(fd);
  errno = saved;
}

int psiskv_net_resolve_ipv4(const char *host, int port, struct sockaddr_in *out) {
  struct addrinfo hints;
  struct addrinfo *res = NULL;
  int rc;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_INET; /* PROTOCOL.md 2: IPv4 */
  hints.ai_socktype = SOCK_STREAM;
  rc = getaddrinfo(host, NULL, &hints, &res);
  if (rc != 0 || res == NULL) {
    if (rc == EAI_MEMORY) {
      errno = ENOMEM;
    } else {
      errno = EHOSTUNREACH;
    }
    if (res != NULL) freeaddrinfo(res);
    return -1;
  }
  memset(out, 0, sizeof *out);
  memcpy(out, res->ai_addr, sizeof *out);
  out->sin_family = AF_INET;
  out->sin_port = htons((uint16_t)port);
  freeaddrinfo(res);
  return 0;
}

static int set_blocking(int fd, int blocking) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0) return -1;
  flags = blocking ? (flags & ~O_NONBLOCK) : (flags | O_NONBLOCK);
  return fcntl(fd, F_SETFL, flags);
}

int psiskv_net_socket(void) { return socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); }

int psiskv_net_connect(int fd, const struct sockaddr_in *addr, int64_t deadline_ms) {
  int one = 1;
  /* Non-blocking connect + poll: a blocking connect to a host that drops SYNs waits for the
   * kernel's retries (minutes); the caller's deadline bounds it instead. */
  if (set_blocking(fd, 0) < 0) return -1;
  if (connect(fd, (const struct sockaddr *)addr, sizeof *addr) < 0) {
    int err = 0;
    socklen_t len = sizeof err;
    if (errno != EINPROGRESS && errno != EINTR) return -1;
    /* EINTR: the connect goes on in the background, exactly as EINPROGRESS. */
    if (wait_ready(fd, POLLOUT, deadline_ms) < 0) return -1;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return -1;
    if (err != 0) {
      errno = err;
      return -1;
    }
  }
  if (set_blocking(fd, 1) < 0) return -1;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0) return -1;
  return 0;
}

int psiskv_net_move_at_least(int fd, int lowest) {
  int moved;
  if (fd >= lowest) return fd;
  moved = fcntl(fd, F_DUPFD_CLOEXEC, lowest);
  psiskv_net_close(fd);
  return moved;
}

int psiskv_net_replace(int fd, int target) {
  int rc;
  do {
    rc = dup3(fd, target, O_CLOEXEC);
  } while (rc < 0 && (errno == EINTR || errno == EBUSY)); /* EBUSY: a race inside open(2) */
  psiskv_net_close(fd);
  return rc < 0 ? -1 : 0;
}

int psiskv_net_identity_of(int fd, psiskv_net_identity *out) {
  struct stat st;
  if (fstat(fd, &st) < 0) return -1;
  out->dev = st.st_dev;
  out->ino = st.st_ino;
  return 0;
}

int psiskv_net_identity_same(const psiskv_net_identity *a, const psiskv_net_identity *b) {
  return a->dev == b->dev && a->ino == b->ino;
}

void psiskv_net_shutdown(int fd) {
  int saved = errno;
  if (fd >= 0) shutdown(fd, SHUT_RDWR);
  errno = saved;
}

/*
 * Why the loops below: a stream socket may take or deliver fewer bytes than asked (a short write
 * when the send buffer fills, a short read when only part of a message has arrived), and a signal
 * handler in the host program interrupts a blocked call with EINTR. Neither is an error; the loop
 * goes on until every byte has moved.
 */
int psiskv_net_writev_fully(int fd, struct iovec *iov, int iovcnt) {
  while (iovcnt > 0) {
    struct msghdr msg;
    ssize_t sent;
    if (iov->iov_len == 0) {
      iov++;
      iovcnt--;
      continue;
    }
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t)iovcnt;
    /* MSG_NOSIGNAL: a peer that vanished gives EPIPE here instead of killing the caller with
     * SIGPIPE (the host program owns its signal dispositions, not this library). */
    sent = sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (sent < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    while (sent > 0) {
      size_t step = (size_t)sent < iov->iov_len ? (size_t)sent : iov->iov_len;
      iov->iov_base = (char *)iov->iov_base + step;
      iov->iov_len -= step;
      sent -= (ssize_t)step;
      if (iov->iov_len == 0) {
        iov++;
        iovcnt--;
      }
    }
  }
  return 0;
}

int psiskv_net_write_fully(int fd, const void *buf, size_t n) {
  const char *p = (const char *)buf;
  while (n > 0) {
    /* MSG_NOSIGNAL as in psiskv_net_writev_fully. send, not sendmsg: one buffer needs no iovec
     * for the kernel to copy in. */
    ssize_t sent = send(fd, p, n, MSG_NOSIGNAL);
    if (sent < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += sent;
    n -= (size_t)sent;
  }
  return 0;
}

int psiskv_net_read_fully(int fd, void *buf, size_t n, int64_t deadline_ms) {
  char *p = (char *)buf;
  while (n > 0) {
    ssize_t r;
    if (deadline_ms != PSISKV_NO_DEADLINE && wait_ready(fd, POLLIN, deadline_ms) < 0) return -1;
    r = recv(fd, p, n, 0);
    if (r > 0) {
      p += r;
      n -= (size_t)r;
    } else if (r == 0) {
      errno = ECONNRESET; /* end of stream in the middle of a message: the peer is gone */
      return -1;
    } else if (errno != EINTR) {
      return -1;
    }
  }
  return 0;
}

int psiskv_net_reader_init(psiskv_net_reader *r) {
  r->bytes = (uint8_t *)malloc(PSISKV_NET_RECV_BUFFER_BYTES);
  r->pos = 0;
  r->fill = 0;
  if (r->bytes == NULL) {
    errno = ENOMEM;
    return -1;
  }
  return 0;
}

void psiskv_net_reader_free(psiskv_net_reader *r) {
  int saved = errno;
  free(r->bytes);
  r->bytes = NULL;
  r->pos = 0;
  r->fill = 0;
  errno = saved;
}

void psiskv_net_reader_reset(psiskv_net_reader *r) {
  r->pos = 0;
  r->fill = 0;
}

size_t psiskv_net_reader_unread(const psiskv_net_reader *r) { return r->fill - r->pos; }

/* Consumes n buffered bytes; an emptied buffer starts again at its beginning, so that the next
 * recv has all of its room. */
static void reader_consume(psiskv_net_reader *r, size_t n) {
  r->pos += n;
  if (r->pos == r->fill) {
    r->pos = 0;
    r->fill = 0;
  }
}

const uint8_t *psiskv_net_reader_take(psiskv_net_reader *r, int fd, size_t n,
                                      int64_t deadline_ms) {
  const uint8_t *p;
  if (r->fill - r->pos < n && r->pos + n > PSISKV_NET_RECV_BUFFER_BYTES) {
    /* Too little room behind the unread bytes for the rest of n: move them to the front. */
    memmove(r->bytes, r->bytes + r->pos, r->fill - r->pos);
    r->fill -= r->pos;
    r->pos = 0;
  }
  /* The loop of psiskv_net_read_fully (short reads, EINTR), each recv asking for all the room. */
  while (r->fill - r->pos < n) {
    ssize_t got;
    if (deadline_ms != PSISKV_NO_DEADLINE && wait_ready(fd, POLLIN, deadline_ms) < 0) return NULL;
    got = recv(fd, r->bytes + r->fill, PSISKV_NET_RECV_BUFFER_BYTES - r->fill, 0);
    if (got > 0) {
      r->fill += (size_t)got;
    } else if (got == 0) {
      errno = ECONNRESET; /* end of stream in the middle of a message: the peer is gone */
      return NULL;
    } else if (errno != EINTR) {
      return NULL;
    }
  }
  p = r->bytes + r->pos;
  reader_consume(r, n); /* p stays valid: nothing is received before the next call */
  return p;
}

int psiskv_net_reader_read(psiskv_net_reader *r, int fd, void *dst, size_t n, int64_t deadline_ms) {
  size_t buffered = r->fill - r->pos < n ? r->fill - r->pos : n;
  if (buffered > 0) {
    memcpy(dst, r->bytes + r->pos, buffered);
    reader_consume(r, buffered);
  }
  if (buffered == n) return 0;
  return psiskv_net_read_fully(fd, (char *)dst + buffered, n - buffered, deadline_ms);
}
