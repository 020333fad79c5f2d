package io.psiskv.bench;

import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.TreeSet;

/**
 * A small SVG line chart writer, no dependency: a grid of panels, each with an x axis on a log-2
 * scale (client threads: 1, 16, 64 spread evenly) and a linear or log-10 y axis, one line with
 * markers per series, one colour per series name across all panels, and a shared legend below.
 * Points that cannot be drawn (NaN; zero or less on a log axis) are left out.
 */
final class SvgPlot {
  private SvgPlot() {}

  static final int PANEL_WIDTH = 480;
  static final int PANEL_HEIGHT = 300;
  private static final int LEFT = 72;
  private static final int RIGHT = 16;
  private static final int TOP = 34;
  private static final int BOTTOM = 46;
  private static final int TITLE_HEIGHT = 34;
  private static final int LEGEND_ROW_HEIGHT = 20;
  private static final int LEGEND_COLUMN_WIDTH = 240;
  private static final String[] COLOURS = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
      "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

  record Point(double x, double y) {}

  record Series(String name, List<Point> points) {}

  record Panel(String title, String xLabel, String yLabel, boolean logY, List<Series> series) {}

  /** The whole document: a title, the panels {@code columns} to a row, the legend. */
  static String render(String title, List<Panel> panels, int columns) {
    Set<String> names = new LinkedHashSet<>();
    for (Panel p : panels) {
      for (Series s : p.series()) {
        names.add(s.name());
      }
    }
    List<String> legend = new ArrayList<>(names);
    int cols = Math.max(1, Math.min(columns, panels.size()));
    int rows = (panels.size() + cols - 1) / cols;
    int legendPerRow = Math.max(1, cols * PANEL_WIDTH / LEGEND_COLUMN_WIDTH);
    int legendRows = (legend.size() + legendPerRow - 1) / legendPerRow;
    int width = cols * PANEL_WIDTH;
    int height = TITLE_HEIGHT + rows * PANEL_HEIGHT + legendRows * LEGEND_ROW_HEIGHT + 16;

    StringBuilder svg = new StringBuilder();
    svg.append("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    svg.append(String.format(Locale.ROOT, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\""
        + " height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">%n",
        width, height, width, height));
    svg.append(String.format(Locale.ROOT,
        "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>%n", width, height));
    svg.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"22\" text-anchor=\"middle\""
        + " font-size=\"15\" font-weight=\"bold\">%s</text>%n", width / 2, escape(title)));
    for (int i = 0; i < panels.size(); i++) {
      int x0 = (i % cols) * PANEL_WIDTH;
      int y0 = TITLE_HEIGHT + (i / cols) * PANEL_HEIGHT;
      panel(svg, panels.get(i), x0, y0, legend);
    }
    int ly = TITLE_HEIGHT + rows * PANEL_HEIGHT + 12;
    for (int i = 0; i < legend.size(); i++) {
      int x = 20 + (i % legendPerRow) * LEGEND_COLUMN_WIDTH;
      int y = ly + (i / legendPerRow) * LEGEND_ROW_HEIGHT;
      String colour = colour(legend, legend.get(i));
      svg.append(String.format(Locale.ROOT, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\""
          + " stroke=\"%s\" stroke-width=\"2.5\"/>%n", x, y, x + 24, y, colour));
      svg.append(String.format(Locale.ROOT, "<circle cx=\"%d\" cy=\"%d\" r=\"3\" fill=\"%s\"/>%n",
          x + 12, y, colour));
      svg.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%d\">%s</text>%n", x + 30, y + 4,
          escape(legend.get(i))));
    }
    svg.append("</svg>\n");
    return svg.toString();
  }

  private static void panel(StringBuilder svg, Panel p, int x0, int y0, List<String> legend) {
    int left = x0 + LEFT;
    int right = x0 + PANEL_WIDTH - RIGHT;
    int top = y0 + TOP;
    int bottom = y0 + PANEL_HEIGHT - BOTTOM;
    TreeSet<Double> xs = new TreeSet<>();
    double yMin = Double.POSITIVE_INFINITY;
    double yMax = Double.NEGATIVE_INFINITY;
    for (Series s : p.series()) {
      for (Point pt : s.points()) {
        if (drawable(pt, p.logY())) {
          xs.add(pt.x());
          yMin = Math.min(yMin, pt.y());
          yMax = Math.max(yMax, pt.y());
        }
      }
    }
    svg.append(String.format(Locale.ROOT, "<g class=\"panel\"><text x=\"%d\" y=\"%d\""
        + " text-anchor=\"middle\" font-weight=\"bold\">%s</text>%n", (left + right) / 2,
        y0 + 20, escape(p.title())));
    svg.append(String.format(Locale.ROOT, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\""
        + " fill=\"none\" stroke=\"#999\"/>%n", left, top, right - left, bottom - top));
    svg.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s"
        + "</text>%n", (left + right) / 2, bottom + 36, escape(p.xLabel())));
    svg.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\""
        + " transform=\"rotate(-90 %d %d)\">%s</text>%n", x0 + 16, (top + bottom) / 2, x0 + 16,
        (top + bottom) / 2, escape(p.yLabel())));
    if (xs.isEmpty()) {
      svg.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\""
          + " fill=\"#999\">no data</text>%n</g>%n", (left + right) / 2, (top + bottom) / 2));
      return;
    }
    // x: log 2, with half a step of room either side; a single x sits in the middle.
    double lx0 = log2(xs.first()) - 0.5;
    double lx1 = log2(xs.last()) + 0.5;
    Axis y = p.logY() ? Axis.log(yMin, yMax) : Axis.linear(yMax);
    for (double x : xs) {
      double px = left + (log2(x) - lx0) / (lx1 - lx0) * (right - left);
      svg.append(String.format(Locale.ROOT, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\""
          + " stroke=\"#eee\"/>%n", px, top, px, bottom));
      svg.append(String.format(Locale.ROOT, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">"
          + "%s</text>%n", px, bottom + 16, number(x)));
    }
    for (double t : y.ticks) {
      double py = bottom - y.fraction(t) * (bottom - top);
      svg.append(String.format(Locale.ROOT, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\""
          + " stroke=\"#eee\"/>%n", left, py, right, py));
      svg.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s"
          + "</text>%n", left - 6, py + 4, number(t)));
    }
    for (Series s : p.series()) {
      String colour = colour(legend, s.name());
      StringBuilder points = new StringBuilder();
      StringBuilder markers = new StringBuilder();
      for (Point pt : s.points()) {
        if (!drawable(pt, p.logY())) {
          continue;
        }
        double px = left + (log2(pt.x()) - lx0) / (lx1 - lx0) * (right - left);
        double py = bottom - y.fraction(pt.y()) * (bottom - top);
        points.append(String.format(Locale.ROOT, "%.1f,%.1f ", px, py));
        markers.append(String.format(Locale.ROOT, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\""
            + " fill=\"%s\"><title>%s: %s at %s</title></circle>%n", px, py, colour,
            escape(s.name()), number(pt.y()), number(pt.x())));
      }
      if (points.length() == 0) {
        continue;
      }
      svg.append(String.format(Locale.ROOT, "<polyline class=\"series\" fill=\"none\""
          + " stroke=\"%s\" stroke-width=\"2\" points=\"%s\"><title>%s</title></polyline>%n",
          colour, points.toString().trim(), escape(s.name())));
      svg.append(markers);
    }
    svg.append("</g>\n");
  }

  /** A y axis: where a value sits (0 bottom, 1 top) and where its labelled ticks are. */
  private static final class Axis {
    final boolean log;
    final double lo;
    final double hi;
    final List<Double> ticks = new ArrayList<>();

    private Axis(boolean log, double lo, double hi) {
      this.log = log;
      this.lo = lo;
      this.hi = hi;
    }

    static Axis linear(double max) {
      double step = niceStep(max > 0 ? max / 5 : 1);
      double top = Math.max(step, Math.ceil(max * 1.05 / step) * step);
      Axis a = new Axis(false, 0, top);
      for (double t = 0; t <= top + step / 2; t += step) {
        a.ticks.add(t);
      }
      return a;
    }

    static Axis log(double min, double max) {
      double lo = Math.floor(Math.log10(min));
      double hi = Math.ceil(Math.log10(max));
      if (hi <= lo) {
        hi = lo + 1;
      }
      Axis a = new Axis(true, lo, hi);
      for (double e = lo; e <= hi; e++) {
        a.ticks.add(Math.pow(10, e));
        if (hi - lo <= 2 && e < hi) { // Few decades: label 2 and 5 of each too.
          a.ticks.add(2 * Math.pow(10, e));
          a.ticks.add(5 * Math.pow(10, e));
        }
      }
      return a;
    }

    double fraction(double v) {
      return log ? (Math.log10(v) - lo) / (hi - lo) : (v - lo) / (hi - lo);
    }
  }

  private static double niceStep(double raw) {
    double magnitude = Math.pow(10, Math.floor(Math.log10(raw)));
    double f = raw / magnitude;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * magnitude;
  }

  private static boolean drawable(Point p, boolean logY) {
    return Double.isFinite(p.x()) && p.x() > 0 && Double.isFinite(p.y()) && (!logY || p.y() > 0);
  }

  private static double log2(double v) {
    return Math.log(v) / Math.log(2);
  }

  private static String colour(List<String> legend, String name) {
    return COLOURS[Math.max(0, legend.indexOf(name)) % COLOURS.length];
  }

  /** 1234567 as "1.2M", 45000 as "45k", 0.5 as "0.5". */
  static String number(double v) {
    double a = Math.abs(v);
    if (a >= 1e6) {
      return trim(String.format(Locale.ROOT, "%.1f", v / 1e6)) + "M";
    }
    if (a >= 1e3) {
      return trim(String.format(Locale.ROOT, "%.1f", v / 1e3)) + "k";
    }
    return trim(String.format(Locale.ROOT, a >= 10 || a == 0 ? "%.0f" : "%.1f", v));
  }

  private static String trim(String s) {
    return s.endsWith(".0") ? s.substring(0, s.length() - 2) : s;
  }

  static String escape(String text) {
    StringBuilder out = new StringBuilder(text.length());
    for (char c : text.toCharArray()) {
      switch (c) {
        case '&': out.append("&amp;"); break;
        case '<': out.append("&lt;"); break;
        case '>': out.append("&gt;"); break;
        case '"': out.append("&quot;"); break;
        case '\'': out.append("&apos;"); break;
        default:
          if (c >= 0x20 || c == '\t' || c == '\n') {
            out.append(c);
          }
      }
    }
    return out.toString();
  }
}
