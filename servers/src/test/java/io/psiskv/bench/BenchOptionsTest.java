package io.psiskv.bench;

import static com.google.common.truth.Truth.assertThat;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.psiskv.bench.BenchOptions.UsageException;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;

class BenchOptionsTest {
  private static BenchOptions parse(String... args) throws UsageException {
    return BenchOptions.parse(List.of(args));
  }

  private static String error(String... args) {
    return assertThrows(UsageException.class, () -> parse(args)).getMessage();
  }

  @Test
  void defaults() throws Exception {
    BenchOptions o = parse();
    assertThat(o.threads).containsExactly(1, 16, 64).inOrder();
    assertThat(o.readPercents).containsExactly(90, 0).inOrder();
    assertThat(o.valueBytes).isEqualTo(100);
    assertThat(o.keys).isEqualTo(100_000);
    assertThat(o.seconds).isEqualTo(5.0);
    assertThat(o.warmupSeconds).isEqualTo(2.0);
    assertThat(o.load).isTrue();
    assertThat(o.memory).isFalse();
    assertThat(o.hostile).isFalse();
    assertThat(o.compare).isFalse();
    assertThat(o.java).isFalse();
    assertThat(o.memoryKeys).isEqualTo(1_000_000);
    assertThat(o.plot).isNull();
    assertThat(o.serverArgs).isEmpty();
  }

  @Test
  void everyOptionWithAValue() throws Exception {
    BenchOptions o = parse("--threads", "2,8", "--read-percent", "50", "--value-bytes", "0",
        "--keys", "10_000", "--seconds", "0.5", "--warmup-seconds", "0", "--memory-keys", "5",
        "--preload-threads", "3", "--plot", "/tmp/p.svg");
    assertThat(o.threads).containsExactly(2, 8).inOrder();
    assertThat(o.readPercents).containsExactly(50);
    assertThat(o.valueBytes).isEqualTo(0);
    assertThat(o.keys).isEqualTo(10_000);
    assertThat(o.seconds).isEqualTo(0.5);
    assertThat(o.warmupSeconds).isEqualTo(0.0);
    assertThat(o.memoryKeys).isEqualTo(5);
    assertThat(o.preloadThreads).isEqualTo(3);
    assertThat(o.plot).isEqualTo(Path.of("/tmp/p.svg"));
  }

  @Test
  void equalsSpellingAsWell() throws Exception {
    BenchOptions o = parse("--threads=4", "--seconds=1");
    assertThat(o.threads).containsExactly(4);
    assertThat(o.seconds).isEqualTo(1.0);
    assertThat(error("--compare=yes")).isEqualTo("--compare takes no value");
    assertThat(error("--colour=red")).isEqualTo("unknown option '--colour'");
  }

  @Test
  void readPercentRepeatsOrTakesAList() throws Exception {
    assertThat(parse("--read-percent", "100", "--read-percent", "0,50").readPercents)
        .containsExactly(100, 0, 50).inOrder();
    assertThat(parse("--read-percent", "90,90").readPercents).containsExactly(90);
  }

  @Test
  void phases() throws Exception {
    assertThat(parse("--compare").memory).isTrue();
    assertThat(parse("--compare", "--no-memory").memory).isFalse();
    BenchOptions memoryOnly = parse("--memory");
    assertThat(memoryOnly.memory).isTrue();
    assertThat(memoryOnly.load).isFalse();
    BenchOptions hostileOnly = parse("--hostile");
    assertThat(hostileOnly.hostile).isTrue();
    assertThat(hostileOnly.load).isFalse();
    assertThat(hostileOnly.memory).isFalse();
    BenchOptions both = parse("--hostile", "--load");
    assertThat(both.load).isTrue();
    assertThat(both.hostile).isTrue();
  }

  @Test
  void serverOptionsAfterTheDoubleDash() throws Exception {
    BenchOptions o = parse("--threads", "1", "--", "--fsync", "no", "--threads", "pool:4");
    assertThat(o.threads).containsExactly(1);
    assertThat(o.serverArgs).containsExactly("--fsync", "no", "--threads", "pool:4").inOrder();
  }

  @Test
  void help() throws Exception {
    assertThat(parse("--help").help).isTrue();
    assertThat(parse("-h").help).isTrue();
    assertThat(BenchOptions.USAGE).contains("--compare");
  }

  @Test
  void badOptionsSayWhatIsWrongInOneLine() {
    assertThat(error("--frobnicate")).isEqualTo("unknown option '--frobnicate'");
    assertThat(error("64")).isEqualTo("unknown option '64'");
    assertThat(error("--threads")).isEqualTo("--threads needs a value");
    assertThat(error("--threads", "0")).isEqualTo(
        "--threads wants a whole number in 1..4096, not '0'");
    assertThat(error("--threads", "1,,2")).startsWith("--threads wants a comma-separated list");
    assertThat(error("--threads", "x")).contains("not 'x'");
    assertThat(error("--read-percent", "101")).isEqualTo(
        "--read-percent wants a whole number in 0..100, not '101'");
    assertThat(error("--keys", "0")).contains("1..");
    assertThat(error("--value-bytes", "-1")).contains("not '-1'");
    assertThat(error("--seconds", "0")).isEqualTo(
        "--seconds wants a number of seconds, at least 0.001 and at most 86400, not '0'");
    assertThat(error("--seconds", "NaN")).contains("not 'NaN'");
    assertThat(error("--warmup-seconds", "-1")).contains("at least 0 ");
    assertThat(error("--plot", "")).isEqualTo("--plot wants a file name");
    for (String message : List.of(error("--frobnicate"), error("--seconds", "x"))) {
      assertThat(message).doesNotContain("\n");
    }
  }
}
