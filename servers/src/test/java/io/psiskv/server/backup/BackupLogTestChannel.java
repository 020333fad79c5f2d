package io.psiskv.server.backup;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.ReadableByteChannel;
import java.nio.channels.WritableByteChannel;
import java.nio.file.OpenOption;
import java.nio.file.Path;
import java.util.Set;
import java.util.concurrent.Semaphore;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A real FileChannel with switches a test flips: fail writes (optionally after writing part of the
 * buffer, as a full disk does), fail forces, or hold forces at a gate. Deterministic: nothing here
 * depends on timing. One {@link Faults} object is shared by every channel an opener creates, so a
 * switch survives the log's reopen during recovery.
 */
public final class BackupLogTestChannel extends FileChannel {
  /** The switches, shared by all channels of one opener. */
  public static final class Faults {
    volatile boolean failWrites;
    /** With failWrites: bytes of each write that still reach the file before it fails. */
    volatile int writeBytesBeforeFailure;
    public volatile boolean failForce;
    /** Forces that have started (counted before the gate). */
    final AtomicInteger forcesEntered = new AtomicInteger();
    /** When gated, each force takes a permit before it runs. */
    volatile boolean gated;
    final Semaphore gate = new Semaphore(0);
    /** Only files whose name ends with this are affected (null: all). */
    volatile String onlySuffix;

    public BackupLog.ChannelOpener opener() {
      return (path, options) -> new BackupLogTestChannel(path, options, this);
    }
  }

  private final FileChannel real;
  private final Faults faults;
  private final boolean affected;

  BackupLogTestChannel(Path path, Set<? extends OpenOption> options, Faults faults)
      throws IOException {
    this.real = FileChannel.open(path, options);
    this.faults = faults;
    String suffix = faults.onlySuffix;
    this.affected = suffix == null || path.getFileName().toString().endsWith(suffix);
  }

  private int checkedWrite(ByteBuffer src, long position) throws IOException {
    if (affected && faults.failWrites) {
      int allowed = Math.min(src.remaining(), faults.writeBytesBeforeFailure);
      if (allowed > 0) {
        ByteBuffer part = src.duplicate();
        part.limit(part.position() + allowed);
        real.write(part, position);
      }
      throw new IOException("injected write failure (No space left on device)");
    }
    return real.write(src, position);
  }

  @Override
  public int write(ByteBuffer src, long position) throws IOException {
    return checkedWrite(src, position);
  }

  @Override
  public void force(boolean metaData) throws IOException {
    if (affected) {
      faults.forcesEntered.incrementAndGet();
      if (faults.gated) {
        faults.gate.acquireUninterruptibly();
      }
      if (faults.failForce) {
        throw new IOException("injected force failure (Input/output error)");
      }
    }
    real.force(metaData);
  }

  @Override
  public int read(ByteBuffer dst) throws IOException {
    return real.read(dst);
  }

  @Override
  public long read(ByteBuffer[] dsts, int offset, int length) throws IOException {
    return real.read(dsts, offset, length);
  }

  @Override
  public int write(ByteBuffer src) throws IOException {
    int n = checkedWrite(src, real.position());
    real.position(real.position() + n);
    return n;
  }

  @Override
  public long write(ByteBuffer[] srcs, int offset, int length) throws IOException {
    long n = 0;
    for (int i = offset; i < offset + length; i++) {
      n += write(srcs[i]);
    }
    return n;
  }

  @Override
  public long position() throws IOException {
    return real.position();
  }

  @Override
  public FileChannel position(long newPosition) throws IOException {
    real.position(newPosition);
    return this;
  }

  @Override
  public long size() throws IOException {
    return real.size();
  }

  @Override
  public FileChannel truncate(long size) throws IOException {
    real.truncate(size);
    return this;
  }

  @Override
  public long transferTo(long position, long count, WritableByteChannel target)
      throws IOException {
    return real.transferTo(position, count, target);
  }

  @Override
  public long transferFrom(ReadableByteChannel src, long position, long count)
      throws IOException {
    throw new UnsupportedOperationException("not used by the backup log");
  }

  @Override
  public int read(ByteBuffer dst, long position) throws IOException {
    return real.read(dst, position);
  }

  @Override
  public MappedByteBuffer map(MapMode mode, long position, long size) throws IOException {
    throw new UnsupportedOperationException("not used by the backup log");
  }

  @Override
  public FileLock lock(long position, long size, boolean shared) throws IOException {
    throw new UnsupportedOperationException("not used by the backup log");
  }

  @Override
  public FileLock tryLock(long position, long size, boolean shared) throws IOException {
    throw new UnsupportedOperationException("not used by the backup log");
  }

  @Override
  protected void implCloseChannel() throws IOException {
    real.close();
  }
}
