/*
 * test2.c - the shape of the course's second test program: two processes writing at once.
 *
 *   usage: test2 [host [port [N]]]     defaults: 127.0.0.1 9999 100
 *
 * Forks at once. The child connects and writes the even keys of 0..N-1, the parent connects at
 * the same moment and writes the odd keys (value: the key's decimal string, no overwrite, each
 * must return 0). The parent waits for the child and checks its exit status, rewrites its odd
 * keys without overwrite (each must return -2), and checks that all N keys hold their own string.
 *
 * The suite may run this program many times against one server, so each process first deletes
 * its own keys (ignoring the result) right after connecting. Exits 0 when every call returned
 * what it must, 1 otherwise.
 */
#include "psiskv.h"

#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEFAULT_KEY_COUNT 100
#define READ_BUFFER_BYTES 32

static const char *who = "parent";

static void fail(const char *step, uint32_t key, int got, int want) {
  fprintf(stderr, "test2 %s: FAIL %s key %lu: returned %d, expected %d\n", who, step,
          (unsigned long)key, got, want);
  exit(1);
}

/* Connects, clears this process's keys (first, first+2, ...), writes them; returns the descriptor. */
static int write_every_other(const char *host, int port, uint32_t first, uint32_t n) {
  char value[16];
  uint32_t key;
  int rc;
  int kv = kv_connect(host, port);
  if (kv < 1) fail("kv_connect", 0, kv, 1);
  for (key = first; key < n; key += 2) {
    kv_delete(kv, key); /* leftovers of an earlier run; absent is fine */
  }
  for (key = first; key < n; key += 2) {
    sprintf(value, "%lu", (unsigned long)key);
    rc = kv_write(kv, key, value, (uint32_t)strlen(value) + 1, 0);
    if (rc != 0) fail("write", key, rc, 0);
  }
  return kv;
}

int main(int argc, char **argv) {
  const char *host = argc > 1 ? argv[1] : "127.0.0.1";
  int port = argc > 2 ? atoi(argv[2]) : 9999;
  uint32_t n = argc > 3 ? (uint32_t)strtoul(argv[3], NULL, 10) : DEFAULT_KEY_COUNT;
  char value[16];
  char buf[READ_BUFFER_BYTES];
  uint32_t key;
  int status;
  int kv;
  int rc;

  pid_t child = fork();
  if (child < 0) {
    perror("test2: fork");
    return 1;
  }
  if (child == 0) {
    who = "child";
    kv = write_every_other(host, port, 0, n);
    kv_close(kv);
    return 0;
  }

  kv = write_every_other(host, port, 1, n);
  if (waitpid(child, &status, 0) != child) {
    perror("test2: waitpid");
    return 1;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "test2: FAIL the child (even keys) failed, status 0x%x\n", status);
    return 1;
  }
  printf("test2: child wrote the even keys, parent wrote the odd keys (%lu keys)\n",
         (unsigned long)n);

  for (key = 1; key < n; key += 2) {
    sprintf(value, "%lu", (unsigned long)key);
    rc = kv_write(kv, key, value, (uint32_t)strlen(value) + 1, 0);
    if (rc != -2) fail("rewrite without overwrite", key, rc, -2);
  }

  for (key = 0; key < n; key++) {
    sprintf(value, "%lu", (unsigned long)key);
    memset(buf, 0x7f, sizeof buf);
    rc = kv_read(kv, key, buf, sizeof buf);
    if (rc != (int)strlen(value) + 1) fail("read", key, rc, (int)strlen(value) + 1);
    if (memcmp(buf, value, strlen(value) + 1) != 0) {
      fprintf(stderr, "test2: FAIL key %lu holds \"%.*s\", expected \"%s\"\n", (unsigned long)key,
              rc, buf, value);
      return 1;
    }
  }

  kv_close(kv);
  printf("test2: OK\n");
  return 0;
}
