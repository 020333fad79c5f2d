package io.psiskv.server.data;

import static com.google.common.truth.Truth.assertThat;
import static com.google.common.truth.Truth.assertWithMessage;

import io.psiskv.client.KvClient;
import io.psiskv.protocol.Opcode;
import io.psiskv.protocol.Protocol;
import io.psiskv.protocol.StatsBody;
import io.psiskv.protocol.Status;
import io.psiskv.server.testkit.Poll;
import io.psiskv.server.testkit.RawClient;
import io.psiskv.server.testkit.ServerFixture;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * STATS (PROTOCOL.md §6.7) through a real server pair: each counter moves with the requests that
 * should move it, the figures name the real processes, and the console's {@code status} prints
 * the same snapshot (§7.4). The pair is shared by the class's tests, which therefore compare
 * differences, never absolute counts, except where a test owns the keys.
 */
@Tag("process")
@Tag("server-pair")
class StatsTest {
  private static final Duration TIMEOUT = Duration.ofSeconds(20);

  @RegisterExtension static final ServerFixture server = ServerFixture.builder().build();

  @AfterAll
  static void stopsCleanly() {
    server.stop();
  }

  private static long n(Map<String, Object> stats, String name) {
    Object v = stats.get(name);
    assertWithMessage("counter %s in %s", name, stats).that(v).isInstanceOf(Long.class);
    return (Long) v;
  }

  private static long delta(Map<String, Object> before, Map<String, Object> after, String name) {
    return n(after, name) - n(before, name);
  }

  @Test
  void countersMoveWithTheRequestsThatMoveThem() {
    try (KvClient kv = KvClient.connect(server.host(), server.port())) {
      byte[] value = "forty-two bytes of value, give or take...".getBytes(StandardCharsets.UTF_8);
      // The session's first write also logs its SESSION record (PROTOCOL.md §11.2): done here,
      // so that the PUT below is one record and one force.
      kv.put(9_000, new byte[0]);
      Map<String, Object> s0 = kv.stats();
      kv.put(9_001, value);
      Map<String, Object> s1 = kv.stats();
      assertThat(delta(s0, s1, "ops_put")).isEqualTo(1);
      assertThat(delta(s0, s1, "keys")).isEqualTo(1);
      assertThat(delta(s0, s1, "value_bytes")).isEqualTo(value.length);
      // The PUT (header and value) and this STATS request (a header): a STATS answer counts
      // every request byte up to its own.
      assertThat(delta(s0, s1, "bytes_in"))
          .isEqualTo(Protocol.HEADER_BYTES + value.length + Protocol.HEADER_BYTES);
      // The answers to s0's STATS (its whole size) and to the PUT (a header).
      assertThat(delta(s0, s1, "bytes_out")).isGreaterThan(2L * Protocol.HEADER_BYTES);
      assertThat(delta(s0, s1, "ops_stats")).isEqualTo(1);
      // fsync always (the fixture's default): the PUT's record was forced by a commit.
      assertThat(delta(s0, s1, "fsyncs")).isEqualTo(1);
      assertThat(delta(s0, s1, "fsync_records")).isEqualTo(1);
      assertThat(n(s1, "fsync_p99_us")).isAtLeast(n(s1, "fsync_p50_us"));

      assertThat(kv.get(9_002)).isEqualTo(Optional.empty());
      Map<String, Object> s2 = kv.stats();
      assertThat(delta(s1, s2, "ops_get")).isEqualTo(1);
      assertThat(delta(s1, s2, "get_misses")).isEqualTo(1);
      assertThat(delta(s1, s2, "get_hits")).isEqualTo(0);

      assertThat(kv.get(9_001).orElseThrow()).isEqualTo(value);
      assertThat(kv.putIfAbsent(9_001, value)).isFalse();
      Map<String, Object> s3 = kv.stats();
      assertThat(delta(s2, s3, "get_hits")).isEqualTo(1);
      assertThat(delta(s2, s3, "ops_put_if_absent")).isEqualTo(1);
      assertThat(delta(s2, s3, "ops_put")).isEqualTo(0);
      assertThat(delta(s2, s3, "keys")).isEqualTo(0);
      // The GET's answer: header, stored length, value; the KEY_EXISTS answer: a header.
      assertThat(delta(s2, s3, "bytes_out")).isAtLeast(
          2L * Protocol.HEADER_BYTES + Protocol.GET_RESPONSE_PREFIX_BYTES + value.length);

      assertThat(kv.remove(9_001)).isTrue();
      assertThat(kv.remove(9_001)).isFalse();
      Map<String, Object> s4 = kv.stats();
      assertThat(delta(s3, s4, "ops_delete")).isEqualTo(2);
      assertThat(delta(s3, s4, "keys")).isEqualTo(-1);
    }
  }

  @Test
  void figuresNameTheRealProcessesAndConnections() throws Exception {
    Map<String, Object> s;
    long totalBefore;
    try (KvClient kv = KvClient.connect(server.host(), server.port())) {
      s = kv.stats();
      totalBefore = n(s, "connections_total");
      assertThat(s.get("version")).isInstanceOf(String.class);
      assertThat(n(s, "protocol_version")).isEqualTo(Protocol.VERSION);
      assertThat(n(s, "pid")).isEqualTo(server.dataPid());
      assertThat(n(s, "front_pid")).isEqualTo(server.frontPid());
      assertThat(n(s, "connections")).isAtLeast(1);
      assertThat(totalBefore).isAtLeast(n(s, "connections"));
      assertThat(n(s, "connections_refused")).isEqualTo(0);
      assertThat(n(s, "front_relaunches")).isEqualTo(0);
      assertThat(n(s, "uptime_ms")).isAtLeast(0);
      assertThat(n(s, "heap_used_bytes")).isGreaterThan(0);
      assertThat(n(s, "heap_committed_bytes")).isAtLeast(n(s, "heap_used_bytes"));
      assertThat(n(s, "rss_bytes")).isGreaterThan(n(s, "heap_used_bytes") / 4);
      assertThat(s.get("fsync")).isEqualTo("always");
      assertThat(n(s, "log_failed")).isEqualTo(0);
      assertThat(s.keySet()).containsAtLeast("ops_get", "ops_put", "ops_put_if_absent",
          "ops_delete", "get_hits", "get_misses", "bytes_in", "bytes_out", "sessions",
          "value_bytes", "log_file_bytes", "log_last_sync_ms", "fsync_p50_us", "fsync_p99_us");
    }
    // A connection that ended still counts in the totals (its thread's counters are kept).
    try (KvClient other = KvClient.connect(server.host(), server.port())) {
      other.put(9_100, new byte[] {1});
    }
    try (KvClient kv = KvClient.connect(server.host(), server.port())) {
      Map<String, Object> after = kv.stats();
      assertThat(n(after, "connections_total")).isAtLeast(totalBefore + 2);
      assertThat(n(after, "ops_put")).isAtLeast(n(s, "ops_put") + 1);
    }
  }

  @Test
  void statsIsAnsweredBeforeSessionWithAValidBody() throws Exception {
    try (RawClient c = RawClient.data(server)) {
      c.send(RawClient.header(Opcode.STATS, 0, 0, 77, 0));
      RawClient.Response r = c.readChecked(Opcode.STATS, 77);
      assertThat(r.status()).isEqualTo(Status.OK);
      assertThat(r.body.length).isAtMost(Protocol.STATS_MAX_BODY_BYTES);
      Map<String, Object> s = StatsBody.decode(r.body, 0, r.body.length);
      assertThat(n(s, "pid")).isEqualTo(server.dataPid());
      // The connection stays open: a PING after it is answered.
      assertThat(c.ping().status()).isEqualTo(Status.OK);
    }
  }

  @Test
  void statsWithAKeyOrABodyIsBadRequest() throws Exception {
    try (RawClient c = RawClient.data(server)) {
      c.send(RawClient.header(Opcode.STATS, 0, 5, 78, 0));
      assertThat(c.read().status()).isEqualTo(Status.BAD_REQUEST);
      assertThat(c.closedByPeer()).isTrue();
    }
  }

  private static final Pattern REQUESTS_LINE = Pattern.compile("^requests: (\\d+) get \\((\\d+)"
      + " hits, (\\d+) misses\\), (\\d+) put, (\\d+) put-if-absent, (\\d+) delete, (\\d+) stats;"
      + " (\\d+) bytes in, (\\d+) bytes out$");
  private static final Pattern FSYNC_LINE = Pattern.compile(
      "^fsync: (\\d+) commits, (\\S+) records per fsync, latency p50 (\\d+) us, p99 (\\d+) us$");
  private static final Pattern PROCESS_LINE = Pattern.compile(
      "^process: version (\\S+), heap (\\d+) bytes used of (\\d+) committed, rss (\\d+) bytes$");

  @Test
  void consoleStatusPrintsTheSameCounters() {
    try (KvClient kv = KvClient.connect(server.host(), server.port())) {
      kv.put(9_200, new byte[] {1, 2, 3});
      kv.get(9_201);
      // Nothing else touches this pair between the two snapshots: the tests of a class run one
      // at a time. A snapshot counts its own STATS request and its bytes, and the console's,
      // taken next over the control connection, counts no data request, so the two agree.
      Map<String, Object> s = kv.stats();
      int before = server.stdoutLines().size();
      server.console("status");
      Matcher m = awaitLine(REQUESTS_LINE, before);
      assertThat(Long.parseLong(m.group(1))).isEqualTo(n(s, "ops_get"));
      assertThat(Long.parseLong(m.group(2))).isEqualTo(n(s, "get_hits"));
      assertThat(Long.parseLong(m.group(3))).isEqualTo(n(s, "get_misses"));
      assertThat(Long.parseLong(m.group(4))).isEqualTo(n(s, "ops_put"));
      assertThat(Long.parseLong(m.group(5))).isEqualTo(n(s, "ops_put_if_absent"));
      assertThat(Long.parseLong(m.group(6))).isEqualTo(n(s, "ops_delete"));
      assertThat(Long.parseLong(m.group(7))).isEqualTo(n(s, "ops_stats"));
      assertThat(Long.parseLong(m.group(8))).isEqualTo(n(s, "bytes_in"));
      Matcher f = awaitLine(FSYNC_LINE, before);
      assertThat(Long.parseLong(f.group(1))).isEqualTo(n(s, "fsyncs"));
      Matcher p = awaitLine(PROCESS_LINE, before);
      assertThat(p.group(1)).isEqualTo(s.get("version"));
    }
  }

  private Matcher awaitLine(Pattern p, int after) {
    Poll.require(TIMEOUT, () -> server.stdoutLines().stream().skip(after)
        .anyMatch(l -> p.matcher(l).matches()), () -> "status output: " + server.stdoutLines());
    List<String> lines = server.stdoutLines();
    String line = lines.stream().skip(after).filter(l -> p.matcher(l).matches()).findFirst()
        .orElseThrow();
    Matcher m = p.matcher(line);
    assertThat(m.matches()).isTrue();
    return m;
  }
}
