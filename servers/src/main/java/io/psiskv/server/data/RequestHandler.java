package io.psiskv.server.data;

import static io.psiskv.protocol.Protocol.FLAG_OVERWRITE;
import static io.psiskv.protocol.Protocol.GET_RESPONSE_PREFIX_BYTES;
import static io.psiskv.protocol.Protocol.HEADER_BYTES;
import static io.psiskv.protocol.Protocol.SESSION_RESPONSE_BODY_BYTES;
import static io.psiskv.protocol.Protocol.STATS_MAX_BODY_BYTES;

import io.psiskv.protocol.Header;
import io.psiskv.protocol.Messages;
import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Protocol;
import io.psiskv.protocol.Rules;
import io.psiskv.protocol.Status;
import io.psiskv.server.ServerLogProblems;
import io.psiskv.server.store.Engine;
import io.psiskv.server.store.ServerStats;
import io.psiskv.server.store.Sessions;
import io.psiskv.server.store.Store;
import io.psiskv.server.store.ValueArena;
import java.nio.ByteBuffer;
import java.util.Arrays;

/**
 * The protocol of one data connection (PROTOCOL.md §6, §8), with no I/O: it is fed the bytes that
 * arrived, serves every complete request through the {@link Engine}, and queues the answers in
 * its {@link ReplyQueue}, each write's answer with the log sequence it must wait for. All three
 * thread policies drive it the same way ({@link EventLoop}, {@link BlockingConnection}); it never
 * blocks, never touches a socket, and allocates nothing a peer merely claims.
 *
 * <p><b>State machine</b>, owned by the one thread that feeds it:
 *
 * <pre>
 *   AWAIT_SESSION --SESSION--> SERVING --broken rule--> CLOSING (error answer queued)
 *   AWAIT_SESSION --broken rule, or PUT/GET/DELETE (NO_SESSION)--> CLOSING
 * </pre>
 *
 * PING and STATS are answered in both open states. Within a request, the handler waits for a
 * whole header, then for a whole fixed body (GET 4 bytes, SESSION 24); a PUT's value is taken from
 * the input when it is all there, else accumulated as it arrives in an array that grows with what
 * arrived (never to more than twice that, never past the declared length), each growth charged to
 * the server's {@link BodyBudget}. The transport closes a connection that ends or stalls
 * mid-request ({@link #partialSinceNanos}, {@link #describePartial}); nothing of a partial request
 * is applied.
 *
 * <p><b>Feeding.</b> {@link #feed} consumes requests from the buffer's position to its limit and
 * says why it stopped ({@link Outcome}); the bytes it leaves are the start of a request it will
 * want again, in the same order, with whatever arrives next appended.
 */
final class RequestHandler {
  /** Why {@link #feed} returned. */
  enum Outcome {
    /** Every complete request was served; what is left of the input is a partial request. */
    NEED_INPUT,
    /** The answers fill the reply queue: write them, then feed the rest of the input again. */
    OUTPUT_FULL,
    /** A PUT value in arrival waits for body budget: feed again once budget was released. */
    NEED_BUDGET,
    /** A rule was broken: the error answer is queued; write it, then close the connection. */
    CLOSE
  }

  /** Room a request's answer needs in the reply queue, GET values aside. */
  static final int MAX_ANSWER_BYTES = Messages.MAX_FIXED_BYTES;
  /**
   * Large (heap) GET values up to this size are copied behind their answer; longer ones are sent
   * from the stored array. Small values ({@link ValueArena}) are always copied.
   */
  static final int INLINE_VALUE_MAX_BYTES = 4096;
  /** The first array a value in arrival gets (or its whole length if smaller). */
  static final int BODY_INITIAL_BYTES = 16 * 1024;

  /** Shared by every empty value: values are never modified, so one array serves all. */
  private static final byte[] EMPTY_VALUE = new byte[0];

  private final Engine engine;
  private final int maxValueBytes;
  private final BodyBudget budget;
  private final ReplyQueue replies;
  private final String peer;
  private final ServerLogProblems problems;
  /** Asks the transport to close this connection (any thread): a resume took its session. */
  private final Runnable closeRequest;
  /** The serving thread's counters (ServerStats: plain per-thread longs, no lock). */
  private final ServerStats.Counters counters;
  /** A STATS answer is encoded here before it is queued; allocated at the first STATS. */
  private byte[] statsScratch;
  /** The input position and queued answer bytes counted so far in this feed (countBytes). */
  private int inMark;
  private long outMark;
  private final byte[] scratch = new byte[Messages.MAX_FIXED_BYTES];
  private final Header h = new Header();

  private Sessions.Session session;
  private boolean closing;
  private final GetAnswer getAnswer = new GetAnswer();
  /** The capacity of the GET being answered (read by getAnswer). */
  private long getCapacity;
  /** Since when (System.nanoTime) a request has been partly received; 0 if none is. */
  private long partialSinceNanos;

  /** A PUT value in arrival: {@code h} holds its header. */
  private boolean inBody;
  private byte[] body;
  private int bodyFilled;
  private long bodyTicket;
  /** Budget charged for {@code body}'s array. */
  private long bodyCharged;
  /** Budget granted for the next growth of {@code body} but not yet used. */
  private long bodyReserved;

  /**
   * @param peer how log lines name the connection ({@code address:port})
   * @param closeRequest asks the transport to close this connection; any thread may run it (a
   *     SESSION on another connection that resumes this one's session, PROTOCOL.md §6.2)
   * @param counters the counters of the thread that feeds this handler ({@link
   *     ServerStats#register})
   */
  RequestHandler(Engine engine, int maxValueBytes, BodyBudget budget, ReplyQueue replies,
      String peer, ServerLogProblems problems, Runnable closeRequest, ServerStats.Counters counters) {
    this.counters = counters;
    this.engine = engine;
    this.maxValueBytes = maxValueBytes;
    this.budget = budget;
    this.replies = replies;
    this.peer = peer;
    this.problems = problems;
    this.closeRequest = closeRequest;
  }

  ReplyQueue replies() {
    return replies;
  }

  /** Whether SESSION has been served on this connection. */
  boolean hasSession() {
    return session != null;
  }

  /** Since when (a {@code System.nanoTime()} value) a request is partly received, 0 if none. */
  long partialSinceNanos() {
    return partialSinceNanos;
  }

  /** Whether an error answer is queued and the connection must close after writing it. */
  boolean isClosing() {
    return closing;
  }

  /**
   * Serves the complete requests in {@code in} (from its position to its limit), advancing its
   * position past each; see {@link Outcome} for where it stops. {@code nowNanos} dates a request
   * that is left partly received.
   */
  Outcome feed(ByteBuffer in, long nowNanos) {
    inMark = in.position();
    outMark = replies.queuedBytes();
    try {
      return serve(in, nowNanos);
    } finally {
      countBytes(in);
    }
  }

  /**
   * Adds the bytes consumed from {@code in} and queued as answers since the last call (or the
   * start of this feed) to the counters: once per feed, and before a STATS answer, so that it
   * counts every byte before it.
   */
  private void countBytes(ByteBuffer in) {
    counters.add(ServerStats.BYTES_IN, in.position() - inMark);
    inMark = in.position();
    long queued = replies.queuedBytes();
    counters.add(ServerStats.BYTES_OUT, queued - outMark);
    outMark = queued;
  }

  private Outcome serve(ByteBuffer in, long nowNanos) {
    if (closing) {
      return Outcome.CLOSE;
    }
    while (true) {
      if (closing) {
        return Outcome.CLOSE; // A write's answer asked for the close.
      }
      if (!in.hasRemaining() && !inBody) {
        return Outcome.NEED_INPUT;
      }
      if (!replies.hasRoom(MAX_ANSWER_BYTES)) {
        return Outcome.OUTPUT_FULL; // Also before a value's last bytes: its answer needs room.
      }
      if (inBody) {
        Outcome waiting = fillBody(in);
        if (waiting != null) {
          markPartial(nowNanos);
          return waiting;
        }
        finishBody();
        partialSinceNanos = 0;
        continue;
      }
      Outcome o = serveOne(in);
      if (o != null) {
        if (o == Outcome.NEED_INPUT) {
          markPartial(nowNanos);
        }
        return o;
      }
      partialSinceNanos = 0;
    }
  }

  /** Serves the request at the buffer's position; null if served, else why it cannot be. */
  private Outcome serveOne(ByteBuffer in) {
    if (in.remaining() < HEADER_BYTES) {
      return Outcome.NEED_INPUT;
    }
    in.get(in.position(), scratch, 0, HEADER_BYTES);
    h.decode(scratch, 0);
    Rules.Rejection broken = Rules.checkRequest(h, maxValueBytes);
    if (broken != null) {
      return reject(broken.status(), broken.reason());
    }
    Opcode op = Opcode.of(h.opcode);
    switch (op) {
      case PING:
      case STATS:
      case SESSION:
      case GET:
      case DELETE:
        break;
      case PUT:
        if (session == null) {
          return reject(Status.NO_SESSION, op + " before SESSION");
        }
        in.position(in.position() + HEADER_BYTES);
        return startPut(in);
      default:
        return reject(Status.BAD_REQUEST, op + " is not a data-connection request");
    }
    if (op == Opcode.SESSION && session != null) {
      return reject(Status.BAD_REQUEST, "second SESSION on one connection");
    }
    if (op != Opcode.PING && op != Opcode.STATS && op != Opcode.SESSION && session == null) {
      return reject(Status.NO_SESSION, op + " before SESSION");
    }
    // Rules.checkRequest bounded the body of these opcodes to their fixed length.
    int need = HEADER_BYTES + (int) h.bodyLength;
    if (in.remaining() < need) {
      return Outcome.NEED_INPUT;
    }
    in.get(in.position(), scratch, 0, need);
    long capacity = 0;
    if (op == Opcode.GET) {
      capacity = Integer.toUnsignedLong(Header.getU32(scratch, HEADER_BYTES));
      // A small value is copied behind its answer under the stripe lock: room first.
      int room = HEADER_BYTES + GET_RESPONSE_PREFIX_BYTES
          + (int) Math.min(capacity, ValueArena.MAX_VALUE_BYTES);
      if (!replies.hasRoom(room)) {
        return Outcome.OUTPUT_FULL;
      }
    } else if (op == Opcode.STATS && !replies.hasRoom(HEADER_BYTES + STATS_MAX_BODY_BYTES)) {
      return Outcome.OUTPUT_FULL;
    }
    in.position(in.position() + need);
    switch (op) {
      case PING:
        answer(Status.OK, 0);
        break;
      case STATS:
        counters.add(ServerStats.STATS_REQUESTS, 1);
        countBytes(in);
        answerStats();
        break;
      case SESSION:
        Sessions.Attached a = engine.openSession(Header.getU64(scratch, HEADER_BYTES),
            Arrays.copyOfRange(scratch, HEADER_BYTES + 8,
                HEADER_BYTES + 8 + Protocol.SESSION_SECRET_BYTES), closeRequest);
        if (a.refusal() != null) {
          return reject(a.refusal(), a.refusal() == Status.FORBIDDEN
              ? "SESSION with the wrong secret for session " + Long.toHexString(
                  Header.getU64(scratch, HEADER_BYTES))
              : a.refusal() == Status.UNAVAILABLE ? "SESSION refused: the session table is full"
              : "SESSION with a zero id and a secret, or an id and a zero secret");
        }
        session = a.session();
        int at = replies.claim(HEADER_BYTES + SESSION_RESPONSE_BODY_BYTES);
        Messages.sessionOk(replies.buffer(), at, h.requestId, session.id, session.secret(),
            maxValueBytes);
        break;
      case GET:
        getCapacity = capacity;
        if (engine.read(h.key, getAnswer)) {
          counters.add(ServerStats.GET_HITS, 1);
        } else {
          counters.add(ServerStats.GET_MISSES, 1);
          answer(Status.NOT_FOUND, h.key);
        }
        break;
      default:
        counters.add(ServerStats.DELETES, 1);
        Engine.WriteResult w = engine.delete(session, h.requestId, h.key);
        answerWrite(w);
        break;
    }
    return null;
  }

  /**
   * Encodes a GET's answer from the value the store hands it under the stripe lock: a small
   * value is copied behind the answer, a large one is sent from the stored array (immutable) or
   * copied if it is short enough to inline.
   */
  private final class GetAnswer implements Store.ValueReader {
    @Override
    public void small(int length, Store.SmallValue value) {
      int sent = prefix(length);
      value.copyTo(replies.buffer(), replies.claim(sent), sent);
    }

    @Override
    public void large(byte[] value) {
      int sent = prefix(value.length);
      if (sent <= INLINE_VALUE_MAX_BYTES && replies.hasRoom(sent)) {
        System.arraycopy(value, 0, replies.buffer(), replies.claim(sent), sent);
      } else {
        replies.value(value, sent);
      }
    }

    /** Queues the OK header and stored length; returns how many value bytes follow. */
    private int prefix(int storedLength) {
      int sent = (int) Math.min(getCapacity, storedLength);
      int at = replies.claim(HEADER_BYTES + GET_RESPONSE_PREFIX_BYTES);
      Messages.getOkPrefix(replies.buffer(), at, h.key, h.requestId, storedLength, sent);
      return sent;
    }
  }

  /** A PUT whose header was consumed: served now if its value is all here, else accumulated. */
  private Outcome startPut(ByteBuffer in) {
    int len = (int) h.bodyLength; // Rules.checkRequest bounded it by maxValueBytes.
    if (in.remaining() >= len) {
      byte[] value = EMPTY_VALUE;
      if (len > 0) {
        try {
          value = new byte[len];
        } catch (OutOfMemoryError e) {
          return reject(Status.SERVER_ERROR, "no memory for a value of " + len + " bytes");
        }
        in.get(value);
      }
      applyPut(value);
      return null;
    }
    inBody = true;
    body = null;
    bodyFilled = 0;
    bodyCharged = 0;
    bodyReserved = 0;
    bodyTicket = budget.begin();
    return null;
  }

  /**
   * Moves arriving value bytes into the body array, growing it under the budget; null once the
   * value is complete, else why it waits.
   */
  private Outcome fillBody(ByteBuffer in) {
    int len = (int) h.bodyLength;
    while (bodyFilled < len) {
      if (!in.hasRemaining()) {
        return Outcome.NEED_INPUT;
      }
      if (body == null || bodyFilled == body.length) {
        int capacity = body == null ? 0 : body.length;
        int grown = (int) Math.min(len, Math.max(BODY_INITIAL_BYTES, 2L * capacity));
        long growth = grown - capacity;
        if (bodyReserved < growth) {
          if (!budget.tryGrow(bodyTicket, growth - bodyReserved)) {
            return Outcome.NEED_BUDGET;
          }
        }
        bodyReserved = 0;
        bodyCharged += growth;
        try {
          body = body == null ? new byte[grown] : Arrays.copyOf(body, grown);
        } catch (OutOfMemoryError e) {
          dropBody();
          reject(Status.SERVER_ERROR, "no memory for a value of " + len + " bytes");
          return Outcome.CLOSE;
        }
      }
      int n = Math.min(in.remaining(), body.length - bodyFilled);
      in.get(body, bodyFilled, n);
      bodyFilled += n;
    }
    return null;
  }

  /**
   * For connection threads only, after {@link Outcome#NEED_BUDGET}: blocks until the value in
   * arrival may grow (true: feed again) or {@code deadlineNanos} passes (false).
   */
  boolean awaitBudget(long deadlineNanos) throws InterruptedException {
    int capacity = body == null ? 0 : body.length;
    long growth = Math.min(h.bodyLength, Math.max(BODY_INITIAL_BYTES, 2L * capacity)) - capacity;
    if (!budget.grow(bodyTicket, growth, deadlineNanos)) {
      return false;
    }
    bodyReserved = growth;
    return true;
  }

  /** The value is complete: its budget is released (the store owns it now) and it is applied. */
  private void finishBody() {
    byte[] value = body;
    dropBody();
    applyPut(value);
  }

  private void dropBody() {
    if (inBody) {
      budget.end(bodyTicket, bodyCharged + bodyReserved);
      inBody = false;
      body = null;
      bodyCharged = 0;
      bodyReserved = 0;
    }
  }

  private void applyPut(byte[] value) {
    boolean overwrite = (h.flagsOrStatus & FLAG_OVERWRITE) != 0;
    counters.add(overwrite ? ServerStats.PUTS : ServerStats.PUTS_IF_ABSENT, 1);
    answerWrite(engine.put(session, h.requestId, h.key, value, overwrite));
  }

  /**
   * Queues a write's answer, to be sent once its record is durable. BAD_REQUEST (a request id
   * reused for another request, or below the session's last, PROTOCOL.md §12.5) closes the
   * connection after it.
   */
  private void answerWrite(Engine.WriteResult w) {
    if (w.status() == Status.BAD_REQUEST) {
      reject(Status.BAD_REQUEST, Opcode.of(h.opcode) + " with request id "
          + Long.toUnsignedString(h.requestId) + ", which neither follows the session's last"
          + " write nor repeats it exactly");
      return;
    }
    int at = replies.claim(HEADER_BYTES);
    Messages.status(replies.buffer(), at, h.opcode, w.status(), h.key, h.requestId);
    replies.awaitRecord(at, w.durableSeq());
  }

  /**
   * Queues the STATS answer (PROTOCOL.md §6.7): the server's snapshot, encoded here and copied
   * into the queue, which the caller checked has room for the largest body.
   */
  private void answerStats() {
    if (statsScratch == null) {
      statsScratch = new byte[HEADER_BYTES + STATS_MAX_BODY_BYTES];
    }
    int n = Messages.statsOk(statsScratch, 0, Opcode.STATS, h.requestId,
        engine.stats().snapshot());
    int at = replies.claim(n); // Before buffer(): an empty queue takes its buffer in claim.
    System.arraycopy(statsScratch, 0, replies.buffer(), at, n);
  }

  private void answer(Status status, int key) {
    int at = replies.claim(HEADER_BYTES);
    Messages.status(replies.buffer(), at, h.opcode, status, key, h.requestId);
  }

  /**
   * Queues the error answer (the header was read), logs one line, and asks for the close. Every
   * caller has checked the queue's room for one answer (the check in {@link #feed}).
   */
  private Outcome reject(Status status, String reason) {
    problem(ServerLogProblems.Kind.VIOLATION, reason + "; answered " + status + ", closing");
    answer(status, h.key);
    closing = true;
    return Outcome.CLOSE;
  }

  private void markPartial(long nowNanos) {
    if (partialSinceNanos == 0) {
      partialSinceNanos = nowNanos == 0 ? 1 : nowNanos;
    }
  }

  /**
   * What the connection broke off in, for the log line of a peer that closed or stalled with
   * {@code unconsumed} bytes of a request left in the input, or null if no request was started.
   */
  String describePartial(int unconsumed) {
    if (inBody) {
      return "mid-body (" + bodyFilled + " of " + h.bodyLength + " value bytes); nothing applied";
    }
    if (unconsumed == 0) {
      return null;
    }
    if (unconsumed < HEADER_BYTES) {
      return "mid-header (" + unconsumed + " of " + HEADER_BYTES + " bytes)";
    }
    // A whole header is there, so the last feed decoded it into h: its fixed body is short.
    return "mid-body (" + (unconsumed - HEADER_BYTES) + " of " + h.bodyLength + " bytes)";
  }

  /** The connection is closed: its session is detached, its budget and buffers released. */
  void close() {
    dropBody();
    replies.reset();
    if (session != null) {
      engine.closeSession(session, closeRequest);
      session = null;
    }
  }

  /** Logs a problem of this connection, within the server's rate limit ({@link ServerLogProblems}). */
  void problem(ServerLogProblems.Kind kind, String message) {
    problems.report(kind, peer, message);
  }
}
