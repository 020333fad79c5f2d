package io.psiskv.server;

import java.nio.file.Path;

/**
 * Child process for {@link DataDirLockTest}: takes the lock on {@code args[0]}, prints {@code
 * LOCKED}, and holds it until its standard input closes; or prints the error of a failed attempt.
 */
final class DataDirLockChild {
  private DataDirLockChild() {}

  public static void main(String[] args) throws Exception {
    try (DataDirLock lock = DataDirLock.acquire(Path.of(args[0]))) {
      System.out.println("LOCKED " + lock.file());
      while (System.in.read() >= 0) {
        // hold the lock until the parent closes our stdin
      }
    } catch (java.io.IOException e) {
      System.out.println("REFUSED " + e.getMessage());
    }
  }
}
