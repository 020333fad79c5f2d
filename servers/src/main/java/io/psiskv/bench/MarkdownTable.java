package io.psiskv.bench;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * A Markdown table with its columns padded to one width, so that it reads as well in a terminal as
 * it renders in DESIGN.md. Numeric columns (declared with {@link #right}) are right-aligned.
 */
final class MarkdownTable {
  private final List<String> headers;
  private final boolean[] right;
  private final List<String[]> rows = new ArrayList<>();

  MarkdownTable(String... headers) {
    this.headers = List.of(headers);
    this.right = new boolean[headers.length];
  }

  /** Right-aligns the columns with these indexes. */
  MarkdownTable right(int... columns) {
    for (int c : columns) {
      right[c] = true;
    }
    return this;
  }

  void add(String... cells) {
    if (cells.length != headers.size()) {
      throw new IllegalArgumentException(cells.length + " cells for " + headers.size()
          + " columns");
    }
    String[] escaped = new String[cells.length];
    for (int c = 0; c < cells.length; c++) {
      escaped[c] = cells[c].replace("|", "\\|");
    }
    rows.add(escaped);
  }

  boolean isEmpty() {
    return rows.isEmpty();
  }

  String render() {
    int[] width = new int[headers.size()];
    for (int c = 0; c < width.length; c++) {
      width[c] = Math.max(3, headers.get(c).length());
      for (String[] row : rows) {
        width[c] = Math.max(width[c], row[c].length());
      }
    }
    StringBuilder out = new StringBuilder();
    line(out, headers.toArray(new String[0]), width);
    String[] rule = new String[width.length];
    for (int c = 0; c < width.length; c++) {
      char[] dashes = new char[width[c]];
      Arrays.fill(dashes, '-');
      if (right[c]) {
        dashes[width[c] - 1] = ':';
      }
      rule[c] = new String(dashes);
    }
    line(out, rule, width);
    for (String[] row : rows) {
      line(out, row, width);
    }
    return out.toString();
  }

  private void line(StringBuilder out, String[] cells, int[] width) {
    out.append('|');
    for (int c = 0; c < cells.length; c++) {
      String cell = cells[c];
      String pad = " ".repeat(Math.max(0, width[c] - cell.length()));
      out.append(' ').append(right[c] ? pad + cell : cell + pad).append(" |");
    }
    out.append('\n');
  }
}
