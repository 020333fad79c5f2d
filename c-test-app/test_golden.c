/*
 * test_golden.c - the C codec against the golden vectors shared with Java (PROTOCOL.md 10).
 *
 *   usage: test_golden path/to/golden-vectors.txt
 *
 * For every vector of the file: encodes the message with psiskv_proto.c (compiled into this
 * program) from the fields listed below and compares the bytes; decodes the file's bytes and
 * checks every header and body field, and that a response passes psiskv_check_response against
 * the request it answers. A vector name this program does not know, or a known vector missing
 * from the file, is a failure: a vector added on the Java side must be added here too.
 * Prints "N passed, M failed" (one count per vector, plus one per missing vector); exits 1 on any
 * failure.
 *
 * STATUS (PROTOCOL.md 7.4) is a control message between the two Java servers only: the C codec
 * has no encoder for it and its opcode is unknown to the C client (which never sends or accepts
 * it). Its vectors are encoded here field by field with the codec's generic header and integer
 * helpers, and decoded field by field; the client-side checks (known opcode, response rules) are
 * not applied to them.
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
  K_STATUS, /* any response with an empty body */
  K_INIT,
  K_INIT_OK,
  K_HEARTBEAT,
  K_SHUTDOWN,
  K_STATUS_REQUEST, /* 7.4, control only: not in the C codec */
  K_STATUS_OK       /* 7.4, control only: body fields in STATUS_BODY */
};


/* The STATUS response body of the golden vector, in wire order (PROTOCOL.md 7.4). */
static const struct {
  uint64_t pid, uptime_millis, keys, value_bytes, sessions;
  uint32_t connections, front_relaunches;
  uint64_t backup_file_bytes, last_sync_millis;
  uint32_t fsync_policy, flags;
} STATUS_BODY = {4242, 3723000, 3, 1234, 2, 1, 0, 4096, 1767225600000ULL, 0, 0};

/*
 * One vector's fields. a and b are the body fields of its kind:
 *   HELLO_OK: a = IPv4 address, b = port        SESSION / SESSION_OK: a = session id, b = max
 *   GET: b = capacity                           GET_OK: b = stored length
 *   INIT: a = pid, b = client port              INIT_OK: a = Front Server pid
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
  const char *value;
  size_t value_len;
};

#define RESPONSE(op, st, key, id) K_STATUS, op, st, key, id, 0, 0, NULL, 0

static const struct vector VECTORS[] = {
    {"hello_request", K_HELLO, PSISKV_OP_HELLO, 0, 0, 1, 0, 0, NULL, 0},
    {"hello_response", K_HELLO_OK, PSISKV_OP_HELLO, PSISKV_ST_OK, 0, 1, 0x7f000001, 10000, NULL, 0},
    {"hello_response_same_host", K_HELLO_OK, PSISKV_OP_HELLO, PSISKV_ST_OK, 0, 1, 0, 10000, NULL, 0},
    {"hello_response_unavailable", RESPONSE(PSISKV_OP_HELLO, PSISKV_ST_UNAVAILABLE, 0, 1)},
    {"session_request_new", K_SESSION, PSISKV_OP_SESSION, 0, 0, 2, 0, 0, NULL, 0},
    {"session_request_resume", K_SESSION, PSISKV_OP_SESSION, 0, 0, 2, 0x0123456789abcdefULL, 0,
     NULL, 0},
    {"session_response", K_SESSION_OK, PSISKV_OP_SESSION, PSISKV_ST_OK, 0, 2, 0x0123456789abcdefULL,
     64u * 1024 * 1024, NULL, 0},
    {"ping_request", K_PING, PSISKV_OP_PING, 0, 0, 3, 0, 0, NULL, 0},
    {"ping_response", RESPONSE(PSISKV_OP_PING, PSISKV_ST_OK, 0, 3)},
    {"put_request", K_PUT, PSISKV_OP_PUT, 0, 7, 4, 0, 0, "7\0", 2},
    {"put_request_overwrite", K_PUT, PSISKV_OP_PUT, PSISKV_FLAG_OVERWRITE, 0xffffffffu, 5, 0, 0,
     "\x00\xff\x80", 3},
    {"put_request_empty_value", K_PUT, PSISKV_OP_PUT, 0, 0, 6, 0, 0, "", 0},
    {"put_response_ok", RESPONSE(PSISKV_OP_PUT, PSISKV_ST_OK, 7, 4)},
    {"put_response_key_exists", RESPONSE(PSISKV_OP_PUT, PSISKV_ST_KEY_EXISTS, 7, 4)},
    {"put_response_too_large", RESPONSE(PSISKV_OP_PUT, PSISKV_ST_TOO_LARGE, 7, 4)},
    {"get_request", K_GET, PSISKV_OP_GET, 0, 7, 8, 0, 1000, NULL, 0},
    {"get_request_zero_capacity", K_GET, PSISKV_OP_GET, 0, 7, 9, 0, 0, NULL, 0},
    {"get_response_ok", K_GET_OK, PSISKV_OP_GET, PSISKV_ST_OK, 7, 8, 0, 2, "7\0", 2},
    {"get_response_truncated", K_GET_OK, PSISKV_OP_GET, PSISKV_ST_OK, 0xdeadbeefu, 10, 0, 5, "he",
     2},
    {"get_response_not_found", RESPONSE(PSISKV_OP_GET, PSISKV_ST_NOT_FOUND, 7, 8)},
    {"delete_request", K_DELETE, PSISKV_OP_DELETE, 0, 0x80000000u, 11, 0, 0, NULL, 0},
    {"delete_response_ok", RESPONSE(PSISKV_OP_DELETE, PSISKV_ST_OK, 0x80000000u, 11)},
    {"delete_response_not_found", RESPONSE(PSISKV_OP_DELETE, PSISKV_ST_NOT_FOUND, 0x80000000u, 11)},
    {"error_bad_request", RESPONSE(PSISKV_OP_PUT, PSISKV_ST_BAD_REQUEST, 7, 4)},
    {"error_unknown_opcode", RESPONSE(0x7f, PSISKV_ST_UNKNOWN_OPCODE, 0, 12)},
    {"error_unsupported_version", RESPONSE(PSISKV_OP_PING, PSISKV_ST_UNSUPPORTED_VERSION, 0, 0)},
    {"error_no_session", RESPONSE(PSISKV_OP_GET, PSISKV_ST_NO_SESSION, 7, 8)},
    {"error_server_error", RESPONSE(PSISKV_OP_PUT, PSISKV_ST_SERVER_ERROR, 7, 4)},
    {"error_unavailable", RESPONSE(PSISKV_OP_PUT, PSISKV_ST_UNAVAILABLE, 7, 4)},
    {"init_request", K_INIT, PSISKV_OP_INIT, 0, 0, 1, 4242, 10000, NULL, 0},
    {"init_response", K_INIT_OK, PSISKV_OP_INIT, PSISKV_ST_OK, 0, 1, 4241, 0, NULL, 0},
    {"heartbeat", K_HEARTBEAT, PSISKV_OP_HEARTBEAT, 0, 0, 17, 0, 0, NULL, 0},
    {"shutdown_request", K_SHUTDOWN, PSISKV_OP_SHUTDOWN, 0, 0, 2, 0, 0, NULL, 0},
    {"shutdown_response", RESPONSE(PSISKV_OP_SHUTDOWN, PSISKV_ST_OK, 0, 2)},
    {"status_request", K_STATUS_REQUEST, PSISKV_OP_STATUS, 0, 0, 3, 0, 0, NULL, 0},
    {"status_response", K_STATUS_OK, PSISKV_OP_STATUS, PSISKV_ST_OK, 0, 3, 0, 0, NULL, 0},
};
#define VECTOR_COUNT (sizeof VECTORS / sizeof VECTORS[0])

/* Longest message of the file, in bytes. */
#define MAX_MESSAGE_BYTES 256
#define MAX_LINE_BYTES 1024

static int is_request(enum kind k) {
  switch (k) {
    case K_HELLO: case K_SESSION: case K_PING: case K_PUT: case K_GET: case K_DELETE: case K_INIT:
    case K_HEARTBEAT: case K_SHUTDOWN: case K_STATUS_REQUEST:
      return 1;
    default:
      return 0;
  }
}

/* Whether v is a control message the C codec does not know (see the comment at the top). */
static int control_only(enum kind k) {
  return k == K_STATUS_REQUEST || k == K_STATUS_OK;
}

/* Encodes a STATUS message field by field (header helper, then the body in wire order). */
static size_t encode_status(const struct vector *v, uint8_t *buf) {
  psiskv_header h;
  uint8_t *b = buf + PSISKV_HEADER_BYTES;
  h.magic = v->kind == K_STATUS_OK ? PSISKV_RESPONSE_MAGIC : PSISKV_REQUEST_MAGIC;
  h.version = PSISKV_PROTOCOL_VERSION;
  h.opcode = (uint8_t)v->opcode;
  h.flags_or_status = (uint8_t)v->flags_or_status;
  h.key = v->key;
  h.request_id = v->id;
  h.body_length = v->kind == K_STATUS_OK ? PSISKV_STATUS_RESPONSE_BODY_BYTES : 0;
  psiskv_header_encode(buf, &h);
  if (v->kind != K_STATUS_OK) return PSISKV_HEADER_BYTES;
  psiskv_put_u64(b + 0, STATUS_BODY.pid);
  psiskv_put_u64(b + 8, STATUS_BODY.uptime_millis);
  psiskv_put_u64(b + 16, STATUS_BODY.keys);
  psiskv_put_u64(b + 24, STATUS_BODY.value_bytes);
  psiskv_put_u64(b + 32, STATUS_BODY.sessions);
  psiskv_put_u32(b + 40, STATUS_BODY.connections);
  psiskv_put_u32(b + 44, STATUS_BODY.front_relaunches);
  psiskv_put_u64(b + 48, STATUS_BODY.backup_file_bytes);
  psiskv_put_u64(b + 56, STATUS_BODY.last_sync_millis);
  psiskv_put_u32(b + 64, STATUS_BODY.fsync_policy);
  psiskv_put_u32(b + 68, STATUS_BODY.flags);
  return PSISKV_HEADER_BYTES + PSISKV_STATUS_RESPONSE_BODY_BYTES;
}

/* Encodes v with the C codec into buf; returns the length (value bytes appended). */
static size_t encode(const struct vector *v, uint8_t *buf) {
  size_t n = 0;
  switch (v->kind) {
    case K_HELLO: n = psiskv_encode_hello(buf, v->id); break;
    case K_HELLO_OK: n = psiskv_encode_hello_ok(buf, v->id, (uint32_t)v->a, (uint16_t)v->b); break;
    case K_SESSION: n = psiskv_encode_session(buf, v->id, v->a); break;
    case K_SESSION_OK: n = psiskv_encode_session_ok(buf, v->id, v->a, v->b); break;
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
    case K_INIT: n = psiskv_encode_init(buf, v->id, (uint16_t)v->b, v->a); break;
    case K_INIT_OK: n = psiskv_encode_init_ok(buf, v->id, v->a); break;
    case K_HEARTBEAT: n = psiskv_encode_heartbeat(buf, v->id); break;
    case K_SHUTDOWN: n = psiskv_encode_shutdown(buf, v->id); break;
    case K_STATUS_REQUEST: case K_STATUS_OK: n = encode_status(v, buf); break;
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
  if (!psiskv_opcode_known(h.opcode) && v->flags_or_status != PSISKV_ST_UNKNOWN_OPCODE &&
      !control_only(v->kind)) {
    return fail(v, "unknown opcode");
  }
  switch (v->kind) {
    case K_HELLO_OK:
      psiskv_decode_hello_ok(body, &u32, &u16);
      if (u32 != v->a || u16 != v->b) return fail(v, "HELLO body");
      break;
    case K_SESSION:
      if (psiskv_decode_session(body) != v->a) return fail(v, "SESSION body");
      break;
    case K_SESSION_OK:
      psiskv_decode_session_ok(body, &u64, &u32);
      if (u64 != v->a || u32 != v->b) return fail(v, "SESSION response body");
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
    case K_INIT:
      psiskv_decode_init(body, &u16, &u64);
      if (u16 != v->b || u64 != v->a) return fail(v, "INIT body");
      break;
    case K_INIT_OK:
      if (psiskv_decode_init_ok(body) != v->a) return fail(v, "INIT response body");
      break;
    case K_STATUS_OK:
      if (h.body_length != PSISKV_STATUS_RESPONSE_BODY_BYTES) return fail(v, "STATUS body length");
      if (psiskv_get_u64(body + 0) != STATUS_BODY.pid) return fail(v, "STATUS pid");
      if (psiskv_get_u64(body + 8) != STATUS_BODY.uptime_millis) return fail(v, "STATUS uptime");
      if (psiskv_get_u64(body + 16) != STATUS_BODY.keys) return fail(v, "STATUS keys");
      if (psiskv_get_u64(body + 24) != STATUS_BODY.value_bytes) return fail(v, "STATUS values");
      if (psiskv_get_u64(body + 32) != STATUS_BODY.sessions) return fail(v, "STATUS sessions");
      if (psiskv_get_u32(body + 40) != STATUS_BODY.connections) return fail(v, "STATUS clients");
      if (psiskv_get_u32(body + 44) != STATUS_BODY.front_relaunches) {
        return fail(v, "STATUS front relaunches");
      }
      if (psiskv_get_u64(body + 48) != STATUS_BODY.backup_file_bytes) {
        return fail(v, "STATUS backup file bytes");
      }
      if (psiskv_get_u64(body + 56) != STATUS_BODY.last_sync_millis) {
        return fail(v, "STATUS last sync");
      }
      if (psiskv_get_u32(body + 64) != STATUS_BODY.fsync_policy) return fail(v, "STATUS fsync");
      if (psiskv_get_u32(body + 68) != STATUS_BODY.flags) return fail(v, "STATUS flags");
      break;
    default:
      break;
  }
  if (!is_request(v->kind) && !control_only(v->kind)) {
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
    if (encoded_len != (size_t)len || memcmp(encoded, file_bytes, encoded_len) != 0) {
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
