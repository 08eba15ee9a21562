package main

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// Colours of the brokers in every chart.
var brokerColors = map[string]string{"skybridge": "#2b6cb0", "mosquitto": "#c05621", "nats": "#2f855a"}

func colorOf(name string, i int) string {
	if c, ok := brokerColors[name]; ok {
		return c
	}
	return []string{"#6b46c1", "#b83280", "#718096"}[i%3]
}

type svg struct{ b strings.Builder }

func (s *svg) f(format string, args ...any) { fmt.Fprintf(&s.b, format, args...) }

func (s *svg) text(x, y float64, size int, anchor, fill, txt string) {
	s.f(`<text x="%.1f" y="%.1f" font-size="%d" text-anchor="%s" fill="%s">%s</text>`+"\n", x, y, size, anchor, fill, html.EscapeString(txt))
}

func (s *svg) legend(names []string, x, y float64) {
	for i, n := range names {
		s.f(`<rect x="%.1f" y="%.1f" width="12" height="12" fill="%s"/>`+"\n", x, y-10, colorOf(n, i))
		s.text(x+16, y, 12, "start", "#222", n)
		x += 24 + 8*float64(len(n))
	}
}

// scenariosSVG draws one panel per scenario: a bar per broker for the
// scenario's headline figure, each panel with its own scale.
func scenariosSVG(cmp *Comparison) string {
	names := brokerNames(cmp)
	const cols, pw, ph, top = 3, 300.0, 190.0, 60.0
	rows := (len(cmp.Summary) + cols - 1) / cols
	w, h := cols*pw+20, top+float64(rows)*ph+10
	var s svg
	s.f(`<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif">`+"\n", w, h)
	s.f(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	s.text(10, 22, 16, "start", "#111", fmt.Sprintf("Skybridge vs peers, profile %s: median of %d rounds per scenario (%s, %d cores)",
		cmp.Profile, cmp.Rounds, cmp.Machine.CPU, cmp.Machine.Cores))
	s.legend(names, 10, 46)
	for i, sum := range cmp.Summary {
		x0 := 10 + float64(i%cols)*pw
		y0 := top + float64(i/cols)*ph
		s.f(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#ddd"/>`+"\n", x0, y0, pw-10, ph-10)
		s.text(x0+6, y0+16, 12, "start", "#111", sum.Scenario)
		better := "higher is better"
		if sum.Better == "lower" {
			better = "lower is better"
		}
		s.text(x0+6, y0+30, 10, "start", "#555", fmt.Sprintf("%s, %s (%s)", sum.Metric, sum.Unit, better))
		maxV := 0.0
		for _, v := range sum.Median {
			maxV = math.Max(maxV, v)
		}
		chartTop, chartBottom := y0+44, y0+ph-32
		bw := (pw - 40) / float64(len(names))
		for j, n := range names {
			bx := x0 + 15 + float64(j)*bw
			v, ok := sum.Median[n]
			if !ok {
				s.text(bx+bw/2-4, chartBottom-4, 11, "middle", "#a00", "failed")
			} else {
				bh := 0.0
				if maxV > 0 {
					bh = v / maxV * (chartBottom - chartTop - 14)
				}
				s.f(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", bx, chartBottom-bh, bw-8, bh, colorOf(n, j))
				s.text(bx+bw/2-4, chartBottom-bh-3, 11, "middle", "#111", formatValue(v, sum.Unit))
			}
			s.text(bx+bw/2-4, chartBottom+14, 10, "middle", "#333", n)
		}
	}
	s.f("</svg>\n")
	return s.b.String()
}

// latencySVG draws, for every scenario with latencies, p50, p99 and p99.9
// per broker on a logarithmic axis.
func latencySVG(cmp *Comparison) string {
	names := brokerNames(cmp)
	var sums []ScenarioSummary
	lo, hi := math.Inf(1), 0.0
	for _, s := range cmp.Summary {
		if len(s.P50) == 0 {
			continue
		}
		sums = append(sums, s)
		for _, m := range []map[string]float64{s.P50, s.P99, s.P999} {
			for _, v := range m {
				if v > 0 {
					lo, hi = math.Min(lo, v), math.Max(hi, v)
				}
			}
		}
	}
	const left, top, groupW, chartH = 70.0, 70.0, 170.0, 300.0
	w := max(left+float64(max(len(sums), 1))*groupW+20, 720)
	h := top + chartH + 80
	var s svg
	s.f(`<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif">`+"\n", w, h)
	s.f(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	s.text(10, 22, 16, "start", "#111", fmt.Sprintf("End-to-end latency (µs, log scale): p50 / p99 / p99.9, median of %d rounds", cmp.Rounds))
	s.legend(names, 10, 46)
	if len(sums) == 0 {
		s.text(left, top+40, 12, "start", "#555", "no latency measured")
		s.f("</svg>\n")
		return s.b.String()
	}
	lmin := math.Floor(math.Log10(lo))
	lmax := math.Ceil(math.Log10(hi))
	if lmax <= lmin {
		lmax = lmin + 1
	}
	y := func(v float64) float64 {
		return top + chartH - (math.Log10(math.Max(v, math.Pow(10, lmin)))-lmin)/(lmax-lmin)*chartH
	}
	for e := lmin; e <= lmax; e++ {
		yy := y(math.Pow(10, e))
		s.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e2e2e2"/>`+"\n", left, yy, w-10, yy)
		s.text(left-6, yy+4, 10, "end", "#555", formatValue(math.Pow(10, e), "µs"))
	}
	for i, sum := range sums {
		gx := left + float64(i)*groupW + 10
		bw := (groupW - 30) / float64(len(names)*3)
		for j, n := range names {
			for k, m := range []map[string]float64{sum.P50, sum.P99, sum.P999} {
				v, ok := m[n]
				if !ok {
					continue
				}
				bx := gx + float64(j*3+k)*bw
				yy := y(v)
				opacity := []float64{1, 0.7, 0.45}[k]
				s.f(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" fill-opacity="%.2f"><title>%s %s %s: %s µs</title></rect>`+"\n",
					bx, yy, bw-1, top+chartH-yy, colorOf(n, j), opacity, html.EscapeString(sum.Scenario), n,
					[]string{"p50", "p99", "p99.9"}[k], formatValue(v, "µs"))
			}
		}
		s.text(gx+(groupW-30)/2, top+chartH+16, 10, "middle", "#111", sum.Scenario)
	}
	s.text(left, top+chartH+40, 10, "start", "#555", "each broker: three bars, p50 (solid), p99, p99.9 (lighter); hover for values")
	s.f("</svg>\n")
	return s.b.String()
}
