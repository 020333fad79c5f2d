package io.psiskv.client;

import static io.psiskv.client.Failures.closedError;
import static io.psiskv.client.Failures.describe;
import static io.psiskv.client.Failures.what;

import io.psiskv.client.Failures.Unavailable;
import io.psiskv.client.InFlight.Pending;
import io.psiskv.protocol.Header;
import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Status;
import java.io.IOException;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;

/**
 * The asynchronous calls of one {@link KvClient} (getAsync, putAsync, putIfAbsentAsync,
 * removeAsync), pipelined on its data connection (PROTOCOL.md §2). A request is sent by its
 * calling thread under the client's lock, as a synchronous call's is ({@link Calls}), and then
 * waits in the {@link InFlight} table, oldest first, for the reader thread ({@link #readAnswers}),
 * which reads the answers in order, checks each against the oldest unanswered request, and
 * completes its future through {@code asyncExecutor}. The reader never takes the client's lock: a
 * sender blocked in a write (a server that stops reading until its answers are taken) is
 * unblocked by the reader taking them. A synchronous call first waits until the table is empty,
 * so the reader and a synchronous call never use the connection's receive buffer at once.
 */
final class Pipeline {
  private final Calls calls;
  private final InFlight inFlight;
  private final Closing closing;
  private final Executor asyncExecutor;

  Pipeline(Calls calls, Executor asyncExecutor) {
    this.calls = calls;
    this.inFlight = calls.inFlight();
    this.closing = calls.closing();
    this.asyncExecutor = asyncExecutor;
  }

  /**
   * Sends one asynchronous request under the client's lock and queues it for the reader; every
   * failure is the future's. With no data connection it first waits until the requests of the
   * broken one have been failed and then connects (in the calling thread, retried as a call's
   * set-up is); with {@link KvClient#MAX_IN_FLIGHT} requests in flight it waits for room.
   */
  <T> CompletableFuture<T> submit(Opcode op, int key, boolean overwrite, byte[] value) {
    CompletableFuture<T> future = new CompletableFuture<>();
    long deadline = calls.callDeadline();
    KvRejectedException tooLarge =
        value == null ? null : Failures.valueTooLarge(value, calls.maxValueBytes());
    if (tooLarge != null) {
      future.completeExceptionally(tooLarge);
      return future;
    }
    long reconnectsBefore;
    try {
      reconnectsBefore = calls.lockWithin(op, key, deadline);
    } catch (KvException e) {
      future.completeExceptionally(e);
      return future;
    }
    try {
      calls.checkUsable();
      inFlight.startReader(this::readAnswers);
      calls.dropIfClosedByReader(op, key);
      calls.connectIfNone(op, key, deadline);
      inFlight.awaitBelow(KvClient.MAX_IN_FLIGHT, op, key, deadline);
      long id = calls.nextId();
      int capacity = calls.maxValueBytes();
      inFlight.add(new Pending(op, key, id, overwrite, capacity, calls.connection(), deadline,
          future));
      try {
        calls.send(op, key, id, overwrite, value, capacity);
      } catch (IOException e) {
        // The reader, reading the closed connection, fails this request and those before it.
        calls.disconnect();
      }
    } catch (KvException e) {
      future.completeExceptionally(e);
    } finally {
      calls.unlock(reconnectsBefore);
    }
    return future;
  }

  /**
   * The reader thread: reads the answers of {@link #inFlight} in order until the client is
   * closed. An answer that fails its request with the stream still in step (an error status,
   * UNAVAILABLE) fails that request only; anything else (the connection broke or timed out, a
   * protocol violation) closes the connection and fails every request sent on it.
   */
  private void readAnswers() {
    Header h = new Header();
    while (true) {
      Pending p = inFlight.awaitOldest();
      if (p == null) {
        return;
      }
      Object result = null;
      KvException failure = null;
      boolean inStep = true;
      try {
        result = readAnswer(p, h);
      } catch (Unavailable e) {
        inStep = false; // the server closes the connection after it (§12.1)
        failure = new KvConnectionException(Status.UNAVAILABLE,
            what(p.op, p.key) + " failed: " + e.getMessage(), e);
      } catch (IOException e) {
        inStep = false;
        failure = closing.isClosed() ? closedError(e) : calls.expired(p.id)
            ? calls.timeoutError(p.op, p.key, "its answer", e)
            : new KvConnectionException(Status.IO_ERROR, what(p.op, p.key)
                + " failed: the connection broke before its answer (asynchronous requests are"
                + " not resent): " + describe(e), e);
      } catch (KvRejectedException e) {
        inStep = !p.valueUnread; // else the answer was read to its end
        failure = e;
      } catch (KvException e) {
        inStep = false;
        failure = e;
      } catch (RuntimeException | Error e) {
        inStep = false;
        failure = new KvException(Status.IO_ERROR, what(p.op, p.key) + " failed: " + e, e);
      }
      List<Pending> dropped = inFlight.remove(p, inStep);
      complete(p, result, failure);
      for (Pending q : dropped) {
        complete(q, null, closing.isClosed() ? closedError(failure) : new KvConnectionException(
            Status.IO_ERROR, what(q.op, q.key) + " failed: the connection was dropped before its"
                + " answer, after " + what(p.op, p.key) + " failed: " + failure.getMessage(),
            failure));
      }
    }
  }

  /**
   * Reader thread: reads and checks the answer to {@code p}, the oldest request in flight; returns
   * its result as the future wants it. Throws as {@link ResponseCheck#readResponse} does.
   */
  private static Object readAnswer(Pending p, Header h) throws IOException {
    ResponseReader rin = p.conn.in;
    ResponseCheck.readResponse(rin, h, p.op, p.key, p.id, true);
    Status status = Status.of(h.flagsOrStatus);
    switch (p.op) {
      case PUT:
        ResponseCheck.checkPutResult(status, p.overwrite);
        return p.overwrite ? null : status == Status.OK;
      case DELETE:
        return status == Status.OK;
      default: // GET
        if (status == Status.NOT_FOUND) {
          return Optional.empty();
        }
        int stored = ResponseCheck.readStoredLength(rin, h, p.capacity);
        if (stored > p.capacity) {
          p.valueUnread = true; // its first `capacity` bytes: the stream is not in step
          throw Failures.storedTooLarge(p.key, stored, p.capacity);
        }
        return Optional.of(rin.readValue(stored));
    }
  }

  /** Completes {@code p}'s future through {@link #asyncExecutor}, or here if it refuses. */
  private void complete(Pending p, Object result, KvException failure) {
    @SuppressWarnings("unchecked")
    CompletableFuture<Object> f = (CompletableFuture<Object>) p.future;
    Runnable r =
        failure == null ? () -> f.complete(result) : () -> f.completeExceptionally(failure);
    try {
      asyncExecutor.execute(r);
    } catch (RuntimeException refused) {
      r.run();
    }
  }
}
