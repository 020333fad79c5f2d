/*
 * psiskv_connect.c - a descriptor's connection: exchanges and the set-up (see psiskv_connect.h).
 */
#define _POSIX_C_SOURCE 200809L

#include "psiskv_connect.h"

#include <errno.h>
#include <string.h>
#include <sys/uio.h>

#include "psiskv_net.h"

int psiskv_status_errno(uint8_t status) {
  switch (status) {
    case PSISKV_ST_TOO_LARGE: return EMSGSIZE;
    case PSISKV_ST_SERVER_ERROR: return EIO;
    case PSISKV_ST_UNAVAILABLE: return EAGAIN;
    case PSISKV_ST_FORBIDDEN: return EACCES; /* 6.2: the session is another client's */
    default: return EPROTO; /* BAD_REQUEST, UNKNOWN_OPCODE, UNSUPPORTED_VERSION, NO_SESSION */
  }
}

enum exchange_result psiskv_exchange(struct kv_entry *e, int fd, const uint8_t *request,
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

int psiskv_nothing_follows(const struct kv_entry *e) {
  return psiskv_net_reader_unread(&e->in) == 0;
}

void psiskv_drop(struct kv_entry *e, int err) {
  psiskv_net_shutdown(e->d);
  e->connected = 0;
  psiskv_net_reader_reset(&e->in);
  errno = err;
}

/*
 * One step of the set-up on a new socket connected to `to`: HELLO (opcode PSISKV_OP_HELLO) or
 * SESSION with e->session_id and e->secret, each with the next request id, and its response.
 * Returns SETUP_OK with the OK response's body_bytes bytes at *body (valid until the next read of
 * e->in) and the socket still open as e->setup_fd; else the socket is closed and errno says why:
 * unreachable when the socket cannot be made or connected or the connection breaks (at the Front
 * Server SETUP_FRONT_DOWN, at the Data Server SETUP_RETRY), SETUP_RETRY for UNAVAILABLE,
 * SETUP_FAILED for a protocol violation or another error status.
 */
static enum setup_result setup_step(struct kv_entry *e, uint8_t opcode,
                                    const struct sockaddr_in *to, size_t body_bytes,
                                    enum setup_result unreachable, int64_t deadline_ms,
                                    const uint8_t **body) {
  uint8_t buf[PSISKV_MAX_FIXED_BYTES];
  psiskv_header h;
  uint64_t id;
  size_t n;
  int fd = psiskv_entry_setup_open(e);
  if (fd < 0) return unreachable;
  if (psiskv_net_connect(fd, to, deadline_ms) < 0) goto cannot_reach;
  id = e->next_request_id++;
  n = opcode == PSISKV_OP_HELLO ? psiskv_encode_hello(buf, id)
                                : psiskv_encode_session(buf, id, e->session_id, e->secret);
  switch (psiskv_exchange(e, fd, buf, n, NULL, 0, 0, id, 0, deadline_ms, &h)) {
    case EXCHANGE_OK: break;
    case EXCHANGE_IO: goto cannot_reach;
    case EXCHANGE_PROTO: goto failed;
  }
  if (h.flags_or_status == PSISKV_ST_OK) {
    *body = psiskv_net_reader_take(&e->in, fd, body_bytes, deadline_ms);
    if (*body == NULL) goto cannot_reach;
  }
  if (!psiskv_nothing_follows(e)) {
    errno = EPROTO;
    goto failed;
  }
  if (h.flags_or_status != PSISKV_ST_OK) {
    errno = psiskv_status_errno(h.flags_or_status);
    psiskv_entry_setup_close(e);
    /* 6.1: UNAVAILABLE while no Data Server is ready (being relaunched): try again. */
    return h.flags_or_status == PSISKV_ST_UNAVAILABLE ? SETUP_RETRY : SETUP_FAILED;
  }
  return SETUP_OK;
cannot_reach:
  psiskv_entry_setup_close(e);
  return unreachable;
failed:
  psiskv_entry_setup_close(e);
  return SETUP_FAILED;
}

enum setup_result psiskv_establish(struct kv_entry *e, int64_t deadline_ms) {
  struct sockaddr_in data;
  const uint8_t *body = NULL;
  uint64_t session_id = 0;
  uint8_t secret[PSISKV_SESSION_SECRET_BYTES];
  uint32_t max_value_bytes = 0;
  uint32_t ipv4 = 0;
  uint16_t port = 0;
  enum setup_result r;
  /* HELLO: where is the Data Server? */
  r = setup_step(e, PSISKV_OP_HELLO, &e->front, PSISKV_HELLO_RESPONSE_BODY_BYTES,
                 SETUP_FRONT_DOWN, deadline_ms, &body);
  if (r != SETUP_OK) return r;
  psiskv_decode_hello_ok(body, &ipv4, &port);
  psiskv_entry_setup_close(e); /* 6.1: the client closes the front connection after the response */
  if (port == 0) {
    errno = EPROTO;
    return SETUP_FAILED;
  }
  data = e->front;
  if (ipv4 != PSISKV_HELLO_SAME_HOST) data.sin_addr.s_addr = htonl(ipv4);
  data.sin_port = htons(port);

  /* SESSION at the Data Server. */
  r = setup_step(e, PSISKV_OP_SESSION, &data, PSISKV_SESSION_RESPONSE_BODY_BYTES, SETUP_RETRY,
                 deadline_ms, &body);
  if (r != SETUP_OK) return r;
  psiskv_decode_session_ok(body, &session_id, secret, &max_value_bytes);
  /* 6.2: a session has a non-zero id and a secret (an all-zero one could never be presented).
   * 12.6: a resumed session keeps its id and secret; a Data Server that answers another pair has
   * not resumed it, and resending a write there would not be exactly once, so that is a protocol
   * violation too. */
  if (session_id == 0 || psiskv_session_secret_is_zero(secret) ||
      (e->session_id != PSISKV_SESSION_NEW &&
       (session_id != e->session_id || memcmp(secret, e->secret, sizeof secret) != 0))) {
    psiskv_entry_setup_close(e);
    errno = EPROTO;
    return SETUP_FAILED;
  }
  e->session_id = session_id;
  memcpy(e->secret, secret, sizeof secret);
  e->max_value_bytes = max_value_bytes;
  if (psiskv_entry_setup_keep(e) < 0) return SETUP_FAILED; /* errno: EMFILE, EBADF */
  return SETUP_OK;
}
