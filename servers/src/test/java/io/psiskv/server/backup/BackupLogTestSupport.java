package io.psiskv.server.backup;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.BooleanSupplier;

/** Helpers shared by the backup log tests: a replay model and its comparison. */
public final class BackupLogTestSupport {
  private BackupLogTestSupport() {}

  /** Rebuilds the map and the session table from a replay, as the Data Server would. */
  public static final class Model implements BackupLog.Replay {
    final Map<Integer, byte[]> map = new HashMap<>();
    /** session -> {requestId, result} of its last record. */
    final Map<Long, List<Long>> sessions = new HashMap<>();
    final List<String> events = new ArrayList<>();

    @Override
    public void put(int key, byte[] value, long session, long requestId, int result) {
      map.put(key, value);
      note(session, requestId, result);
      events.add(String.format("put %s %s %d %d %d", Integer.toUnsignedString(key), hex(value),
          session, requestId, result));
    }

    @Override
    public void delete(int key, long session, long requestId, int result) {
      map.remove(key);
      note(session, requestId, result);
      events.add(String.format("delete %s %d %d %d", Integer.toUnsignedString(key), session,
          requestId, result));
    }

    @Override
    public void session(long session, long requestId, int result, byte[] info) {
      note(session, requestId, result);
      events.add(String.format("session %d %d %d", session, requestId, result));
    }

    private void note(long session, long requestId, int result) {
      if (session != LogFormat.NO_SESSION) {
        sessions.put(session, List.of(requestId, (long) result));
      }
    }

    /** The map with hex values, comparable with Truth. */
    Map<Integer, String> hexMap() {
      return BackupLogTestSupport.hexMap(map);
    }
  }

  static Map<Integer, String> hexMap(Map<Integer, byte[]> m) {
    Map<Integer, String> out = new TreeMap<>();
    m.forEach((k, v) -> out.put(k, hex(v)));
    return out;
  }

  static String hex(byte[] b) {
    return HexFormat.of().formatHex(b);
  }

  /** Opens the log in {@code dir}, replays it into a fresh model and closes it again. */
  static Model replay(Path dir) throws IOException {
    Model m = new Model();
    try (BackupLog log = BackupLog.open(dir, FsyncPolicy.ALWAYS, m,
        BackupLog.OpenOptions.defaults())) {
      return m;
    }
  }

  static BackupLog open(Path dir, Model m) throws IOException {
    return BackupLog.open(dir, FsyncPolicy.ALWAYS, m, BackupLog.OpenOptions.defaults());
  }
}
