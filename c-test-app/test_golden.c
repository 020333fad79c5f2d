/*
 * test_golden.c - the C codec against the golden vectors shared with Java (PROTOCOL.md 10).
 *
 *   usage: test_golden path/to/golden-vectors.txt
 *
 * The file is the only source of the messages' bytes: this program holds the fields of each
 * vector (as PROTOCOL.md describes them) and no bytes of any message. For every client message of
 * the file (section 6 and the error responses of section 5): encodes the message with
 * psiskv_proto.c (compiled into this program) from the fields listed below and compares the
 * bytes; decodes the file's bytes and checks every header and body field, and that a response
 * passes psiskv_check_response against the request it answers. A vector name this program does
 * not know, or a known vector missing from the file, is a failure: a vector added on the Java
 * side must be added here too. Prints "N passed, M failed" (one count per vector, plus one per
 * missing vector); exits 1 on any failure.
 *
 * Control messages (section 7: CHALLENGE, INIT, HEARTBEAT, SHUTDOWN, STATUS) pass only between
 * the two Java servers, and the C library does not send STATS (6.7); the C codec has no bodies
 * for them (their nonces, HMACs and counters are checked by the Java tests). Their vectors are checked here as far as the shared header goes: the
 * header encoded from its fields with psiskv_header_encode must equal the file's first 20
 * bytes, the decoded header must hold those fields, and the body length must be the bytes that
 * follow. So a change of the header or of the version byte shows here too.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "psiskv_proto.h"

enum kind {
  K_HELLO,
  K_HELLO_OK,
  K_SESSION,
  K_SESSION_OK,
  K_PING,
  K_PUT,
  K_GET,
  K_GET_OK,
  K_DELETE,
  K_STATUS,          /* any client response with an empty body: results and every error */
  K_CONTROL_REQUEST, /* section 7: header only (see the comment at the top) */
  K_CONTROL_RESPONSE
};

/* The session secrets of the vectors: none (16 zero bytes, a new session), or the one of
 * PROTOCOL.md 6.2's vectors, 00 11 22 .. ff (byte i is 0x11 * i). */
enum secret { SECRET_ZERO, SECRET_EXAMPLE };

/*
 * One vector's fields. a and b are the body fields of its kind:
 *   HELLO_OK: a = IPv4 address, b = port        SESSION: a = session id, secret
 *   SESSION_OK: a = session id, secret, b = max GET: b = capacity
 *   GET_OK: b = stored length                   CONTROL_*: b = body length
 * value / value_len: the value bytes that follow a PUT header or a GET OK prefix.
 */
struct vector {
  const char *name;
  enum kind kind;
  unsigned opcode;
  unsigned flags_or_status;
  uint32_t key;
  uint64_t id;
  uint64_t a;
  uint32_t b;
  enum secret secret;
  const char *value;
  size_t value_len;
};

#define RESPONSE(op, st, key, id) K_STATUS, op, st, key, id, 0, 0, SECRET_ZERO, NULL, 0
#define CONTROL(k, op, id, body) k, op, 0, 0, id, 0, body, SECRET_ZERO, NULL, 0

static const struct vector VECTORS[] = {
    {"hello_request", K_HELLO, PSISKV_OP_HELLO, 0, 0, 1, 0, 0, SECRET_ZERO, NULL, 0},
    {"hello_response", K_HELLO_OK, PSISKV_OP_HELLO, PSISKV_ST_OK, 0, 1, 0x7f000001, 10000,
     SECRET_ZERO, NULL, 0},
    {"hello_response_same_host", K_HELLO_OK, PSISKV_OP_HELLO, PSISKV_ST_OK, 0, 1, 0, 10000,
     SECRET_ZERO, NULL, 0},
    {"hello_response_unavailable", RESPONSE(PSISKV_OP_HELLO, PSISKV_ST_UNAVAILABLE, 0, 1)},
    {"session_request_new", K_SESSION, PSISKV_OP_SESSION, 0, 0, 2, 0, 0, SECRET_ZERO, NULL, 0},
    {"session_request_resume", K_SESSION, PSISKV_OP_SESSION, 0, 0, 2, 0x0123456789abcdefULL, 0,
     SECRET_EXAMPLE, NULL, 0},
    {"session_response", K_SESSION_OK, PSISKV_OP_SESSION, PSISKV_ST_OK, 0, 2,
     0x0123456789abcdefULL, 64u * 1024 * 1024, SECRET_EXAMPLE, NULL, 0},
    {"session_response_forbidden", RESPONSE(PSISKV_OP_SESSION, PSISKV_ST_FORBIDDEN, 0, 2)},
    {"ping_request", K_PING, PSISKV_OP_PING, 0, 0, 3, 0, 0, SECRET_ZERO, NULL, 0},
    {"ping_response", RESPONSE(PSISKV_OP_PING, PSISKV_ST_OK, 0, 3)},
    /* 6.7, header only like the control messages; b is the body length. */
    {"stats_request", CONTROL(K_CONTROL_REQUEST, PSISKV_OP_STATS, 13, 0)},
    {"stats_response", CONTROL(K_CONTROL_RESPONSE, PSISKV_OP_STATS, 13, 50)},
    {"put_request", K_PUT, PSISKV_OP_PUT, 0, 7, 4, 0, 0, SECRET_ZERO, "7\0", 2},
    {"put_request_overwrite", K_PUT, PSISKV_OP_PUT, PSISKV_FLAG_OVERWRITE, 0xffffffffu, 5, 0, 0,
     SECRET_ZERO, "\x00\xff\x80", 3},
    {"put_request_empty_value", K_PUT, PSISKV_OP_PUT, 0, 0, 6, 0, 0, SECRET_ZERO, "", 0},
    /* 3.2: ids from 2^63 up are as valid as any (unsigned). */
    {"put_request_high_id", K_PUT, PSISKV_OP_PUT, 0, 7, 0x8000000000000001ULL, 0, 0, SECRET_ZERO,
     "7", 1},
    {"put_response_ok", RESPONSE(PSISKV_OP_PUT, PSISKV_ST_OK, 7, 4)},
    {"put_response_key_exists", RESPONSE(PSISKV_OP_PUT, PSISKV_ST_KEY_EXISTS, 7, 4)},
    {"put_response_too_large", RESPONSE(PSISKV_OP_PUT, PSISKV_ST_TOO_LARGE, 7, 4)},
    {"get_request", K_GET, PSISKV_OP_GET, 0, 7, 8, 0, 1000, SECRET_ZERO, NULL, 0},
    {"get_request_zero_capacity", K_GET, PSISKV_OP_GET, 0, 7, 9, 0, 0, SECRET_ZERO, NULL, 0},
    {"get_response_ok", K_GET_OK, PSISKV_OP_GET, PSISKV_ST_OK, 7, 8, 0, 2, SECRET_ZERO, "7\0", 2},
    {"get_response_truncated", K_GET_OK, PSISKV_OP_GET, PSISKV_ST_OK, 0xdeadbeefu, 10, 0, 5,
     SECRET_ZERO, "he", 2},
    {"get_response_not_found", RESPONSE(PSISKV_OP_GET, PSISKV_ST_NOT_FOUND, 7, 8)},
    {"delete_request", K_DELETE, PSISKV_OP_DELETE, 0, 0x80000000u, 11, 0, 0, SECRET_ZERO, NULL, 0},
    {"delete_response_ok", RESPONSE(PSISKV_OP_DELETE, PSISKV_ST_OK, 0x80000000u, 11)},
    {"delete_response_not_found", RESPONSE(PSISKV_OP_DELETE, PSISKV_ST_NOT_FOUND, 0x80000000u, 11)},
    {"error_bad_request", RESPONSE(PSISKV_OP_PUT, PSISKV_ST_BAD_REQUEST, 7, 4)},
    {"error_unknown_opcode", RESPONSE(0x7f, PSISKV_ST_UNKNOWN_OPCODE, 0, 12)},
    {"error_unsupported_version", RESPONSE(PSISKV_OP_PING, PSISKV_ST_UNSUPPORTED_VERSION, 0, 0)},
    {"error_no_session", RESPONSE(PSISKV_OP_GET, PSISKV_ST_NO_SESSION, 7, 8)},
    {"error_server_error", RESPONSE(PSISKV_OP_PUT, PSISKV_ST_SERVER_ERROR, 7, 4)},
    {"error_unavailable", RESPONSE(PSISKV_OP_PUT, PSISKV_ST_UNAVAILABLE, 7, 4)},
    /* Section 7, header only; b is the body length of 7.1-7.4. */
    {"challenge", CONTROL(K_CONTROL_REQUEST, PSISKV_OP_CHALLENGE, 1, 32)},
    {"init_request", CONTROL(K_CONTROL_REQUEST, PSISKV_OP_INIT, 1, 74)},
    {"init_response", CONTROL(K_CONTROL_RESPONSE, PSISKV_OP_INIT, 1, 40)},
    {"heartbeat", CONTROL(K_CONTROL_REQUEST, PSISKV_OP_HEARTBEAT, 17, 0)},
    {"shutdown_request", CONTROL(K_CONTROL_REQUEST, PSISKV_OP_SHUTDOWN, 2, 0)},
    {"shutdown_response", CONTROL(K_CONTROL_RESPONSE, PSISKV_OP_SHUTDOWN, 2, 0)},
    {"status_request", CONTROL(K_CONTROL_REQUEST, PSISKV_OP_STATUS, 3, 0)},
    {"status_response", CONTROL(K_CONTROL_RESPONSE, PSISKV_OP_STATUS, 3, 50)},
};
#define VECTOR_COUNT (sizeof VECTORS / sizeof VECTORS[0])

/* Longest message of the file, in bytes. */
#define MAX_MESSAGE_BYTES 256
#define MAX_LINE_BYTES 1024

static int is_request(enum kind k) {
  switch (k) {
    case K_HELLO: case K_SESSION: case K_PING: case K_PUT: case K_GET: case K_DELETE:
    case K_CONTROL_REQUEST:
      return 1;
    default:
      return 0;
  }
}

static int is_control(enum kind k) { return k == K_CONTROL_REQUEST || k == K_CONTROL_RESPONSE; }

/* The secret of a vector, into out[0..PSISKV_SESSION_SECRET_BYTES). */
static void secret_of(const struct vector *v, uint8_t *out) {
  int i;
  for (i = 0; i < PSISKV_SESSION_SECRET_BYTES; i++) {
    out[i] = v->secret == SECRET_EXAMPLE ? (uint8_t)(0x11 * i) : 0;
  }
}

/* Encodes a control message's header from its fields (see the comment at the top). */
static size_t encode_control_header(const struct vector *v, uint8_t *buf) {
  psiskv_header h;
  h.magic = v->kind == K_CONTROL_REQUEST ? PSISKV_REQUEST_MAGIC : PSISKV_RESPONSE_MAGIC;
  h.version = PSISKV_PROTOCOL_VERSION;
  h.opcode = (uint8_t)v->opcode;
  h.flags_or_status = (uint8_t)v->flags_or_status;
  h.key = v->key;
  h.request_id = v->id;
  h.body_length = v->b;
  psiskv_header_encode(buf, &h);
  return PSISKV_HEADER_BYTES;
}

/* Encodes v with the C codec into buf; returns the length (value bytes appended). A control
 * message: its header only. */
static size_t encode(const struct vector *v, uint8_t *buf) {
  uint8_t secret[PSISKV_SESSION_SECRET_BYTES];
  size_t n = 0;
  secret_of(v, secret);
  switch (v->kind) {
    case K_HELLO: n = psiskv_encode_hello(buf, v->id); break;
    case K_HELLO_OK: n = psiskv_encode_hello_ok(buf, v->id, (uint32_t)v->a, (uint16_t)v->b); break;
    case K_SESSION: n = psiskv_encode_session(buf, v->id, v->a, secret); break;
    case K_SESSION_OK: n = psiskv_encode_session_ok(buf, v->id, v->a, secret, v->b); break;
    case K_PING: n = psiskv_encode_ping(buf, v->id); break;
    case K_PUT:
      n = psiskv_encode_put_header(buf, v->key, v->id, v->flags_or_status & PSISKV_FLAG_OVERWRITE,
                                   (uint32_t)v->value_len);
      break;
    case K_GET: n = psiskv_encode_get(buf, v->key, v->id, v->b); break;
    case K_GET_OK:
      n = psiskv_encode_get_ok_prefix(buf, v->key, v->id, v->b, (uint32_t)v->value_len);
      break;
    case K_DELETE: n = psiskv_encode_delete(buf, v->key, v->id); break;
    case K_STATUS:
      n = psiskv_encode_status(buf, (uint8_t)v->opcode, (uint8_t)v->flags_or_status, v->key,
                               v->id);
      break;
    case K_CONTROL_REQUEST: case K_CONTROL_RESPONSE: return encode_control_header(v, buf);
  }
  if (v->value_len > 0) {
    memcpy(buf + n, v->value, v->value_len);
    n += v->value_len;
  }
  return n;
}

/* Prints a failure of vector v and returns 0 (so that checks read "return fail(...)"). */
static int fail(const struct vector *v, const char *what) {
  fprintf(stderr, "FAIL %s: %s\n", v->name, what);
  return 0;
}

/* Decodes bytes[0..len) and checks every field against v; returns 1 if all match. */
static int decode_matches(const struct vector *v, const uint8_t *bytes, size_t len) {
  psiskv_header h;
  const uint8_t *body = bytes + PSISKV_HEADER_BYTES;
  uint8_t secret[PSISKV_SESSION_SECRET_BYTES];
  uint8_t want_secret[PSISKV_SESSION_SECRET_BYTES];
  uint64_t u64;
  uint32_t u32;
  uint16_t u16;
  if (len < PSISKV_HEADER_BYTES) return fail(v, "shorter than a header");
  psiskv_header_decode(bytes, &h);
  if (h.magic != (is_request(v->kind) ? PSISKV_REQUEST_MAGIC : PSISKV_RESPONSE_MAGIC)) {
    return fail(v, "magic");
  }
  if (h.version != PSISKV_PROTOCOL_VERSION) return fail(v, "version");
  if (h.opcode != v->opcode) return fail(v, "opcode");
  if (h.flags_or_status != v->flags_or_status) return fail(v, "flags / status");
  if (h.key != v->key) return fail(v, "key");
  if (h.request_id != v->id) return fail(v, "request id");
  if (h.body_length != len - PSISKV_HEADER_BYTES) return fail(v, "body length");
  if (!psiskv_opcode_known(h.opcode) && v->flags_or_status != PSISKV_ST_UNKNOWN_OPCODE) {
    return fail(v, "unknown opcode");
  }
  if (!psiskv_status_known(h.flags_or_status) && !is_request(v->kind)) {
    return fail(v, "unknown status");
  }
  secret_of(v, want_secret);
  switch (v->kind) {
    case K_HELLO_OK:
      psiskv_decode_hello_ok(body, &u32, &u16);
      if (u32 != v->a || u16 != v->b) return fail(v, "HELLO body");
      break;
    case K_SESSION:
      psiskv_decode_session(body, &u64, secret);
      if (u64 != v->a) return fail(v, "SESSION id");
      if (memcmp(secret, want_secret, sizeof secret) != 0) return fail(v, "SESSION secret");
      if ((u64 == PSISKV_SESSION_NEW) != (psiskv_session_secret_is_zero(secret) != 0)) {
        return fail(v, "SESSION: an id without a secret or a secret without an id (6.2)");
      }
      break;
    case K_SESSION_OK:
      psiskv_decode_session_ok(body, &u64, secret, &u32);
      if (u64 != v->a || u32 != v->b) return fail(v, "SESSION response id / max value length");
      if (memcmp(secret, want_secret, sizeof secret) != 0) return fail(v, "SESSION secret");
      break;
    case K_GET:
      if (psiskv_decode_get_capacity(body) != v->b) return fail(v, "GET capacity");
      break;
    case K_GET_OK:
      u32 = psiskv_decode_get_ok_stored_length(body);
      if (u32 != v->b) return fail(v, "GET stored length");
      /* The capacity of the request answered: the value bytes sent. */
      if (psiskv_check_get_ok_body(h.body_length, (uint32_t)v->value_len, u32) != PSISKV_CHECK_OK) {
        return fail(v, "GET body length vs min(capacity, stored)");
      }
      if (memcmp(body + PSISKV_GET_RESPONSE_PREFIX_BYTES, v->value, v->value_len) != 0) {
        return fail(v, "GET value bytes");
      }
      break;
    case K_PUT:
      if (memcmp(body, v->value, v->value_len) != 0) return fail(v, "PUT value bytes");
      break;
    case K_CONTROL_REQUEST:
    case K_CONTROL_RESPONSE:
      if (h.body_length != v->b) return fail(v, "control body length");
      break;
    default:
      break;
  }
  if (!is_request(v->kind) && !is_control(v->kind)) {
    /* The response must pass the client's checks against the request it answers. */
    uint32_t capacity = v->kind == K_GET_OK ? (uint32_t)v->value_len : 0;
    int check = psiskv_check_response(&h, (uint8_t)v->opcode, v->key, v->id, capacity);
    if (check != PSISKV_CHECK_OK) return fail(v, psiskv_check_message(check));
  }
  return 1;
}

static int hex_value(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1; /* PROTOCOL.md 10: lowercase hex */
}

/* Parses lowercase hex into out; returns the byte count, or -1 if malformed or too long. */
static int parse_hex(const char *s, uint8_t *out, size_t cap) {
  size_t n = 0;
  while (*s != '\0' && *s != '\n' && *s != '\r') {
    int hi = hex_value((unsigned char)s[0]);
    int lo = s[1] == '\0' ? -1 : hex_value((unsigned char)s[1]);
    if (hi < 0 || lo < 0 || n == cap) return -1;
    out[n++] = (uint8_t)((hi << 4) | lo);
    s += 2;
  }
  return (int)n;
}

static const struct vector *find(const char *name) {
  size_t i;
  for (i = 0; i < VECTOR_COUNT; i++) {
    if (strcmp(VECTORS[i].name, name) == 0) return &VECTORS[i];
  }
  return NULL;
}

int main(int argc, char **argv) {
  char line[MAX_LINE_BYTES];
  int seen[VECTOR_COUNT] = {0};
  int passed = 0;
  int failed = 0;
  size_t i;
  FILE *f;
  if (argc != 2) {
    fprintf(stderr, "usage: %s golden-vectors.txt\n", argv[0]);
    return 2;
  }
  f = fopen(argv[1], "r");
  if (f == NULL) {
    perror(argv[1]);
    return 2;
  }
  while (fgets(line, sizeof line, f) != NULL) {
    uint8_t file_bytes[MAX_MESSAGE_BYTES];
    uint8_t encoded[MAX_MESSAGE_BYTES];
    const struct vector *v;
    char *space;
    size_t encoded_len;
    int len;
    if (line[0] == '#' || line[0] == '\n' || line[0] == '\0') continue;
    space = strchr(line, ' ');
    if (space == NULL) {
      fprintf(stderr, "FAIL malformed line: %s", line);
      failed++;
      continue;
    }
    *space = '\0';
    v = find(line);
    if (v == NULL) {
      fprintf(stderr, "FAIL %s: a vector unknown to test_golden.c (add it there)\n", line);
      failed++;
      continue;
    }
    seen[v - VECTORS]++;
    len = parse_hex(space + 1, file_bytes, sizeof file_bytes);
    if (len < 0) {
      fprintf(stderr, "FAIL %s: malformed hex\n", v->name);
      failed++;
      continue;
    }
    encoded_len = encode(v, encoded);
    /* A control message's encoding is its header alone: compared with the file's first bytes. */
    if ((is_control(v->kind) ? (size_t)len < encoded_len : encoded_len != (size_t)len) ||
        memcmp(encoded, file_bytes, encoded_len) != 0) {
      fail(v, "the C encoding differs from the file");
      failed++;
    } else if (!decode_matches(v, file_bytes, (size_t)len)) {
      failed++;
    } else {
      passed++;
    }
  }
  fclose(f);
  for (i = 0; i < VECTOR_COUNT; i++) {
    if (seen[i] != 1) {
      fprintf(stderr, "FAIL %s: appears %d times in the file, expected once\n", VECTORS[i].name,
              seen[i]);
      failed++;
    }
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
