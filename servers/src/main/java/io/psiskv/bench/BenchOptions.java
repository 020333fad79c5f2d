package io.psiskv.bench;

import java.nio.file.InvalidPathException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The options of {@code build-scripts/psiskv-bench}, parsed and checked once ({@link #parse}). A
 * bad option is a {@link UsageException} whose message is the one line the user sees before the
 * usage. Instances are immutable.
 */
final class BenchOptions {
  static final List<Integer> DEFAULT_THREADS = List.of(1, 16, 64);
  static final List<Integer> DEFAULT_READ_PERCENTS = List.of(90, 0);
  static final int DEFAULT_VALUE_BYTES = 100;
  static final int DEFAULT_KEYS = 100_000;
  static final double DEFAULT_SECONDS = 5;
  static final double DEFAULT_WARMUP_SECONDS = 2;
  static final int DEFAULT_MEMORY_KEYS = 1_000_000;
  static final int DEFAULT_PRELOAD_THREADS = 32;
  /** Relative to the repository root. */
  static final String DEFAULT_PLOT = "target/psiskv-bench.svg";

  /** Limits: a thread per connection, values no larger than psiskv's default maximum. */
  static final int MAX_THREADS = 4096;
  static final int MAX_VALUE_BYTES = 64 * 1024 * 1024;
  static final double MAX_SECONDS = 86_400;

  static final String USAGE = String.join("\n",
      "usage: build-scripts/psiskv-bench [options] [-- psiskv server options]",
      "  --threads LIST         client threads per point, comma-separated (default 1,16,64)",
      "  --read-percent P       workload: reads in percent, the rest writes; a comma list or",
      "                         repeated (default 90,0: 90% reads, and writes only)",
      "  --value-bytes N        value size (default 100)",
      "  --keys N               keys preloaded and used, uniform (default 100000)",
      "  --seconds S            measured seconds per point (default 5)",
      "  --warmup-seconds S     load before each measured interval (default 2)",
      "  --compare              also Redis 7 (no persistence, and AOF with appendfsync always),",
      "                         memcached, and psiskv with --fsync no; installs them through apt",
      "                         if missing; includes --memory unless --no-memory",
      "  --java                 also the Java clients: KvClient on psiskv, Jedis on Redis",
      "  --load                 the load phase (the default unless --memory or --hostile given)",
      "  --memory               RSS per key: fresh server, VmRSS before and after loading",
      "                         --memory-keys keys of --value-bytes bytes",
      "  --memory-keys N        keys of the memory phase (default 1000000)",
      "  --no-memory            --compare without the memory phase",
      "  --hostile              psiskv under hostile connections (idle, stalled, slow HELLO)",
      "  --preload-threads N    connections that preload the keys (default 32)",
      "  --plot FILE            the SVG plot of throughput and p99 (default target/psiskv-bench.svg)",
      "  --help                 this text",
      "  -- ARGS                options for every psiskv server started, e.g. -- --fsync everysec",
      "The table goes to stdout (Markdown), progress to stderr.");

  final List<Integer> threads;
  final List<Integer> readPercents;
  final int valueBytes;
  final int keys;
  final double seconds;
  final double warmupSeconds;
  final boolean compare;
  final boolean java;
  final boolean load;
  final boolean memory;
  final int memoryKeys;
  final boolean hostile;
  final int preloadThreads;
  /** Null: the default, under the repository root. */
  final Path plot;
  final boolean help;
  final List<String> serverArgs;

  /** A bad command line: the message says what is wrong, in one line. */
  static final class UsageException extends Exception {
    private static final long serialVersionUID = 1L;

    UsageException(String message) {
      super(message);
    }
  }

  private BenchOptions(Builder b) {
    threads = List.copyOf(b.threads);
    readPercents = List.copyOf(b.readPercents);
    valueBytes = b.valueBytes;
    keys = b.keys;
    seconds = b.seconds;
    warmupSeconds = b.warmupSeconds;
    compare = b.compare;
    java = b.java;
    boolean phaseChosen = b.memory || b.hostile;
    load = b.load || !phaseChosen;
    memory = b.memory || (b.compare && load && !b.noMemory);
    memoryKeys = b.memoryKeys;
    hostile = b.hostile;
    preloadThreads = b.preloadThreads;
    plot = b.plot;
    help = b.help;
    serverArgs = List.copyOf(b.serverArgs);
  }

  private static final class Builder {
    List<Integer> threads = DEFAULT_THREADS;
    List<Integer> readPercents = DEFAULT_READ_PERCENTS;
    boolean readPercentsGiven;
    int valueBytes = DEFAULT_VALUE_BYTES;
    int keys = DEFAULT_KEYS;
    double seconds = DEFAULT_SECONDS;
    double warmupSeconds = DEFAULT_WARMUP_SECONDS;
    boolean compare;
    boolean java;
    boolean load;
    boolean memory;
    boolean noMemory;
    int memoryKeys = DEFAULT_MEMORY_KEYS;
    boolean hostile;
    int preloadThreads = DEFAULT_PRELOAD_THREADS;
    Path plot;
    boolean help;
    List<String> serverArgs = List.of();
  }

  static BenchOptions parse(List<String> args) throws UsageException {
    Builder b = new Builder();
    for (int i = 0; i < args.size(); i++) {
      String a = args.get(i);
      String inline = null; // The value of --name=value.
      int eq = a.indexOf('=');
      if (a.startsWith("--") && eq > 2) {
        inline = a.substring(eq + 1);
        a = a.substring(0, eq);
        if (!takesValue(a)) {
          throw new UsageException(isFlag(a) ? a + " takes no value"
              : "unknown option '" + a + "'");
        }
      }
      switch (inline != null ? "" : a) {
        case "--":
          b.serverArgs = args.subList(i + 1, args.size());
          return new BenchOptions(b);
        case "--help":
        case "-h":
          b.help = true;
          continue;
        case "--compare":
          b.compare = true;
          continue;
        case "--java":
          b.java = true;
          continue;
        case "--load":
          b.load = true;
          continue;
        case "--memory":
          b.memory = true;
          continue;
        case "--no-memory":
          b.noMemory = true;
          continue;
        case "--hostile":
          b.hostile = true;
          continue;
        default:
          break;
      }
      if (!a.startsWith("--") || !takesValue(a)) {
        throw new UsageException("unknown option '" + a + "'");
      }
      if (inline == null && i + 1 >= args.size()) {
        throw new UsageException(a + " needs a value");
      }
      String v = inline != null ? inline : args.get(++i);
      switch (a) {
        case "--threads":
          b.threads = intList(a, v, 1, MAX_THREADS);
          break;
        case "--read-percent":
          List<Integer> more = intList(a, v, 0, 100);
          if (!b.readPercentsGiven) {
            b.readPercents = new ArrayList<>();
            b.readPercentsGiven = true;
          }
          for (int p : more) {
            if (!b.readPercents.contains(p)) {
              b.readPercents.add(p);
            }
          }
          break;
        case "--value-bytes":
          b.valueBytes = integer(a, v, 0, MAX_VALUE_BYTES);
          break;
        case "--keys":
          b.keys = integer(a, v, 1, Integer.MAX_VALUE);
          break;
        case "--seconds":
          b.seconds = seconds(a, v, 0.001);
          break;
        case "--warmup-seconds":
          b.warmupSeconds = seconds(a, v, 0);
          break;
        case "--memory-keys":
          b.memoryKeys = integer(a, v, 1, Integer.MAX_VALUE);
          break;
        case "--preload-threads":
          b.preloadThreads = integer(a, v, 1, MAX_THREADS);
          break;
        case "--plot":
          try {
            b.plot = Path.of(v);
          } catch (InvalidPathException e) {
            throw new UsageException("--plot wants a file name, not '" + v + "'");
          }
          if (v.isEmpty()) {
            throw new UsageException("--plot wants a file name");
          }
          break;
        default:
          throw new AssertionError(a);
      }
    }
    return new BenchOptions(b);
  }

  private static boolean isFlag(String option) {
    return List.of("--help", "--compare", "--java", "--load", "--memory", "--no-memory",
        "--hostile").contains(option);
  }

  private static boolean takesValue(String option) {
    return List.of("--threads", "--read-percent", "--value-bytes", "--keys", "--seconds",
        "--warmup-seconds", "--memory-keys", "--preload-threads", "--plot").contains(option);
  }

  private static int integer(String option, String text, int min, int max)
      throws UsageException {
    try {
      long v = Long.parseLong(text.trim().replace("_", ""));
      if (v >= min && v <= max) {
        return (int) v;
      }
    } catch (NumberFormatException e) {
      // Reported below.
    }
    throw new UsageException(option + " wants a whole number in " + min + ".." + max + ", not '"
        + text + "'");
  }

  private static List<Integer> intList(String option, String text, int min, int max)
      throws UsageException {
    List<Integer> list = new ArrayList<>();
    for (String part : text.split(",", -1)) {
      if (part.isBlank()) {
        throw new UsageException(option + " wants a comma-separated list of whole numbers in "
            + min + ".." + max + ", not '" + text + "'");
      }
      int v = integer(option, part, min, max);
      if (!list.contains(v)) {
        list.add(v);
      }
    }
    return list;
  }

  private static double seconds(String option, String text, double min) throws UsageException {
    try {
      double v = Double.parseDouble(text.trim());
      if (v >= min && v <= MAX_SECONDS) {
        return v;
      }
    } catch (NumberFormatException e) {
      // Reported below.
    }
    throw new UsageException(option + " wants a number of seconds, at least "
        + (min > 0 ? String.valueOf(min) : "0") + " and at most " + (long) MAX_SECONDS
        + ", not '" + text + "'");
  }
}
