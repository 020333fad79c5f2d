package io.psiskv.bench;

import static com.google.common.truth.Truth.assertThat;

import org.junit.jupiter.api.Test;

/** The pieces of the report that are pure functions: the table, result lines, /proc parsing. */
class ReportFormatTest {
  @Test
  void markdownTableColumnsLineUp() {
    MarkdownTable t = new MarkdownTable("server", "ops/s").right(1);
    t.add("psiskv", "1,234");
    t.add("redis | AOF", "99");
    String[] lines = t.render().split("\n");
    assertThat(lines).asList().containsExactly(
        "| server       | ops/s |",
        "| ------------ | ----: |",
        "| psiskv       | 1,234 |",
        "| redis \\| AOF |    99 |").inOrder();
  }

  @Test
  void resultLine() {
    LoadResult r = LoadResult.parse("backend=psiskv threads=16 ops=1000 ops_per_sec=500.5"
        + " errors=2 misses=0 p50_us=10.5 p99_us=99.0 p999_us=120.0 max_us=300.0"
        + " client_cpu_us_per_op=3.25");
    assertThat(r.opsPerSecond()).isEqualTo(500.5);
    assertThat(r.p99()).isEqualTo(99.0);
    assertThat(r.errors()).isEqualTo(2);
    assertThat(r.clientCpuPerOp()).isEqualTo(3.25);
    assertThat(r.serverCpuPerOp()).isNaN();
    assertThat(LoadResult.parse("preloading 100 keys: 42%")).isNull();
    assertThat(LoadResult.parse("backend=redis keys=10 preload_seconds=0.5").number(
        "preload_seconds")).isEqualTo(0.5);
  }

  @Test
  void procStatWithAnAwkwardCommandName() throws Exception {
    // Fields 14 and 15 (utime 1500, stime 250), after a name holding spaces and ')'.
    String stat = "4242 (java (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 1500 250 0 0 20 0 30"
        + " 0 12345 1000000 2000 18446744073709551615\n";
    assertThat(Proc.cpuTicks(stat)).isEqualTo(1750);
    String status = "Name:\tjava\nThreads:\t37\nVmRSS:\t  123456 kB\n";
    assertThat(Proc.statusField(status, "VmRSS")).isEqualTo(123456);
    assertThat(Proc.statusField(status, "Threads")).isEqualTo(37);
  }

  @Test
  void procOfThisProcess() throws Exception {
    long pid = ProcessHandle.current().pid();
    assertThat(Proc.rssBytes(pid)).isGreaterThan(1L << 20);
    assertThat(Proc.threads(pid)).isGreaterThan(1);
    assertThat(Proc.cpuMicros(pid)).isGreaterThan(0L);
  }

  @Test
  void commandLineIsQuotedForAShell() {
    assertThat(BenchFormat.commandLine(new String[] {"--threads", "1,16", "--", "--x", "a b", "it's"}))
        .isEqualTo("build-scripts/psiskv-bench --threads 1,16 -- --x 'a b' 'it'\\''s'");
  }

  @Test
  void workloadNames() {
    assertThat(BenchFormat.workload(90)).isEqualTo("90% reads");
    assertThat(BenchFormat.workload(0)).isEqualTo("writes only");
    assertThat(BenchFormat.workload(100)).isEqualTo("reads only");
  }
}
