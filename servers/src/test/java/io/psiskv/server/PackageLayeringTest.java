package io.psiskv.server;

import static com.google.common.truth.Truth.assertWithMessage;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/**
 * The servers' packages are layered one way (DESIGN.md, code map): a package imports only the
 * packages before it in {@link #LAYERS} and the root's shared pieces; only the launchers import
 * the root's process classes. Reads the main sources' imports, so a change that breaks the rule
 * fails here, naming the file and the import.
 */
class PackageLayeringTest {
  private static final Path SOURCES = Path.of("src/main/java/io/psiskv/server");
  private static final Map<String, Integer> LAYERS =
      Map.of("backup", 0, "store", 1, "data", 2, "control", 3, "front", 4);
  /** What every package may use of the root. */
  private static final Set<String> ROOT_SHARED = Set.of("ServerLog", "ServerLogProblems",
      "ServerLogSummary", "ServerConfig", "PrivateFiles", "DataDirLock", "Sockets", "Deadlines",
      "Uninterruptibles");
  /** The classes that launch a peer process and hand it back to the root's process class. */
  private static final Set<String> LAUNCHERS = Set.of("DataServerLauncher", "FrontServerLauncher");
  private static final Set<String> ROOT_PROCESSES = Set.of("FrontServer", "DataServer");
  private static final Pattern IMPORT =
      Pattern.compile("^import (?:static )?io\\.psiskv\\.server\\.(?:([a-z]+)\\.)?([A-Z]\\w*)",
          Pattern.MULTILINE);

  @Test
  void eachPackageUsesOnlyTheLayersBeforeItAndTheRootsSharedPieces() throws IOException {
    List<String> broken = new ArrayList<>();
    int files = 0;
    for (Map.Entry<String, Integer> layer : LAYERS.entrySet()) {
      try (Stream<Path> sources = Files.list(SOURCES.resolve(layer.getKey()))) {
        for (Path file : (Iterable<Path>) sources::iterator) {
          files++;
          String name = file.getFileName().toString().replace(".java", "");
          Matcher m = IMPORT.matcher(Files.readString(file));
          while (m.find()) {
            String pkg = m.group(1);
            String cls = m.group(2);
            boolean allowed = pkg == null
                ? ROOT_SHARED.contains(cls)
                    || (LAUNCHERS.contains(name) && ROOT_PROCESSES.contains(cls))
                : LAYERS.containsKey(pkg) && LAYERS.get(pkg) <= layer.getValue();
            if (!allowed) {
              broken.add(layer.getKey() + "/" + name + " imports "
                  + (pkg == null ? "" : pkg + ".") + cls);
            }
          }
        }
      }
    }
    assertWithMessage("source files read").that(files).isGreaterThan(40);
    assertWithMessage("imports against the layering").that(broken).isEmpty();
  }
}
