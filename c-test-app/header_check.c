/*
 * header_check.c - compile-only check of c-headers/psiskv.h (never run, never linked).
 *
 * The Makefile compiles it as strict C99 (with -Wwrite-strings, under which a string literal is
 * const) and as C++: a caller passing string literals to the classic API must compile without a
 * warning in both, and the header must bring uint32_t and malloc/exit by itself.
 */
#include "psiskv.h"

int header_check(void);

int header_check(void) {
  char buf[16];
  char *heap = (char *)malloc(4); /* stdlib.h comes with psiskv.h */
  uint32_t key = 7;               /* so does stdint.h */
  int kv = kv_connect("127.0.0.1", 9999);
  int rc = kv_write(kv, key, "abc", 4, 0);
  rc += kv_read(kv, key, buf, sizeof buf);
  rc += kv_delete(kv, key);
  kv_close(kv);
  free(heap);
  if (rc == 12345) exit(1);
  return PSISKV_VERSION_MAJOR * 10000 + PSISKV_VERSION_MINOR * 100 + PSISKV_VERSION_PATCH + rc;
}
