/*
 * psiskv_proto.c - the psiskv wire codec (see psiskv_proto.h for the contract: no I/O).
 */
#include "psiskv_proto.h"

#include <string.h>

uint16_t psiskv_get_u16(const uint8_t *p) {
  return (uint16_t)(((unsigned)p[0] << 8) | (unsigned)p[1]);
}

uint32_t psiskv_get_u32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

uint64_t psiskv_get_u64(const uint8_t *p) {
  return ((uint64_t)psiskv_get_u32(p) << 32) | (uint64_t)psiskv_get_u32(p + 4);
}

void psiskv_put_u16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

void psiskv_put_u32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

void psiskv_put_u64(uint8_t *p, uint64_t v) {
  psiskv_put_u32(p, (uint32_t)(v >> 32));
  psiskv_put_u32(p + 4, (uint32_t)v);
}

void psiskv_header_encode(uint8_t *buf, const psiskv_header *h) {
  buf[PSISKV_OFF_MAGIC] = h->magic;
  buf[PSISKV_OFF_VERSION] = h->version;
  buf[PSISKV_OFF_OPCODE] = h->opcode;
  buf[PSISKV_OFF_FLAGS_OR_STATUS] = h->flags_or_status;
  psiskv_put_u32(buf + PSISKV_OFF_KEY, h->key);
  psiskv_put_u64(buf + PSISKV_OFF_REQUEST_ID, h->request_id);
  psiskv_put_u32(buf + PSISKV_OFF_BODY_LENGTH, h->body_length);
}

void psiskv_header_decode(const uint8_t *buf, psiskv_header *h) {
  h->magic = buf[PSISKV_OFF_MAGIC];
  h->version = buf[PSISKV_OFF_VERSION];
  h->opcode = buf[PSISKV_OFF_OPCODE];
  h->flags_or_status = buf[PSISKV_OFF_FLAGS_OR_STATUS];
  h->key = psiskv_get_u32(buf + PSISKV_OFF_KEY);
  h->request_id = psiskv_get_u64(buf + PSISKV_OFF_REQUEST_ID);
  h->body_length = psiskv_get_u32(buf + PSISKV_OFF_BODY_LENGTH);
}

const char *psiskv_opcode_name(unsigned code) {
  switch (code) {
    case PSISKV_OP_HELLO: return "HELLO";
    case PSISKV_OP_SESSION: return "SESSION";
    case PSISKV_OP_PING: return "PING";
    case PSISKV_OP_STATS: return "STATS";
    case PSISKV_OP_PUT: return "PUT";
    case PSISKV_OP_GET: return "GET";
    case PSISKV_OP_DELETE: return "DELETE";
    case PSISKV_OP_INIT: return "INIT";
    case PSISKV_OP_HEARTBEAT: return "HEARTBEAT";
    case PSISKV_OP_SHUTDOWN: return "SHUTDOWN";
    case PSISKV_OP_STATUS: return "STATUS";
    case PSISKV_OP_CHALLENGE: return "CHALLENGE";
    default: return "?";
  }
}

const char *psiskv_status_name(unsigned code) {
  switch (code) {
    case PSISKV_ST_OK: return "OK";
    case PSISKV_ST_KEY_EXISTS: return "KEY_EXISTS";
    case PSISKV_ST_NOT_FOUND: return "NOT_FOUND";
    case PSISKV_ST_BAD_REQUEST: return "BAD_REQUEST";
    case PSISKV_ST_UNKNOWN_OPCODE: return "UNKNOWN_OPCODE";
    case PSISKV_ST_TOO_LARGE: return "TOO_LARGE";
    case PSISKV_ST_UNSUPPORTED_VERSION: return "UNSUPPORTED_VERSION";
    case PSISKV_ST_NO_SESSION: return "NO_SESSION";
    case PSISKV_ST_FORBIDDEN: return "FORBIDDEN";
    case PSISKV_ST_SERVER_ERROR: return "SERVER_ERROR";
    case PSISKV_ST_UNAVAILABLE: return "UNAVAILABLE";
    default: return "?";
  }
}

int psiskv_opcode_known(unsigned code) {
  return psiskv_opcode_name(code)[0] != '?';
}

int psiskv_status_known(unsigned code) {
  return psiskv_status_name(code)[0] != '?';
}

/* Header of a request (magic 0xA5) or response (magic 0x5A); version is always ours. */
static size_t encode_header(uint8_t *buf, uint8_t magic, uint8_t opcode, uint8_t flags_or_status,
                            uint32_t key, uint64_t request_id, uint32_t body_length) {
  psiskv_header h;
  h.magic = magic;
  h.version = PSISKV_PROTOCOL_VERSION;
  h.opcode = opcode;
  h.flags_or_status = flags_or_status;
  h.key = key;
  h.request_id = request_id;
  h.body_length = body_length;
  psiskv_header_encode(buf, &h);
  return PSISKV_HEADER_BYTES;
}

static size_t request(uint8_t *buf, uint8_t opcode, uint8_t flags, uint32_t key,
                      uint64_t request_id, uint32_t body_length) {
  return encode_header(buf, PSISKV_REQUEST_MAGIC, opcode, flags, key, request_id, body_length);
}

static size_t response(uint8_t *buf, uint8_t opcode, uint8_t status, uint32_t key,
                       uint64_t request_id, uint32_t body_length) {
  return encode_header(buf, PSISKV_RESPONSE_MAGIC, opcode, status, key, request_id, body_length);
}

size_t psiskv_encode_hello(uint8_t *buf, uint64_t request_id) {
  return request(buf, PSISKV_OP_HELLO, 0, 0, request_id, 0);
}

size_t psiskv_encode_hello_ok(uint8_t *buf, uint64_t request_id, uint32_t ipv4, uint16_t port) {
  response(buf, PSISKV_OP_HELLO, PSISKV_ST_OK, 0, request_id, PSISKV_HELLO_RESPONSE_BODY_BYTES);
  psiskv_put_u32(buf + PSISKV_HEADER_BYTES, ipv4);
  psiskv_put_u16(buf + PSISKV_HEADER_BYTES + 4, port);
  return PSISKV_HEADER_BYTES + PSISKV_HELLO_RESPONSE_BODY_BYTES;
}

size_t psiskv_encode_session(uint8_t *buf, uint64_t request_id, uint64_t session_id,
                             const uint8_t *secret) {
  request(buf, PSISKV_OP_SESSION, 0, 0, request_id, PSISKV_SESSION_REQUEST_BODY_BYTES);
  psiskv_put_u64(buf + PSISKV_HEADER_BYTES, session_id);
  memcpy(buf + PSISKV_HEADER_BYTES + 8, secret, PSISKV_SESSION_SECRET_BYTES);
  return PSISKV_HEADER_BYTES + PSISKV_SESSION_REQUEST_BODY_BYTES;
}

size_t psiskv_encode_session_ok(uint8_t *buf, uint64_t request_id, uint64_t session_id,
                                const uint8_t *secret, uint32_t max_value_bytes) {
  response(buf, PSISKV_OP_SESSION, PSISKV_ST_OK, 0, request_id,
           PSISKV_SESSION_RESPONSE_BODY_BYTES);
  psiskv_put_u64(buf + PSISKV_HEADER_BYTES, session_id);
  memcpy(buf + PSISKV_HEADER_BYTES + 8, secret, PSISKV_SESSION_SECRET_BYTES);
  psiskv_put_u32(buf + PSISKV_HEADER_BYTES + 8 + PSISKV_SESSION_SECRET_BYTES, max_value_bytes);
  return PSISKV_HEADER_BYTES + PSISKV_SESSION_RESPONSE_BODY_BYTES;
}

size_t psiskv_encode_ping(uint8_t *buf, uint64_t request_id) {
  return request(buf, PSISKV_OP_PING, 0, 0, request_id, 0);
}

size_t psiskv_encode_put_header(uint8_t *buf, uint32_t key, uint64_t request_id, int overwrite,
                                uint32_t value_length) {
  return request(buf, PSISKV_OP_PUT, overwrite ? PSISKV_FLAG_OVERWRITE : 0, key, request_id,
                 value_length);
}

size_t psiskv_encode_get(uint8_t *buf, uint32_t key, uint64_t request_id, uint32_t capacity) {
  request(buf, PSISKV_OP_GET, 0, key, request_id, PSISKV_GET_REQUEST_BODY_BYTES);
  psiskv_put_u32(buf + PSISKV_HEADER_BYTES, capacity);
  return PSISKV_HEADER_BYTES + PSISKV_GET_REQUEST_BODY_BYTES;
}

size_t psiskv_encode_get_ok_prefix(uint8_t *buf, uint32_t key, uint64_t request_id,
                                   uint32_t stored_length, uint32_t sent) {
  response(buf, PSISKV_OP_GET, PSISKV_ST_OK, key, request_id,
           PSISKV_GET_RESPONSE_PREFIX_BYTES + sent);
  psiskv_put_u32(buf + PSISKV_HEADER_BYTES, stored_length);
  return PSISKV_HEADER_BYTES + PSISKV_GET_RESPONSE_PREFIX_BYTES;
}

size_t psiskv_encode_delete(uint8_t *buf, uint32_t key, uint64_t request_id) {
  return request(buf, PSISKV_OP_DELETE, 0, key, request_id, 0);
}

size_t psiskv_encode_status(uint8_t *buf, uint8_t opcode, uint8_t status, uint32_t key,
                            uint64_t request_id) {
  return response(buf, opcode, status, key, request_id, 0);
}

void psiskv_decode_hello_ok(const uint8_t *body, uint32_t *ipv4, uint16_t *port) {
  *ipv4 = psiskv_get_u32(body);
  *port = psiskv_get_u16(body + 4);
}

void psiskv_decode_session(const uint8_t *body, uint64_t *session_id, uint8_t *secret) {
  *session_id = psiskv_get_u64(body);
  memcpy(secret, body + 8, PSISKV_SESSION_SECRET_BYTES);
}

void psiskv_decode_session_ok(const uint8_t *body, uint64_t *session_id, uint8_t *secret,
                              uint32_t *max_value_bytes) {
  *session_id = psiskv_get_u64(body);
  memcpy(secret, body + 8, PSISKV_SESSION_SECRET_BYTES);
  *max_value_bytes = psiskv_get_u32(body + 8 + PSISKV_SESSION_SECRET_BYTES);
}

int psiskv_session_secret_is_zero(const uint8_t *secret) {
  uint8_t any = 0;
  int i;
  for (i = 0; i < PSISKV_SESSION_SECRET_BYTES; i++) any |= secret[i];
  return any == 0;
}

uint32_t psiskv_decode_get_capacity(const uint8_t *body) {
  return psiskv_get_u32(body);
}

uint32_t psiskv_decode_get_ok_stored_length(const uint8_t *body) {
  return psiskv_get_u32(body);
}

/* PROTOCOL.md 5, 6: may a response to this opcode carry this result status? */
static int result_allowed(uint8_t opcode, uint8_t status) {
  switch (status) {
    case PSISKV_ST_OK: return 1;
    case PSISKV_ST_KEY_EXISTS: return opcode == PSISKV_OP_PUT;
    case PSISKV_ST_NOT_FOUND: return opcode == PSISKV_OP_GET || opcode == PSISKV_OP_DELETE;
    default: return 0;
  }
}

/* PROTOCOL.md 4: body length of an OK response to a client opcode with a fixed OK body. */
static uint32_t ok_body_bytes(uint8_t opcode) {
  switch (opcode) {
    case PSISKV_OP_HELLO: return PSISKV_HELLO_RESPONSE_BODY_BYTES;
    case PSISKV_OP_SESSION: return PSISKV_SESSION_RESPONSE_BODY_BYTES;
    default: return 0; /* PING, PUT, DELETE */
  }
}

int psiskv_check_response(const psiskv_header *h, uint8_t opcode, uint32_t key,
                          uint64_t request_id, uint32_t get_capacity) {
  if (h->magic != PSISKV_RESPONSE_MAGIC) return PSISKV_CHECK_BAD_MAGIC;
  if (h->version != PSISKV_PROTOCOL_VERSION) return PSISKV_CHECK_BAD_VERSION;
  if (h->opcode != opcode) return PSISKV_CHECK_BAD_OPCODE;
  if (h->key != key) return PSISKV_CHECK_BAD_KEY;
  if (h->request_id != request_id) return PSISKV_CHECK_BAD_REQUEST_ID;
  if (!psiskv_status_known(h->flags_or_status)) return PSISKV_CHECK_UNKNOWN_STATUS;
  if (h->flags_or_status == PSISKV_ST_FORBIDDEN && opcode != PSISKV_OP_SESSION) {
    return PSISKV_CHECK_BAD_STATUS; /* 5, 6.2: only a SESSION presents a secret */
  }
  if (h->flags_or_status >= PSISKV_FIRST_ERROR_STATUS) {
    /* 5: error responses have an empty body. */
    return h->body_length == 0 ? PSISKV_CHECK_OK : PSISKV_CHECK_BAD_BODY_LENGTH;
  }
  if (!result_allowed(opcode, h->flags_or_status)) return PSISKV_CHECK_BAD_STATUS;
  if (h->flags_or_status != PSISKV_ST_OK) {
    return h->body_length == 0 ? PSISKV_CHECK_OK : PSISKV_CHECK_BAD_BODY_LENGTH;
  }
  if (opcode == PSISKV_OP_GET) {
    /* 6.5: 4 + min(capacity, stored); computed in 64 bits, capacity may be 0xFFFFFFFF. */
    uint64_t most = (uint64_t)PSISKV_GET_RESPONSE_PREFIX_BYTES + get_capacity;
    return h->body_length >= PSISKV_GET_RESPONSE_PREFIX_BYTES && h->body_length <= most
               ? PSISKV_CHECK_OK
               : PSISKV_CHECK_BAD_BODY_LENGTH;
  }
  return h->body_length == ok_body_bytes(opcode) ? PSISKV_CHECK_OK : PSISKV_CHECK_BAD_BODY_LENGTH;
}

int psiskv_check_get_ok_body(uint32_t body_length, uint32_t capacity, uint32_t stored_length) {
  uint32_t sent = capacity < stored_length ? capacity : stored_length;
  uint64_t expected = (uint64_t)PSISKV_GET_RESPONSE_PREFIX_BYTES + sent;
  return body_length == expected ? PSISKV_CHECK_OK : PSISKV_CHECK_BAD_BODY_LENGTH;
}

const char *psiskv_check_message(int check) {
  switch (check) {
    case PSISKV_CHECK_OK: return "ok";
    case PSISKV_CHECK_BAD_MAGIC: return "bad response magic";
    case PSISKV_CHECK_BAD_VERSION: return "unsupported response version";
    case PSISKV_CHECK_BAD_OPCODE: return "response opcode does not echo the request";
    case PSISKV_CHECK_BAD_KEY: return "response key does not echo the request";
    case PSISKV_CHECK_BAD_REQUEST_ID: return "response id does not echo the request";
    case PSISKV_CHECK_UNKNOWN_STATUS: return "unknown response status";
    case PSISKV_CHECK_BAD_STATUS: return "result status not allowed for this opcode";
    case PSISKV_CHECK_BAD_BODY_LENGTH: return "response body length breaks the protocol";
    default: return "?";
  }
}
