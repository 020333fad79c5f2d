/*
 * test1.c - the shape of the course's first test program, with every return code checked.
 *
 *   usage: test1 [host [port [key-base]]]     defaults: 127.0.0.1 9999 0
 *
 * Writes keys base..base+9 (each the decimal string of its key), reads them back, deletes the even
 * ones, reads again, writes key*10 without overwrite (the odd keys must refuse), reads again.
 * Between the steps it waits for Enter; with standard input at end of file (</dev/null) getchar()
 * returns at once, so a script runs it straight through.
 *
 * The suite may run this program many times against one server, so it first deletes its ten keys
 * (ignoring the result); a key base lets several copies run at once without sharing keys.
 * Exits 0 when every call returned what it must, 1 at the first mismatch.
 *
 * Deliberately includes only psiskv.h (which brings stdint.h and stdlib.h), stdio.h and string.h,
 * and compiles as C99 and as C++.
 */
#include "psiskv.h"

#include <stdio.h>
#include <string.h>

#define KEY_COUNT 10
#define READ_BUFFER_BYTES 100
/* The classic program passes 1000 as value_length with a 100-byte buffer. The library copies at
 * most min(stored length, value_length) bytes, and every value stored here is at most 12 bytes,
 * so only those bytes land in the buffer; a longer value would overrun it (the caller's bug). */
#define CLASSIC_VALUE_LENGTH 1000

static void fail(const char *step, uint32_t key, int got, int want) {
  fprintf(stderr, "test1: FAIL %s key %lu: returned %d, expected %d\n", step, (unsigned long)key,
          got, want);
  exit(1);
}

static void wait_for_enter(const char *next) {
  int c;
  printf("test1: press Enter to %s\n", next);
  fflush(stdout);
  do {
    c = getchar();
  } while (c != '\n' && c != EOF);
}

/* The decimal string of n, as the value stored for it. */
static void decimal(char *out, unsigned long long n) {
  sprintf(out, "%llu", n);
}

/* Reads key and checks it holds the string want, or is absent when want is NULL. */
static void expect_value(int kv, uint32_t key, const char *want, const char *step) {
  char buf[READ_BUFFER_BYTES];
  int n;
  memset(buf, 0x7f, sizeof buf);
  n = kv_read(kv, key, buf, CLASSIC_VALUE_LENGTH);
  if (want == NULL) {
    if (n != -2) fail(step, key, n, -2);
    return;
  }
  if (n != (int)strlen(want) + 1) fail(step, key, n, (int)strlen(want) + 1);
  if (memcmp(buf, want, strlen(want) + 1) != 0) {
    fprintf(stderr, "test1: FAIL %s key %lu: read \"%.*s\", expected \"%s\"\n", step,
            (unsigned long)key, n, buf, want);
    exit(1);
  }
}

int main(int argc, char **argv) {
  const char *host = argc > 1 ? argv[1] : "127.0.0.1";
  int port = argc > 2 ? atoi(argv[2]) : 9999;
  uint32_t base = argc > 3 ? (uint32_t)strtoul(argv[3], NULL, 0) : 0;
  char value[32];
  uint32_t i;
  int rc;

  int kv = kv_connect(host, port);
  if (kv < 1) {
    fprintf(stderr, "test1: FAIL kv_connect(%s, %d) returned %d\n", host, port, kv);
    return 1;
  }
  printf("test1: connected to %s:%d, descriptor %d, keys %lu..%lu\n", host, port, kv,
         (unsigned long)base, (unsigned long)(base + KEY_COUNT - 1));

  for (i = 0; i < KEY_COUNT; i++) {
    kv_delete(kv, base + i); /* leftovers of an earlier run; absent is fine */
  }

  for (i = 0; i < KEY_COUNT; i++) {
    decimal(value, base + i);
    rc = kv_write(kv, base + i, value, (uint32_t)strlen(value) + 1, 0);
    if (rc != 0) fail("write", base + i, rc, 0);
  }
  printf("test1: wrote %d keys\n", KEY_COUNT);

  wait_for_enter("read them");
  for (i = 0; i < KEY_COUNT; i++) {
    decimal(value, base + i);
    expect_value(kv, base + i, value, "read");
  }
  printf("test1: read %d keys\n", KEY_COUNT);

  wait_for_enter("delete the even keys");
  for (i = 0; i < KEY_COUNT; i += 2) {
    rc = kv_delete(kv, base + i);
    if (rc != 0) fail("delete", base + i, rc, 0);
  }
  printf("test1: deleted the even keys\n");

  wait_for_enter("read again");
  for (i = 0; i < KEY_COUNT; i++) {
    decimal(value, base + i);
    expect_value(kv, base + i, i % 2 == 0 ? NULL : value, "read after delete");
  }
  printf("test1: even keys gone, odd keys intact\n");

  for (i = 0; i < KEY_COUNT; i++) {
    decimal(value, (unsigned long long)(base + i) * 10);
    rc = kv_write(kv, base + i, value, (uint32_t)strlen(value) + 1, 0);
    if (rc != (i % 2 == 0 ? 0 : -2)) fail("write key*10", base + i, rc, i % 2 == 0 ? 0 : -2);
  }
  printf("test1: wrote key*10 without overwrite: even keys stored, odd keys refused\n");

  wait_for_enter("read again");
  for (i = 0; i < KEY_COUNT; i++) {
    decimal(value, i % 2 == 0 ? (unsigned long long)(base + i) * 10 : base + i);
    expect_value(kv, base + i, value, "final read");
  }

  kv_close(kv);
  printf("test1: OK\n");
  return 0;
}
