package io.psiskv.server.testkit;

import java.io.BufferedReader;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The golden byte vectors of PROTOCOL.md §10, which the Java and C tests share: the java-client
 * module's {@code golden-vectors.txt}. Its path is given by the fuzz executions (system property
 * {@code psiskv.goldenVectors}), else taken relative to this module.
 */
public final class GoldenVectors {
  private GoldenVectors() {}

  /** Every vector by name, in the file's order. */
  public static Map<String, byte[]> load() throws IOException {
    Path file = Path.of(System.getProperty("psiskv.goldenVectors",
        "../java-client/src/test/resources/golden-vectors.txt"));
    Map<String, byte[]> vectors = new LinkedHashMap<>();
    try (BufferedReader r = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
      for (String line; (line = r.readLine()) != null; ) {
        if (!line.isBlank() && !line.startsWith("#")) {
          String[] parts = line.trim().split("\\s+");
          vectors.put(parts[0], HexFormat.of().parseHex(parts[1]));
        }
      }
    }
    return vectors;
  }
}
