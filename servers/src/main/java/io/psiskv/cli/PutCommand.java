package io.psiskv.cli;

import io.psiskv.client.KvClient;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.ParentCommand;
import picocli.CommandLine.Spec;
import picocli.CommandLine;

/** {@code put KEY VALUE | put KEY - | put --file F KEY}, with {@code --if-absent}. */
@Command(exitCodeListHeading = "%nExit codes:%n",
    exitCodeList = {
        "0:stored",
        "1:--if-absent, and KEY already has a value (nothing changed)",
        PsiskvCli.EXIT_2_LINE,
        PsiskvCli.EXIT_3_LINE},
    name = "put", mixinStandardHelpOptions = true,
    description = {"Stores a value under KEY, replacing any earlier value.",
        "The value is VALUE as text (UTF-8), stdin if VALUE is -, or the bytes of --file FILE."})
final class PutCommand implements Callable<Integer> {
  /** Bytes a read of stdin or of a file asks for at once. */
  private static final int READ_CHUNK_BYTES = 64 * 1024;

  @ParentCommand PsiskvCli cli;
  @Spec CommandSpec spec;

  @Parameters(index = "0", paramLabel = "KEY", converter = KeyConverter.class,
      description = "0 to 4294967295, or 0x0 to 0xffffffff")
  int key;

  @Parameters(index = "1", arity = "0..1", paramLabel = "VALUE",
      description = "the value as text; - reads the value from stdin")
  String value;

  @Option(names = "--file", paramLabel = "FILE", description = "store the bytes of FILE")
  Path file;

  @Option(names = "--if-absent",
      description = "store only if KEY has no value (exit code 1 if it has one)")
  boolean ifAbsent;

  @Override
  public Integer call() throws IOException {
    CommandLine cl = spec.commandLine();
    if ((value == null) == (file == null)) {
      throw new CommandLine.ParameterException(cl, value == null
          ? "put needs a VALUE, - (stdin) or --file FILE" : "give VALUE or --file FILE, not both");
    }
    cli.checkConnectionOptions(cl);
    String k = Integer.toUnsignedString(key);
    try (KvClient kv = cli.connect()) {
      byte[] bytes = value(kv.maxValueBytes());
      if (!ifAbsent) {
        kv.put(key, bytes);
        return PsiskvCli.EXIT_OK;
      }
      if (kv.putIfAbsent(key, bytes)) {
        return PsiskvCli.EXIT_OK;
      }
      cl.getErr().println("psiskv-cli: key " + k + " exists; nothing changed");
      return PsiskvCli.EXIT_NO;
    }
  }

  /** The value's bytes, refused (exit code 3) past the server's maximum before it is all read. */
  private byte[] value(int max) throws IOException {
    if (file != null) {
      try (InputStream in = Files.newInputStream(file)) {
        return readAtMost(in, max, "file " + file);
      } catch (NoSuchFileException e) {
        throw new PsiskvCli.Failure("cannot read " + file + ": no such file");
      } catch (IOException e) {
        throw new PsiskvCli.Failure("cannot read " + file + ": " + e.getMessage());
      }
    }
    if (value.equals("-")) {
      return readAtMost(cli.stdin(), max, "stdin");
    }
    byte[] bytes = value.getBytes(StandardCharsets.UTF_8);
    if (bytes.length > max) {
      throw tooLarge("VALUE", max);
    }
    return bytes;
  }

  private static byte[] readAtMost(InputStream in, int max, String what) throws IOException {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    byte[] chunk = new byte[READ_CHUNK_BYTES];
    long total = 0;
    for (int n; (n = in.read(chunk)) != -1; ) {
      total += n;
      if (total > max) {
        throw tooLarge(what, max);
      }
      out.write(chunk, 0, n);
    }
    return out.toByteArray();
  }

  private static PsiskvCli.Failure tooLarge(String what, int max) {
    return new PsiskvCli.Failure("the value from " + what + " is longer than the server's"
        + " maximum of " + max + " bytes");
  }
}
