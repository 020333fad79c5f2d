/*
 * fuzz_reader.c - libFuzzer target: psiskv_net's receive buffer (psiskv_net_reader_take,
 * psiskv_net_reader_read, and psiskv_net_read_fully behind it), fed by a recv that this program
 * defines in place of the C library's (the definition in the executable wins): it serves the
 * input's bytes in pieces the input chooses, interrupted by EINTR when asked, and reports end of
 * stream when they run out. No socket, no timing.
 *
 * Input: byte 0, the most bytes one recv returns (0: as many as asked); byte 1, flags (bit 0:
 * every other recv fails with EINTR first; bit 1: a body is read as a 4-byte take and the rest
 * with reader_read, as a GET OK is; bit 2: a body up to the buffer's size is taken whole); then
 * the stream. The stream is read as the library reads responses: a 20-byte header taken, then
 * body length bytes (clamped to what the input could hold), until the stream ends.
 * Asserted: every byte handed over is the stream's next byte, in order; unread() is what recv
 * delivered less what was handed over; a failure is end of stream (ECONNRESET) and only once
 * the stream has run out; every recv asks for room the destination really has (this recv fills
 * all the room it is offered, which AddressSanitizer checks). Seeds: the golden vectors behind
 * the two control bytes, and all of them as one stream (seed-corpus.sh).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "psiskv_net.h"
#include "psiskv_proto.h"

#define REQUIRE(cond)                                                                \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      fprintf(stderr, "fuzz_reader: line %d: %s does not hold\n", __LINE__, #cond); \
      abort();                                                                       \
    }                                                                                \
  } while (0)

/* The descriptor number the reader is given; recv below serves any. */
#define FAKE_FD 1000
/* Bodies read whole are at most this long (an input cannot hold more anyway). */
#define MAX_BODY_BYTES (1u << 20)

static const uint8_t *stream;
static size_t stream_len;
static size_t delivered; /* bytes recv has handed out */
static size_t chunk;     /* most bytes per recv; 0: no limit */
static int eintr_every_other;
static unsigned recvs;

ssize_t recv(int fd, void *buf, size_t n, int flags) {
  size_t m;
  (void)fd;
  (void)flags;
  recvs++;
  if (eintr_every_other && recvs % 2 == 1) {
    errno = EINTR;
    return -1;
  }
  memset(buf, 0xEE, n); /* the whole room offered must be the destination's */
  if (delivered == stream_len) return 0;
  m = stream_len - delivered;
  if (m > n) m = n;
  if (chunk > 0 && m > chunk) m = chunk;
  memcpy(buf, stream + delivered, m);
  delivered += m;
  return (ssize_t)m;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  psiskv_net_reader r;
  size_t consumed = 0; /* bytes handed over by the reader */
  uint8_t flags;
  if (size < 2) return 0;
  chunk = data[0];
  flags = data[1];
  eintr_every_other = flags & 1;
  stream = data + 2;
  stream_len = size - 2;
  delivered = 0;
  recvs = 0;
  if (psiskv_net_reader_init(&r) < 0) return 0;
  for (;;) {
    const uint8_t *raw;
    psiskv_header h;
    size_t n;
    raw = psiskv_net_reader_take(&r, FAKE_FD, PSISKV_HEADER_BYTES, PSISKV_NO_DEADLINE);
    if (raw == NULL) {
      REQUIRE(errno == ECONNRESET && stream_len - consumed < PSISKV_HEADER_BYTES);
      break;
    }
    REQUIRE(memcmp(raw, stream + consumed, PSISKV_HEADER_BYTES) == 0);
    consumed += PSISKV_HEADER_BYTES;
    REQUIRE(psiskv_net_reader_unread(&r) == delivered - consumed);
    psiskv_header_decode(raw, &h);
    n = h.body_length;
    if (n > stream_len + 1) n = stream_len + 1; /* longer than the stream: fails at its end */
    if (n > MAX_BODY_BYTES) n = MAX_BODY_BYTES;
    if ((flags & 4) && n <= PSISKV_NET_RECV_BUFFER_BYTES) {
      const uint8_t *body = psiskv_net_reader_take(&r, FAKE_FD, n, PSISKV_NO_DEADLINE);
      if (body == NULL) {
        REQUIRE(errno == ECONNRESET && stream_len - consumed < n);
        break;
      }
      REQUIRE(memcmp(body, stream + consumed, n) == 0);
      consumed += n;
    } else {
      size_t prefix = (flags & 2) && n >= 4 ? 4 : 0;
      uint8_t *dst;
      if (prefix > 0) {
        const uint8_t *p = psiskv_net_reader_take(&r, FAKE_FD, prefix, PSISKV_NO_DEADLINE);
        if (p == NULL) {
          REQUIRE(errno == ECONNRESET && stream_len - consumed < prefix);
          break;
        }
        REQUIRE(memcmp(p, stream + consumed, prefix) == 0);
        consumed += prefix;
      }
      dst = (uint8_t *)malloc(n - prefix > 0 ? n - prefix : 1); /* exactly the rest */
      if (dst == NULL) break;
      if (psiskv_net_reader_read(&r, FAKE_FD, dst, n - prefix, PSISKV_NO_DEADLINE) < 0) {
        REQUIRE(errno == ECONNRESET && stream_len - consumed < n - prefix);
        free(dst);
        break;
      }
      REQUIRE(n - prefix == 0 || memcmp(dst, stream + consumed, n - prefix) == 0);
      consumed += n - prefix;
      free(dst);
    }
    REQUIRE(psiskv_net_reader_unread(&r) == delivered - consumed);
  }
  REQUIRE(consumed <= delivered && delivered <= stream_len);
  psiskv_net_reader_free(&r);
  return 0;
}
