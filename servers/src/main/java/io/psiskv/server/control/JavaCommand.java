package io.psiskv.server.control;

import java.io.File;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;

/**
 * The command line of a peer JVM, the same for both launchers and for every relaunch: this JVM's
 * own java, its classpath with absolute entries and its options, so the peer runs what we run
 * wherever it is started from.
 */
public final class JavaCommand {
  private JavaCommand() {}

  /** The running JVM's own java launcher: the peer runs on the same Java. */
  public static String javaBinary() {
    Path java = Path.of(System.getProperty("java.home"), "bin", "java");
    if (Files.isExecutable(java)) {
      return java.toString();
    }
    return ProcessHandle.current().info().command().orElse("java");
  }

  /** This JVM's classpath with absolute entries, so the peer does not depend on our cwd. */
  static String absoluteClassPath() {
    List<String> entries = new ArrayList<>();
    for (String entry : System.getProperty("java.class.path").split(File.pathSeparator)) {
      if (!entry.isEmpty()) {
        entries.add(Path.of(entry).toAbsolutePath().toString());
      }
    }
    return String.join(File.pathSeparator, entries);
  }

  /**
   * {@code java <options> -cp <our classpath> <main> <args>}: {@code jvmOptions} first, then this
   * JVM's own heap, GC and system-property options ({@link #inheritedJvmOptions}), so that what
   * the user gave the first JVM (e.g. {@code -Xmx}) holds for every process of the pair and wins
   * over a default.
   */
  public static List<String> of(Class<?> main, List<String> jvmOptions,
      List<String> args) {
    LinkedHashSet<String> options = new LinkedHashSet<>(jvmOptions);
    options.addAll(inheritedJvmOptions());
    List<String> command = new ArrayList<>();
    command.add(javaBinary());
    command.addAll(options);
    command.add("-cp");
    command.add(absoluteClassPath());
    command.add(main.getName());
    command.addAll(args);
    return command;
  }

  /**
   * This JVM's {@code -X}, {@code -XX:} and {@code -D} options, except those that must not be
   * given twice on one machine (a debugger's port, a flight recording's file, a JMX port).
   */
  static List<String> inheritedJvmOptions() {
    List<String> inherited = new ArrayList<>();
    for (String a : ManagementFactory.getRuntimeMXBean()
        .getInputArguments()) {
      boolean passed = a.startsWith("-X") || a.startsWith("-D");
      boolean unique = a.startsWith("-Xrun") || a.startsWith("-Xdebug")
          || a.startsWith("-XX:StartFlightRecording") || a.startsWith("-XX:FlightRecorderOptions")
          || a.startsWith("-Dcom.sun.management");
      if (passed && !unique) {
        inherited.add(a);
      }
    }
    return inherited;
  }
}
