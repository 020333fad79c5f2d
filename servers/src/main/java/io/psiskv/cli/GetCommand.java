package io.psiskv.cli;

import io.psiskv.client.KvClient;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.Optional;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.ParentCommand;
import picocli.CommandLine.Spec;

/** {@code get KEY}, {@code get --raw KEY}. */
@Command(exitCodeListHeading = "%nExit codes:%n",
    exitCodeList = {
        "0:found: the value is printed",
        "1:no such key",
        PsiskvCli.EXIT_2_LINE,
        PsiskvCli.EXIT_3_LINE},
    name = "get", mixinStandardHelpOptions = true,
    description = {"Prints the value of KEY.",
        "As text with a newline; a value that is not printable UTF-8 text is shown with \\xNN"
            + " escapes (and a backslash as \\\\), so no byte reaches the terminal as a control"
            + " code. --raw writes the exact bytes, nothing added."})
final class GetCommand implements Callable<Integer> {
  @ParentCommand PsiskvCli cli;
  @Spec CommandSpec spec;

  @Parameters(index = "0", paramLabel = "KEY", converter = KeyConverter.class,
      description = "0 to 4294967295, or 0x0 to 0xffffffff")
  int key;

  @Option(names = "--raw", description = "write the value's bytes exactly (binary-safe)")
  boolean raw;

  @Override
  public Integer call() throws IOException {
    cli.checkConnectionOptions(spec.commandLine());
    Optional<byte[]> value;
    try (KvClient kv = cli.connect()) {
      value = kv.get(key);
    }
    if (value.isEmpty()) {
      spec.commandLine().getErr().println("psiskv-cli: no such key "
          + Integer.toUnsignedString(key));
      return PsiskvCli.EXIT_NO;
    }
    OutputStream out = cli.stdout();
    out.write(raw ? value.get() : text(value.get()));
    out.flush();
    return PsiskvCli.EXIT_OK;
  }

  /**
   * The value as a line of text: itself if it is valid UTF-8 without control characters (tab
   * allowed) and without a backslash, else escaped; a newline added either way.
   */
  static byte[] text(byte[] value) {
    if (isPlainText(value)) {
      byte[] line = java.util.Arrays.copyOf(value, value.length + 1);
      line[value.length] = '\n';
      return line;
    }
    StringBuilder b = new StringBuilder(value.length * 2);
    for (byte x : value) {
      int c = x & 0xFF;
      if (c == '\\') {
        b.append("\\\\");
      } else if (c >= 0x20 && c < 0x7F) {
        b.append((char) c);
      } else {
        b.append(String.format("\\x%02x", c));
      }
    }
    return (b.append('\n')).toString().getBytes(StandardCharsets.US_ASCII);
  }

  private static boolean isPlainText(byte[] value) {
    String s;
    try {
      s = StandardCharsets.UTF_8.newDecoder()
          .onMalformedInput(CodingErrorAction.REPORT)
          .onUnmappableCharacter(CodingErrorAction.REPORT)
          .decode(ByteBuffer.wrap(value)).toString();
    } catch (CharacterCodingException e) {
      return false;
    }
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (c == '\\' || (Character.isISOControl(c) && c != '\t')) {
        return false;
      }
    }
    return true;
  }
}
