/*
 * psiskv_proto.h - the psiskv wire codec for C (PROTOCOL.md, version 2).
 *
 * The wire constants are written here once for C; each names the section of PROTOCOL.md it
 * implements, and no other C file spells these numbers (the Java twins are in
 * java-client/src/main/java/io/psiskv/protocol/). The golden vectors of PROTOCOL.md section 10
 * are encoded and decoded with this codec by c-test-app/test_golden.c.
 *
 * Contract: the codec reads and writes caller-supplied byte buffers and does no I/O and no
 * allocation, so protocol tests need no socket. Every multi-byte field is big-endian (section 1);
 * the helpers below assemble bytes one by one, so they neither depend on the host's byte order
 * nor on the alignment of the buffer. All functions are reentrant.
 *
 * Scope: the client messages of section 6 (HELLO, SESSION, PING, PUT, GET, DELETE and their
 * responses). The control messages of section 7 pass only between the two Java servers, whose
 * codec owns them: C knows their opcodes (section 4, for names in diagnostics) and no bodies.
 *
 * Internal to libpsiskv (hidden by -fvisibility=hidden); applications use psiskv.h.
 */
#ifndef PSISKV_PROTO_H
#define PSISKV_PROTO_H

#include <stddef.h>
#include <stdint.h>

/* PROTOCOL.md 3.3: first byte of every request / of every response. */
#define PSISKV_REQUEST_MAGIC 0xA5u
#define PSISKV_RESPONSE_MAGIC 0x5Au
/* PROTOCOL.md 3.4: the only protocol version this code speaks (not the library's version). */
#define PSISKV_PROTOCOL_VERSION 0x02u

/* PROTOCOL.md 3: every message starts with a header of exactly this many bytes. */
#define PSISKV_HEADER_BYTES 20
/* PROTOCOL.md 3.1: header field offsets. */
#define PSISKV_OFF_MAGIC 0
#define PSISKV_OFF_VERSION 1
#define PSISKV_OFF_OPCODE 2
#define PSISKV_OFF_FLAGS_OR_STATUS 3
#define PSISKV_OFF_KEY 4
#define PSISKV_OFF_REQUEST_ID 8
#define PSISKV_OFF_BODY_LENGTH 16

/* PROTOCOL.md 6.4: PUT flag bit 0, replace an existing value. No other flag bit is defined. */
#define PSISKV_FLAG_OVERWRITE 0x01u

/* PROTOCOL.md 6.1: HELLO response body, u32 IPv4 address and u16 port. */
#define PSISKV_HELLO_RESPONSE_BODY_BYTES 6
/* PROTOCOL.md 6.1: HELLO response address 0.0.0.0: "the host you reached the Front Server at". */
#define PSISKV_HELLO_SAME_HOST 0u
/* PROTOCOL.md 6.2: the secret that comes with a session id; only its holder resumes it. */
#define PSISKV_SESSION_SECRET_BYTES 16
/* PROTOCOL.md 6.2: SESSION request body, u64 session id and its secret (both 0: new session). */
#define PSISKV_SESSION_REQUEST_BODY_BYTES (8 + PSISKV_SESSION_SECRET_BYTES)
/* PROTOCOL.md 6.2: SESSION request session id that asks for a new session. */
#define PSISKV_SESSION_NEW 0u
/* PROTOCOL.md 6.2: SESSION response body, u64 session id, its secret, u32 maximum value length. */
#define PSISKV_SESSION_RESPONSE_BODY_BYTES (8 + PSISKV_SESSION_SECRET_BYTES + 4)
/* PROTOCOL.md 6.5: GET request body, u32 capacity of the caller's buffer. */
#define PSISKV_GET_REQUEST_BODY_BYTES 4
/* PROTOCOL.md 6.5: GET OK response body starts with the u32 stored length. */
#define PSISKV_GET_RESPONSE_PREFIX_BYTES 4

/* Bytes a buffer needs for any message the encoders below write (header plus the largest fixed
 * body of section 6, SESSION's response). */
#define PSISKV_MAX_FIXED_BYTES (PSISKV_HEADER_BYTES + PSISKV_SESSION_RESPONSE_BODY_BYTES)

/* PROTOCOL.md 9: default server maximum for a value, 64 MiB. */
#define PSISKV_DEFAULT_MAX_VALUE_BYTES 67108864u
/* PROTOCOL.md 9: no psiskv server stores a value longer than this. */
#define PSISKV_MAX_VALUE_BYTES_LIMIT 2147483631u

/* PROTOCOL.md 4: opcodes, one byte at header offset 2. */
enum psiskv_opcode {
  PSISKV_OP_HELLO = 0x01,     /* 6.1 client to Front Server: where is the Data Server? */
  PSISKV_OP_SESSION = 0x02,   /* 6.2 first message of a data connection */
  PSISKV_OP_PING = 0x03,      /* 6.3 liveness check on any client connection */
  PSISKV_OP_STATS = 0x04,     /* 6.7 the Data Server's counters (the C library does not send it) */
  PSISKV_OP_PUT = 0x10,       /* 6.4 store a value */
  PSISKV_OP_GET = 0x11,       /* 6.5 read a value (at most the caller's capacity) */
  PSISKV_OP_DELETE = 0x12,    /* 6.6 remove a key */
  PSISKV_OP_INIT = 0x20,      /* 7.1 control: the Data Server's answer to CHALLENGE */
  PSISKV_OP_HEARTBEAT = 0x21, /* 7.2 control connection, never answered */
  PSISKV_OP_SHUTDOWN = 0x22,  /* 7.3 either direction: orderly termination */
  PSISKV_OP_STATUS = 0x23,    /* 7.4 Front Server to Data Server: the console's figures */
  PSISKV_OP_CHALLENGE = 0x24  /* 7.1 control: the Front Server's nonce, first message */
};

/* PROTOCOL.md 5: response status, one byte at header offset 3. 0x10 and up are errors. */
enum psiskv_status {
  PSISKV_ST_OK = 0x00,                  /* applied (PUT, DELETE) or found (GET) */
  PSISKV_ST_KEY_EXISTS = 0x01,          /* PUT without OVERWRITE found the key; nothing changed */
  PSISKV_ST_NOT_FOUND = 0x02,           /* GET or DELETE: no such key */
  PSISKV_ST_BAD_REQUEST = 0x10,         /* a MUST rule was broken */
  PSISKV_ST_UNKNOWN_OPCODE = 0x11,      /* the opcode byte names no operation */
  PSISKV_ST_TOO_LARGE = 0x12,           /* PUT body longer than the server's maximum */
  PSISKV_ST_UNSUPPORTED_VERSION = 0x13, /* the version byte is not 0x02 */
  PSISKV_ST_NO_SESSION = 0x14,          /* PUT, GET or DELETE before SESSION */
  PSISKV_ST_FORBIDDEN = 0x15,           /* SESSION resume with the wrong secret: not ours */
  PSISKV_ST_SERVER_ERROR = 0x20,        /* the server failed to apply the request */
  PSISKV_ST_UNAVAILABLE = 0x21          /* the server cannot serve now; try again */
};
/* PROTOCOL.md 5: statuses from this one up are errors (and have an empty body). */
#define PSISKV_FIRST_ERROR_STATUS 0x10u

/* A decoded header (PROTOCOL.md 3.1). Plain values; the wire layout is only in encode/decode. */
typedef struct psiskv_header {
  uint8_t magic;
  uint8_t version;
  uint8_t opcode;
  uint8_t flags_or_status; /* flags in a request, status in a response */
  uint32_t key;
  uint64_t request_id;
  uint32_t body_length;
} psiskv_header;

/* Big-endian field access at any offset of a byte buffer (PROTOCOL.md 1). */
uint16_t psiskv_get_u16(const uint8_t *p);
uint32_t psiskv_get_u32(const uint8_t *p);
uint64_t psiskv_get_u64(const uint8_t *p);
void psiskv_put_u16(uint8_t *p, uint16_t v);
void psiskv_put_u32(uint8_t *p, uint32_t v);
void psiskv_put_u64(uint8_t *p, uint64_t v);

/* Writes h to buf[0..20) / reads buf[0..20) into h. No check: see psiskv_check_response. */
void psiskv_header_encode(uint8_t *buf, const psiskv_header *h);
void psiskv_header_decode(const uint8_t *buf, psiskv_header *h);

/* Whether a byte names an opcode of section 4 / a status of section 5. */
int psiskv_opcode_known(unsigned code);
int psiskv_status_known(unsigned code);
/* The name of an opcode / status as in PROTOCOL.md ("PUT", "KEY_EXISTS"), or "?" if unknown. */
const char *psiskv_opcode_name(unsigned code);
const char *psiskv_status_name(unsigned code);

/*
 * Message encoders (PROTOCOL.md 6). Each writes the header and the fixed body at buf[0..)
 * and returns the number of bytes written, at most PSISKV_MAX_FIXED_BYTES. A PUT request's and a
 * GET response's value bytes are not copied: the caller sends them after the encoded prefix.
 * The server-side encoders exist for the golden-vector tests and for test servers.
 */
size_t psiskv_encode_hello(uint8_t *buf, uint64_t request_id);
size_t psiskv_encode_hello_ok(uint8_t *buf, uint64_t request_id, uint32_t ipv4, uint16_t port);
/* secret: PSISKV_SESSION_SECRET_BYTES bytes, all zero with session id 0 (a new session). */
size_t psiskv_encode_session(uint8_t *buf, uint64_t request_id, uint64_t session_id,
                             const uint8_t *secret);
size_t psiskv_encode_session_ok(uint8_t *buf, uint64_t request_id, uint64_t session_id,
                                const uint8_t *secret, uint32_t max_value_bytes);
size_t psiskv_encode_ping(uint8_t *buf, uint64_t request_id);
size_t psiskv_encode_put_header(uint8_t *buf, uint32_t key, uint64_t request_id, int overwrite,
                                uint32_t value_length);
size_t psiskv_encode_get(uint8_t *buf, uint32_t key, uint64_t request_id, uint32_t capacity);
/* GET OK prefix: header and stored length; sent = min(capacity, stored) value bytes follow. */
size_t psiskv_encode_get_ok_prefix(uint8_t *buf, uint32_t key, uint64_t request_id,
                                   uint32_t stored_length, uint32_t sent);
size_t psiskv_encode_delete(uint8_t *buf, uint32_t key, uint64_t request_id);
/* Any response with an empty body: results without data and every error status (section 5). */
size_t psiskv_encode_status(uint8_t *buf, uint8_t opcode, uint8_t status, uint32_t key,
                            uint64_t request_id);

/*
 * Body decoders. Each reads the fixed body that starts at body (just after the header); the
 * caller has checked the header's body length first (psiskv_check_response).
 */
void psiskv_decode_hello_ok(const uint8_t *body, uint32_t *ipv4, uint16_t *port);
/* The secrets are copied to secret[0..PSISKV_SESSION_SECRET_BYTES). */
void psiskv_decode_session(const uint8_t *body, uint64_t *session_id, uint8_t *secret);
void psiskv_decode_session_ok(const uint8_t *body, uint64_t *session_id, uint8_t *secret,
                              uint32_t *max_value_bytes);
/* Whether all PSISKV_SESSION_SECRET_BYTES bytes of a secret are zero (6.2: "no secret"). */
int psiskv_session_secret_is_zero(const uint8_t *secret);
uint32_t psiskv_decode_get_capacity(const uint8_t *body);
uint32_t psiskv_decode_get_ok_stored_length(const uint8_t *body);

/* Results of the response checks below; anything but PSISKV_CHECK_OK means "connection broken". */
enum psiskv_check {
  PSISKV_CHECK_OK = 0,
  PSISKV_CHECK_BAD_MAGIC,       /* 3.3 */
  PSISKV_CHECK_BAD_VERSION,     /* 3.4 */
  PSISKV_CHECK_BAD_OPCODE,      /* 3.1: does not echo the request's opcode */
  PSISKV_CHECK_BAD_KEY,         /* 3.1: does not echo the request's key */
  PSISKV_CHECK_BAD_REQUEST_ID,  /* 3.1, 3.2: does not echo the request's id */
  PSISKV_CHECK_UNKNOWN_STATUS,  /* 5: names no status */
  PSISKV_CHECK_BAD_STATUS,      /* 5, 6: a status this opcode never has (KEY_EXISTS to a GET,
                                   FORBIDDEN to anything but SESSION) */
  PSISKV_CHECK_BAD_BODY_LENGTH  /* 4, 5, 6: not the body length this response must have */
};

/*
 * Checks a decoded response header against the request it answers (PROTOCOL.md 8): magic,
 * version, echoed opcode, key and request id, a known status that this opcode may have, and the
 * body length that status must come with (errors: 0). For a GET OK, get_capacity is the request's
 * capacity and the body length must lie in 4 .. 4 + capacity; check the exact length with
 * psiskv_check_get_ok_body once the stored length is read. get_capacity is ignored otherwise.
 * Returns PSISKV_CHECK_OK or the first mismatch.
 */
int psiskv_check_response(const psiskv_header *h, uint8_t opcode, uint32_t key,
                          uint64_t request_id, uint32_t get_capacity);

/* PROTOCOL.md 6.5: a GET OK body length must be exactly 4 + min(capacity, stored length). */
int psiskv_check_get_ok_body(uint32_t body_length, uint32_t capacity, uint32_t stored_length);

/* A one-line description of a psiskv_check result, for diagnostics. */
const char *psiskv_check_message(int check);

#endif /* PSISKV_PROTO_H */
