/*
 * fuzz_response.c - libFuzzer target: psiskv_proto's response decoding and checking, as
 * psiskv_lib uses them on every response (PROTOCOL.md 3, 5, 6, 8).
 *
 * Input: one selector byte, then the bytes of a response (a header and what follows). The
 * selector picks the request the response is checked against, so that both matching and
 * mismatching answers are explored:
 *   bit 7       the request's opcode is CLIENT_OPS[selector % 6] instead of the response's own
 *   bit 6 / 5   the request's key / id differs from the response's in its lowest bit
 *   bit 4       GET capacity 0xFFFFFFFF (the largest)
 *   bit 3       GET capacity half the value bytes of the response, else exactly those bytes
 * The target asserts what the library relies on when psiskv_check_response says OK: the
 * response echoes the request, an error carries no body (FORBIDDEN only answers a SESSION), a
 * result is one that opcode may have, a fixed OK body has its exact length, and a GET OK body
 * passes psiskv_check_get_ok_body only when it is exactly 4 + min(capacity, stored): its value
 * bytes are then copied into a buffer of exactly capacity bytes, which AddressSanitizer guards.
 * A broken assertion aborts (a crash for libFuzzer). Seeds: the golden vectors behind a zero
 * selector (seed-corpus.sh).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "psiskv_proto.h"

#define REQUIRE(cond)                                                                  \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      fprintf(stderr, "fuzz_response: line %d: %s does not hold\n", __LINE__, #cond); \
      abort();                                                                         \
    }                                                                                  \
  } while (0)

static const uint8_t CLIENT_OPS[] = {PSISKV_OP_HELLO, PSISKV_OP_SESSION, PSISKV_OP_PING,
                                     PSISKV_OP_PUT,   PSISKV_OP_GET,     PSISKV_OP_DELETE};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *msg = data + 1;
  size_t msg_len;
  const uint8_t *body;
  size_t body_avail;
  psiskv_header h;
  uint8_t selector;
  uint8_t opcode;
  uint32_t key;
  uint64_t id;
  uint32_t capacity;
  uint32_t value_bytes;
  int check;
  if (size < 1 + PSISKV_HEADER_BYTES) return 0;
  selector = data[0];
  msg_len = size - 1;
  psiskv_header_decode(msg, &h);
  body = msg + PSISKV_HEADER_BYTES;
  body_avail = msg_len - PSISKV_HEADER_BYTES;
  opcode = (selector & 0x80) ? CLIENT_OPS[selector % sizeof CLIENT_OPS] : h.opcode;
  key = h.key ^ (uint32_t)((selector >> 6) & 1);
  id = h.request_id ^ (uint64_t)((selector >> 5) & 1);
  value_bytes = h.body_length >= PSISKV_GET_RESPONSE_PREFIX_BYTES
                    ? h.body_length - PSISKV_GET_RESPONSE_PREFIX_BYTES
                    : 0;
  capacity = (selector & 0x10) ? UINT32_MAX : (selector & 0x08) ? value_bytes / 2 : value_bytes;

  REQUIRE(psiskv_opcode_name(h.opcode) != NULL && psiskv_status_name(h.flags_or_status) != NULL);
  check = psiskv_check_response(&h, opcode, key, id, capacity);
  REQUIRE(strcmp(psiskv_check_message(check), "?") != 0);
  if (check != PSISKV_CHECK_OK) return 0;

  /* The echo (3.1) and the status rules (5). */
  REQUIRE(h.magic == PSISKV_RESPONSE_MAGIC && h.version == PSISKV_PROTOCOL_VERSION);
  REQUIRE(h.opcode == opcode && h.key == key && h.request_id == id);
  REQUIRE(psiskv_status_known(h.flags_or_status));
  if (h.flags_or_status >= PSISKV_FIRST_ERROR_STATUS) {
    REQUIRE(h.body_length == 0);
    REQUIRE(h.flags_or_status != PSISKV_ST_FORBIDDEN || opcode == PSISKV_OP_SESSION);
    return 0;
  }
  if (h.flags_or_status == PSISKV_ST_KEY_EXISTS) REQUIRE(opcode == PSISKV_OP_PUT);
  if (h.flags_or_status == PSISKV_ST_NOT_FOUND) {
    REQUIRE(opcode == PSISKV_OP_GET || opcode == PSISKV_OP_DELETE);
  }
  if (h.flags_or_status != PSISKV_ST_OK) {
    REQUIRE(h.body_length == 0);
    return 0;
  }
  /* OK bodies (4, 6). */
  switch (opcode) {
    case PSISKV_OP_HELLO: {
      uint32_t ipv4;
      uint16_t port;
      REQUIRE(h.body_length == PSISKV_HELLO_RESPONSE_BODY_BYTES);
      if (body_avail >= PSISKV_HELLO_RESPONSE_BODY_BYTES) {
        psiskv_decode_hello_ok(body, &ipv4, &port);
      }
      break;
    }
    case PSISKV_OP_SESSION: {
      uint8_t secret[PSISKV_SESSION_SECRET_BYTES];
      uint64_t session;
      uint32_t max;
      REQUIRE(h.body_length == PSISKV_SESSION_RESPONSE_BODY_BYTES);
      if (body_avail >= PSISKV_SESSION_RESPONSE_BODY_BYTES) {
        psiskv_decode_session_ok(body, &session, secret, &max);
        (void)psiskv_session_secret_is_zero(secret);
      }
      break;
    }
    case PSISKV_OP_GET: {
      uint32_t stored;
      uint32_t sent;
      char *out;
      REQUIRE(h.body_length >= PSISKV_GET_RESPONSE_PREFIX_BYTES);
      REQUIRE((uint64_t)h.body_length <= (uint64_t)PSISKV_GET_RESPONSE_PREFIX_BYTES + capacity);
      if (body_avail < PSISKV_GET_RESPONSE_PREFIX_BYTES) break;
      stored = psiskv_decode_get_ok_stored_length(body);
      if (psiskv_check_get_ok_body(h.body_length, capacity, stored) != PSISKV_CHECK_OK) break;
      sent = h.body_length - PSISKV_GET_RESPONSE_PREFIX_BYTES;
      REQUIRE(sent == (capacity < stored ? capacity : stored));
      /* What the library copies into the caller's buffer of capacity bytes. */
      if (capacity > body_avail) break; /* do not allocate what the input cannot fill */
      out = (char *)malloc(capacity > 0 ? capacity : 1);
      if (out == NULL) break;
      memcpy(out, body + PSISKV_GET_RESPONSE_PREFIX_BYTES,
             sent < body_avail - PSISKV_GET_RESPONSE_PREFIX_BYTES
                 ? sent
                 : body_avail - PSISKV_GET_RESPONSE_PREFIX_BYTES);
      free(out);
      break;
    }
    default:
      REQUIRE(h.body_length == 0); /* PING, PUT, DELETE; control opcodes are none of C's */
      break;
  }
  return 0;
}
