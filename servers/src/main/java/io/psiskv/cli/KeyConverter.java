package io.psiskv.cli;

import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.TypeConversionException;

/**
 * A key of the command line (PROTOCOL.md §9: u32, every value usable): decimal {@code 0} to
 * {@code 4294967295}, or {@code 0x} / {@code 0X} and 1 to 8 hex digits. Anything else, a sign, a
 * space or a value past 32 bits, is a usage error (exit code 2). The key is returned as the
 * {@code int} with the same 32 bits, as {@link io.psiskv.client.KvClient} takes it.
 */
final class KeyConverter implements ITypeConverter<Integer> {
  static final long MAX_KEY = 0xFFFF_FFFFL;

  @Override
  public Integer convert(String text) {
    return parse(text);
  }

  static int parse(String text) {
    boolean hex = text.startsWith("0x") || text.startsWith("0X");
    String digits = hex ? text.substring(2) : text;
    int radix = hex ? 16 : 10;
    if (digits.isEmpty() || digits.length() > (hex ? 8 : 10)) {
      throw bad(text);
    }
    long v = 0;
    for (int i = 0; i < digits.length(); i++) {
      int d = Character.digit(digits.charAt(i), radix);
      if (d < 0 || digits.charAt(i) > 0x7F) { // No other script's digits.
        throw bad(text);
      }
      v = v * radix + d;
    }
    if (v > MAX_KEY) {
      throw bad(text);
    }
    return (int) v;
  }

  private static TypeConversionException bad(String text) {
    return new TypeConversionException("'" + text + "' is not a key: keys are 0 to 4294967295,"
        + " decimal or 0x hex (0x0 to 0xffffffff)");
  }
}
