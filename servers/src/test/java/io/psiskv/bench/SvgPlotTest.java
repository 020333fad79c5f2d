package io.psiskv.bench;

import static com.google.common.truth.Truth.assertThat;

import java.io.ByteArrayInputStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import javax.xml.parsers.DocumentBuilderFactory;
import org.junit.jupiter.api.Test;
import org.w3c.dom.Document;

class SvgPlotTest {
  private static Document parse(String svg) throws Exception {
    DocumentBuilderFactory f = DocumentBuilderFactory.newInstance();
    f.setNamespaceAware(true);
    return f.newDocumentBuilder()
        .parse(new ByteArrayInputStream(svg.getBytes(StandardCharsets.UTF_8)));
  }

  private static SvgPlot.Series series(String name, double... xy) {
    List<SvgPlot.Point> points = new java.util.ArrayList<>();
    for (int i = 0; i < xy.length; i += 2) {
      points.add(new SvgPlot.Point(xy[i], xy[i + 1]));
    }
    return new SvgPlot.Series(name, points);
  }

  @Test
  void wellFormedWithALinePerSeriesPerPanel() throws Exception {
    List<SvgPlot.Series> throughput = List.of(
        series("psiskv (libpsiskv)", 1, 3_000, 16, 30_000, 64, 40_000),
        series("redis <AOF> & \"friends\"", 1, 9_000, 16, 80_000, 64, 110_000));
    List<SvgPlot.Series> p99 = List.of(
        series("psiskv (libpsiskv)", 1, 400, 16, 2_000, 64, 15_000),
        series("redis <AOF> & \"friends\"", 1, 100, 16, 300, 64, 0)); // 0: not on a log axis
    String svg = SvgPlot.render("a & b", List.of(
        new SvgPlot.Panel("throughput", "client threads", "ops/s", false, throughput),
        new SvgPlot.Panel("p99", "client threads", "µs", true, p99)), 2);
    Document doc = parse(svg);
    assertThat(doc.getDocumentElement().getLocalName()).isEqualTo("svg");
    assertThat(doc.getDocumentElement().getNamespaceURI()).isEqualTo("http://www.w3.org/2000/svg");
    assertThat(doc.getElementsByTagName("polyline").getLength()).isEqualTo(4);
    // Five markers drawn of six points in the log panel, six in the linear one, two in the legend.
    assertThat(doc.getElementsByTagName("circle").getLength()).isEqualTo(6 + 5 + 2);
    assertThat(svg).contains("redis &lt;AOF&gt; &amp; &quot;friends&quot;");
  }

  @Test
  void oneThreadCountAndNoDataStillDraw() throws Exception {
    String svg = SvgPlot.render("t", List.of(
        new SvgPlot.Panel("one x", "threads", "ops/s", false, List.of(series("s", 8, 5))),
        new SvgPlot.Panel("empty", "threads", "µs", true, List.of(series("s", 8, Double.NaN)))),
        2);
    Document doc = parse(svg);
    assertThat(doc.getElementsByTagName("polyline").getLength()).isEqualTo(1);
    assertThat(svg).contains("no data");
    assertThat(svg).doesNotContain("NaN");
    assertThat(svg).doesNotContain("Infinity");
  }

  @Test
  void numbersAreShort() {
    assertThat(SvgPlot.number(0)).isEqualTo("0");
    assertThat(SvgPlot.number(0.5)).isEqualTo("0.5");
    assertThat(SvgPlot.number(64)).isEqualTo("64");
    assertThat(SvgPlot.number(45_000)).isEqualTo("45k");
    assertThat(SvgPlot.number(1_250_000)).isEqualTo("1.3M");
  }
}
