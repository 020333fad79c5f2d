/*
 * test_installed.c - a program built against an installed libpsiskv, as a user builds one:
 * test_install.sh compiles it with nothing but $(pkg-config --cflags --libs psiskv), so psiskv.h
 * and libpsiskv.so come from the prefix that build-scripts/install-libpsiskv installed.
 *
 *   usage: test_installed VERSION [HOST PORT]
 *
 * Checks that the header compiled in is VERSION (PSISKV_VERSION_STRING), and calls that need no
 * server: kv_connect to a port where nothing listens (-1), kv_read and kv_delete on a descriptor
 * never issued (-1 EBADF), kv_close of one (harmless). Given HOST PORT, also a round trip on that
 * Front Server: write, read back, delete. Exit 0 when every check holds, 1 otherwise, 2 usage.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "psiskv.h"

#define KEY 0x1757a11u /* this program's key on a real server */
#define VALUE "installed"
/* A port nothing listens on: 1 (tcpmux) is privileged, and no service of a test machine uses it. */
#define DEAD_PORT 1

static int failures;

static void check(int ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "test_installed: FAIL %s (errno %s)\n", what, strerror(errno));
    failures++;
  }
}

static void round_trip(const char *host, int port) {
  char buf[32];
  int kv = kv_connect(host, port);
  check(kv > 0, "kv_connect to the server");
  if (kv <= 0) return;
  kv_delete(kv, KEY); /* left over from an earlier run, perhaps */
  check(kv_write(kv, KEY, VALUE, sizeof VALUE, 0) == 0, "kv_write");
  memset(buf, 0, sizeof buf);
  check(kv_read(kv, KEY, buf, sizeof buf) == (int)sizeof VALUE, "kv_read returns the length");
  check(strcmp(buf, VALUE) == 0, "kv_read copies the value");
  check(kv_delete(kv, KEY) == 0, "kv_delete");
  kv_close(kv);
}

int main(int argc, char **argv) {
  char one;
  if (argc != 2 && argc != 4) {
    fprintf(stderr, "usage: test_installed VERSION [HOST PORT]\n");
    return 2;
  }
  check(strcmp(PSISKV_VERSION_STRING, argv[1]) == 0, "the header's version is the installed one");
  errno = 0;
  check(kv_connect("127.0.0.1", DEAD_PORT) == -1, "kv_connect where nothing listens");
  errno = 0;
  check(kv_read(-1, KEY, &one, 1) == -1 && errno == EBADF, "kv_read on no descriptor: EBADF");
  errno = 0;
  check(kv_delete(12345, KEY) == -1 && errno == EBADF, "kv_delete on no descriptor: EBADF");
  kv_close(-1);
  if (argc == 4) round_trip(argv[2], atoi(argv[3]));
  printf("test_installed %s: %s, %d failed\n", PSISKV_VERSION_STRING,
         argc == 4 ? "with the server" : "without a server", failures);
  return failures == 0 ? 0 : 1;
}
