/*
 * test_descriptor.c - a descriptor is a file descriptor the library owns (issue finding 6: table
 * indices from 1 collided with the program's own files, and a program that called close() on its
 * descriptor closed stdout). Against the fake server of fake_server.h, serving each connection on
 * a thread of its own (needs no real server).
 *
 *   usage: test_descriptor
 *
 * Checks: a descriptor is a socket (fstat S_ISSOCK) at a number >= 3, close-on-exec, closed by
 * kv_close; many descriptors at once are distinct numbers and behave with poll() (writable, not
 * readable while idle); a program that closed stdin still gets a descriptor >= 3 and its 0 back
 * from open(); close(d) followed by kv_write(d) is -1 EBADF and stdout still works; a file that
 * got the number afterwards receives no byte, and kv_close(d) leaves it open; another socket put
 * at the number (the identity check, fstat st_dev/st_ino) receives no byte either; kv_connect
 * after such a close may get the number again and works; at the file limit kv_connect fails with
 * EMFILE, as socket() does. Bounded by alarm(DESCRIPTOR_ALARM_SECONDS): a call that waits for an
 * answer on a socket that is not the server's would hang, and SIGALRM makes that a failure.
 */
#define _POSIX_C_SOURCE 200809L

#include "psiskv.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "check.h"
#include "fake_server.h"

#define RETRY_TIMEOUT "5000"
#define MANY_DESCRIPTORS 32
/* The lowest number of a descriptor (psiskv.h: never stdin, stdout or stderr's). */
#define LOWEST_DESCRIPTOR 3
/* The file limit set for the EMFILE check: well above what this program has open. */
#define LOW_FILE_LIMIT 256
#define DESCRIPTOR_ALARM_SECONDS 60

static struct fake f;

static int connect_fake(void) {
  int kv = kv_connect("127.0.0.1", f.front_port);
  if (kv < 0) {
    fprintf(stderr, "test_descriptor: kv_connect to the fake failed: %s\n", strerror(errno));
    exit(1);
  }
  return kv;
}

static int is_open(int fd) { return fcntl(fd, F_GETFD) != -1; }

static int is_socket(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

/* Opens /dev/null until one lands at number d or above, so that every number below d is taken;
 * the fillers are stored in fill[] (at most max); returns how many, and closes the last one. */
static int fill_below(int d, int *fill, int max) {
  int n = 0;
  for (;;) {
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) break;
    if (fd >= d || n == max) {
      close(fd);
      break;
    }
    fill[n++] = fd;
  }
  return n;
}

static void test_a_socket_of_its_own(void) {
  int kv = connect_fake();
  char buf[8];
  int flags = fcntl(kv, F_GETFD);
  CHECK(kv >= LOWEST_DESCRIPTOR, "descriptor %d below %d", kv, LOWEST_DESCRIPTOR);
  CHECK(is_socket(kv), "descriptor %d is not a socket", kv);
  CHECK(flags != -1 && (flags & FD_CLOEXEC) != 0, "descriptor %d is not close-on-exec", kv);
  CHECK_RC(kv_write(kv, 1, "one", 4, 1), 0, 0);
  CHECK_RC(kv_read(kv, 1, buf, sizeof buf), 4, 0);
  kv_close(kv);
  CHECK(!is_open(kv), "kv_close left descriptor %d open", kv);
  CHECK_RC(kv_write(kv, 1, "one", 4, 1), -1, EBADF);
}

static void test_many_descriptors_and_poll(void) {
  struct pollfd p[MANY_DESCRIPTORS];
  int kv[MANY_DESCRIPTORS];
  char value[16];
  int i;
  int j;
  int ready;
  for (i = 0; i < MANY_DESCRIPTORS; i++) {
    kv[i] = connect_fake();
    CHECK(kv[i] >= LOWEST_DESCRIPTOR && is_socket(kv[i]), "descriptor %d: not a socket >= %d",
          kv[i], LOWEST_DESCRIPTOR);
    for (j = 0; j < i; j++) CHECK(kv[j] != kv[i], "descriptor %d issued twice", kv[i]);
  }
  for (i = 0; i < MANY_DESCRIPTORS; i++) {
    sprintf(value, "d%d", i);
    CHECK_RC(kv_write(kv[i], 100 + (uint32_t)i, value, (uint32_t)strlen(value) + 1, 1), 0, 0);
  }
  /* Idle connections: writable, and nothing to read (the server sends nothing unasked). */
  for (i = 0; i < MANY_DESCRIPTORS; i++) {
    p[i].fd = kv[i];
    p[i].events = POLLOUT;
    p[i].revents = 0;
  }
  ready = poll(p, MANY_DESCRIPTORS, 0);
  CHECK(ready == MANY_DESCRIPTORS, "poll POLLOUT: %d of %d descriptors ready", ready,
        MANY_DESCRIPTORS);
  for (i = 0; i < MANY_DESCRIPTORS; i++) {
    CHECK(p[i].revents == POLLOUT, "poll POLLOUT: descriptor %d revents 0x%x", kv[i],
          p[i].revents);
    p[i].events = POLLIN;
    p[i].revents = 0;
  }
  ready = poll(p, MANY_DESCRIPTORS, 0);
  CHECK(ready == 0, "poll POLLIN on idle descriptors: %d ready", ready);
  for (i = 0; i < MANY_DESCRIPTORS; i++) { /* each reads what the next one wrote */
    int other = (i + 1) % MANY_DESCRIPTORS;
    char buf[16];
    sprintf(value, "d%d", other);
    CHECK_RC(kv_read(kv[i], 100 + (uint32_t)other, buf, sizeof buf), (int)strlen(value) + 1, 0);
  }
  for (i = 0; i < MANY_DESCRIPTORS; i++) kv_close(kv[i]);
  for (i = 0; i < MANY_DESCRIPTORS; i++) {
    CHECK(!is_open(kv[i]), "kv_close left descriptor %d open", kv[i]);
  }
}

/* A program that closed stdin: its descriptors stay above the standard streams' numbers, and
 * its next open() gets 0 back. In a child process, so that the fake's own sockets (its thread
 * accepts in the parent) cannot take number 0 meanwhile; the child reports by its exit status. */
static void test_closed_stdin(void) {
  int status = 0;
  pid_t child;
  fflush(stdout);
  child = fork();
  if (child == 0) {
    int kv;
    int fd;
    int bad = 0;
    close(0);
    kv = kv_connect("127.0.0.1", f.front_port);
    bad |= kv < LOWEST_DESCRIPTOR;
    bad |= is_open(0) << 1; /* the library kept number 0 */
    bad |= (kv_write(kv, 2, "x", 2, 1) != 0) << 2;
    fd = open("/dev/null", O_RDONLY);
    bad |= (fd != 0) << 3;
    kv_close(kv);
    _exit(bad);
  }
  CHECK(child > 0, "fork failed");
  if (child < 0) return;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
        "with stdin closed: status 0x%x (exit bits: 1 descriptor below 3, 2 the library kept 0, "
        "4 kv_write failed, 8 open() did not get 0)", status);
}

/* The program closes its descriptor with close(): every later call is -1 EBADF, stdout works, a
 * file that takes the number gets no byte and stays open after kv_close. */
static void test_stray_close(void) {
  char path[] = "/tmp/psiskv-test-descriptor.XXXXXX";
  struct stat st;
  int kv = connect_fake();
  char buf[8];
  int file;
  CHECK_RC(kv_write(kv, 3, "three", 6, 1), 0, 0);
  close(kv);
  CHECK_RC(kv_write(kv, 3, "again", 6, 1), -1, EBADF);
  CHECK_RC(kv_read(kv, 3, buf, sizeof buf), -1, EBADF);
  CHECK_RC(kv_delete(kv, 3), -1, EBADF);
  CHECK(is_open(1) && fflush(stdout) == 0 && printf("test_descriptor: stdout still works\n") > 0 &&
            fflush(stdout) == 0,
        "stdout broken after close(descriptor)");
  /* A file at the number. */
  file = mkstemp(path);
  CHECK(file >= 0, "mkstemp failed");
  if (file < 0) return;
  unlink(path);
  if (file != kv) {
    CHECK(dup2(file, kv) == kv, "dup2 of the file onto %d failed", kv);
    close(file);
    file = kv;
  }
  CHECK_RC(kv_write(kv, 3, "again", 6, 1), -1, EBADF);
  CHECK_RC(kv_delete(kv, 3), -1, EBADF);
  kv_close(kv);
  CHECK(is_open(file), "kv_close closed the program's file at number %d", file);
  CHECK(fstat(file, &st) == 0 && st.st_size == 0, "the file at number %d got %ld bytes", file,
        (long)st.st_size);
  close(file);
}

/* The identity check: another socket at the number (the program closed the descriptor, and a
 * socket of its own got the number) gets no byte, and the call is -1 EBADF at once. */
static void test_another_socket_at_the_number(void) {
  int sp[2];
  char c;
  int kv = connect_fake();
  CHECK_RC(kv_write(kv, 4, "four", 5, 1), 0, 0);
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) != 0) {
    CHECK(0, "socketpair failed");
    return;
  }
  /* What close(kv) and a socket() that got the number would do, in one step (dup2). */
  CHECK(dup2(sp[0], kv) == kv, "dup2 of a socket onto %d failed", kv);
  close(sp[0]);
  CHECK_RC(kv_write(kv, 4, "again", 6, 1), -1, EBADF);
  CHECK_RC(kv_read(kv, 4, NULL, 0), -1, EBADF);
  errno = 0;
  CHECK(recv(sp[1], &c, 1, MSG_DONTWAIT) == -1 && (errno == EAGAIN || errno == EWOULDBLOCK),
        "the socket at number %d received bytes from the library (errno %s)", kv,
        strerror(errno));
  kv_close(kv);
  CHECK(is_open(kv), "kv_close closed the program's socket at number %d", kv);
  close(kv);
  close(sp[1]);
  /* kv_close alone, with no call in between, leaves the program's socket alone too. */
  kv = connect_fake();
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) != 0) {
    CHECK(0, "socketpair failed");
    return;
  }
  CHECK(dup2(sp[0], kv) == kv, "dup2 of a socket onto %d failed", kv);
  close(sp[0]);
  kv_close(kv);
  CHECK(is_open(kv), "kv_close closed the program's socket at number %d", kv);
  CHECK_RC(kv_delete(kv, 4), -1, EBADF);
  close(kv);
  close(sp[1]);
}

/* kv_connect after a stray close gets the number again (every lower number is taken) and works;
 * the descriptor closed by mistake stays dead. */
static void test_number_reissued(void) {
  int fill[1024];
  int filled;
  int kv = connect_fake();
  int again;
  char buf[8];
  int i;
  CHECK_RC(kv_write(kv, 5, "five", 5, 1), 0, 0);
  close(kv);
  filled = fill_below(kv, fill, (int)(sizeof fill / sizeof fill[0]));
  again = connect_fake();
  for (i = 0; i < filled; i++) close(fill[i]);
  CHECK(again == kv, "kv_connect after close(%d) got %d, expected the number again", kv, again);
  CHECK_RC(kv_read(again, 5, buf, sizeof buf), 5, 0);
  CHECK_RC(kv_write(again, 5, "six", 4, 1), 0, 0);
  kv_close(again);
  CHECK(!is_open(again), "kv_close left descriptor %d open", again);
}

/* At the file limit, kv_connect fails as socket() does: -1 EMFILE. */
static void test_file_limit(void) {
  struct rlimit saved;
  struct rlimit low;
  int fill[LOW_FILE_LIMIT];
  int filled = 0;
  int i;
  if (getrlimit(RLIMIT_NOFILE, &saved) < 0) {
    CHECK(0, "getrlimit failed");
    return;
  }
  low = saved;
  if (low.rlim_cur > LOW_FILE_LIMIT) low.rlim_cur = LOW_FILE_LIMIT;
  CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0, "setrlimit failed");
  while (filled < LOW_FILE_LIMIT) {
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) break;
    fill[filled++] = fd;
  }
  CHECK_RC(kv_connect("127.0.0.1", f.front_port), -1, EMFILE);
  for (i = 0; i < filled; i++) close(fill[i]);
  setrlimit(RLIMIT_NOFILE, &saved);
  i = connect_fake(); /* and it works again */
  kv_close(i);
}

int main(void) {
  alarm(DESCRIPTOR_ALARM_SECONDS);
  /* Read once by the library, at its first kv_connect: set before any call. */
  setenv("PSISKV_RETRY_TIMEOUT_MS", RETRY_TIMEOUT, 1);
  fake_start_concurrent(&f);
  test_a_socket_of_its_own();
  test_many_descriptors_and_poll();
  test_closed_stdin();
  test_stray_close();
  test_another_socket_at_the_number();
  test_number_reissued();
  test_file_limit();
  fake_stop(&f);
  return check_summary("test_descriptor");
}
