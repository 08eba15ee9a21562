package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ScenarioSummary is the median of each broker's successful runs of one
// scenario, and Skybridge's ratio to each peer.
type ScenarioSummary struct {
	Scenario    string             `json:"scenario"`
	Description string             `json:"description"`
	Metric      string             `json:"metric"`
	Unit        string             `json:"unit"`
	Better      string             `json:"better"`
	Median      map[string]float64 `json:"median"`          // broker → median of the OK runs
	Runs        map[string]int     `json:"ok_runs"`         // broker → OK runs
	Failures    map[string]string  `json:"failures"`        // broker → first error
	Ratio       map[string]float64 `json:"ratio_skybridge"` // peer → Skybridge / peer
	// Latency medians (µs) of p50, p99 and p999 for message scenarios.
	P50  map[string]float64 `json:"p50_us,omitempty"`
	P99  map[string]float64 `json:"p99_us,omitempty"`
	P999 map[string]float64 `json:"p999_us,omitempty"`
	// Lost is the largest loss seen in a run, per broker; Warnings the
	// first warning (QoS 1/2 or retained messages not delivered).
	Lost     map[string]int64  `json:"max_lost,omitempty"`
	Warnings map[string]string `json:"warnings,omitempty"`
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func summarize3(cmp *Comparison, scenarios []Scenario, kinds []*brokerKind) []ScenarioSummary {
	var out []ScenarioSummary
	for _, s := range scenarios {
		m, unit, higher := s.Metric()
		ss := ScenarioSummary{Scenario: s.Name, Description: s.Describe(), Metric: m, Unit: unit, Better: "lower",
			Median: map[string]float64{}, Runs: map[string]int{}, Failures: map[string]string{}, Ratio: map[string]float64{},
			P50: map[string]float64{}, P99: map[string]float64{}, P999: map[string]float64{}, Lost: map[string]int64{}, Warnings: map[string]string{}}
		if higher {
			ss.Better = "higher"
		}
		for _, k := range kinds {
			var vals, p50, p99, p999 []float64
			for _, r := range cmp.Runs {
				if r.Scenario != s.Name || r.Broker != k.Name {
					continue
				}
				if r.Lost > ss.Lost[k.Name] {
					ss.Lost[k.Name] = r.Lost
				}
				if _, seen := ss.Warnings[k.Name]; r.Warning != "" && !seen {
					ss.Warnings[k.Name] = r.Warning
				}
				if !r.OK {
					if _, seen := ss.Failures[k.Name]; !seen {
						ss.Failures[k.Name] = r.Error
					}
					continue
				}
				vals = append(vals, r.Primary)
				if r.Latency != nil && s.closedLoop() {
					p50 = append(p50, r.Latency.P50)
					p99 = append(p99, r.Latency.P99)
					p999 = append(p999, r.Latency.P999)
				}
			}
			ss.Runs[k.Name] = len(vals)
			if len(vals) > 0 {
				ss.Median[k.Name] = median(vals)
			}
			if len(p50) > 0 {
				ss.P50[k.Name], ss.P99[k.Name], ss.P999[k.Name] = median(p50), median(p99), median(p999)
			}
		}
		sky, ok := ss.Median["skybridge"]
		for _, k := range kinds {
			if v, has := ss.Median[k.Name]; k.Name != "skybridge" && ok && has && v != 0 {
				ss.Ratio[k.Name] = math.Round(sky/v*100) / 100
			}
		}
		out = append(out, ss)
	}
	return out
}

// Goal is one of the targets and where Skybridge stands.
type Goal struct {
	Goal     string `json:"goal"`
	Scenario string `json:"scenario"`
	Measured string `json:"measured"`
	Met      string `json:"met"` // yes, no, or n/a (scenario not in the run)
}

func evaluateGoals(sum []ScenarioSummary) []Goal {
	find := func(name string) *ScenarioSummary {
		for i := range sum {
			if sum[i].Scenario == name {
				return &sum[i]
			}
		}
		return nil
	}
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	var goals []Goal
	add := func(goal, scen string, eval func(s *ScenarioSummary, sky float64) (string, string)) {
		g := Goal{Goal: goal, Scenario: scen, Met: "n/a", Measured: "scenario not run"}
		if s := find(scen); s != nil {
			if sky, ok := s.Median["skybridge"]; ok {
				g.Measured, g.Met = eval(s, sky)
			} else {
				g.Measured = "Skybridge failed: " + s.Failures["skybridge"]
			}
		}
		goals = append(goals, g)
	}
	peers := func(s *ScenarioSummary) (best string, bestV float64, ok bool) {
		for b, v := range s.Median {
			if b == "skybridge" {
				continue
			}
			better := !ok || (s.Better == "higher" && v > bestV) || (s.Better == "lower" && v < bestV) ||
				(v == bestV && b < best)
			if better {
				best, bestV, ok = b, v, true
			}
		}
		return
	}
	add("QoS 0 1→1 saturating throughput ≥ 1.2x nats-server MQTT and ≥ 5x mosquitto", "p2p-1-1-q0-16B",
		func(s *ScenarioSummary, sky float64) (string, string) {
			rn, okN := s.Ratio["nats"]
			rm, okM := s.Ratio["mosquitto"]
			txt := fmt.Sprintf("Skybridge %s msg/s; %.2fx nats, %.2fx mosquitto", formatValue(sky, "msg/s"), rn, rm)
			if !okN || !okM {
				return txt + " (a peer failed)", "n/a"
			}
			return txt, yes(rn >= 1.2 && rm >= 5)
		})
	add("QoS 1 with 100 in flight ≥ 2x the best peer", "p2p-1-1-q1-16B-if100",
		func(s *ScenarioSummary, sky float64) (string, string) {
			b, v, ok := peers(s)
			if !ok {
				return "no peer result", "n/a"
			}
			return fmt.Sprintf("Skybridge %s msg/s; best peer %s %s: %.2fx", formatValue(sky, "msg/s"), b, formatValue(v, "msg/s"), sky/v), yes(sky >= 2*v)
		})
	add("p99 latency at 50k msg/s ≤ the best peer's", "p2p-10-10-q0-16B-r50k",
		func(s *ScenarioSummary, sky float64) (string, string) {
			b, v, ok := peers(s)
			if !ok {
				return "no peer result", "n/a"
			}
			return fmt.Sprintf("Skybridge %s µs; best peer %s %s µs", formatValue(sky, "µs"), b, formatValue(v, "µs")), yes(sky <= v)
		})
	idle := "idle-15000"
	if find(idle) == nil {
		idle = "idle-5000"
	}
	add("memory per idle connection ≤ 4 KB", idle,
		func(s *ScenarioSummary, sky float64) (string, string) {
			txt := fmt.Sprintf("Skybridge %s", formatValue(sky, "bytes"))
			for _, p := range []string{"mosquitto", "nats"} {
				if v, ok := s.Median[p]; ok {
					txt += fmt.Sprintf("; %s %s", p, formatValue(v, "bytes"))
				}
			}
			return txt, yes(sky <= 4096)
		})
	storm := "connstorm-10000"
	if find(storm) == nil {
		storm = "connstorm-2000"
	}
	add("connect rate ≥ the best peer's", storm,
		func(s *ScenarioSummary, sky float64) (string, string) {
			b, v, ok := peers(s)
			if !ok {
				return "no peer result", "n/a"
			}
			return fmt.Sprintf("Skybridge %s conn/s; best peer %s %s conn/s", formatValue(sky, "conn/s"), b, formatValue(v, "conn/s")), yes(sky >= v)
		})
	return goals
}

// formatValue prints a figure for the table.
func formatValue(v float64, unit string) string {
	if math.IsNaN(v) {
		return "—"
	}
	switch unit {
	case "msg/s", "conn/s":
		return si(v)
	case "bytes":
		if math.Abs(v) >= 10*1024 {
			return fmt.Sprintf("%.1f KiB", v/1024)
		}
		return fmt.Sprintf("%.0f B", v)
	case "µs", "ms":
		if v >= 100 {
			return fmt.Sprintf("%.0f", v)
		}
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.4g", v)
}

func brokerNames(cmp *Comparison) []string {
	var names []string
	for _, b := range cmp.Brokers {
		names = append(names, b.Name)
	}
	return names
}

// markdownReport renders the comparison as markdown. source names the file
// the figures come from ("" omits the line).
func markdownReport(cmp *Comparison, source string) string {
	var b strings.Builder
	names := brokerNames(cmp)
	fmt.Fprintf(&b, "Profile `%s`, %d rounds (brokers in alternation, a fresh broker process per run), warm-up %gs, window %gs; started %s, took %.0fs.\n\n",
		cmp.Profile, cmp.Rounds, cmp.Warmup, cmp.Window, cmp.Started.Format("2006-01-02 15:04 UTC"), cmp.Elapsed)
	m := cmp.Machine
	fmt.Fprintf(&b, "Machine: %s, %d cores, %d GiB, %s, kernel %s, %s. Broker and load generator share these cores",
		m.CPU, m.Cores, m.MemoryGiB, m.OS, m.Kernel, m.Go)
	if len(m.LoadAvg) == 2 {
		fmt.Fprintf(&b, "; load average (1, 5, 15 min) %s at the start, %s at the end", m.LoadAvg[0], m.LoadAvg[1])
	}
	b.WriteString(".\n\n")
	for _, br := range cmp.Brokers {
		fmt.Fprintf(&b, "- **%s**: %s; %s\n", br.Name, br.Version, br.Config)
	}
	if source != "" {
		fmt.Fprintf(&b, "\nFigures from `%s`.\n", source)
	}
	if !cmp.Complete {
		b.WriteString("\n**Interrupted: partial results.**\n")
	}
	b.WriteString("\n| Scenario | Metric | ")
	b.WriteString(strings.Join(names, " | "))
	for _, n := range names {
		if n != "skybridge" {
			fmt.Fprintf(&b, " | Skybridge/%s", n)
		}
	}
	b.WriteString(" |\n|---|---|")
	for _, n := range names {
		b.WriteString("---:|")
		if n != "skybridge" {
			b.WriteString("---:|")
		}
	}
	b.WriteString("\n")
	var notes []string
	for _, s := range cmp.Summary {
		arrow := "↑"
		if s.Better == "lower" {
			arrow = "↓"
		}
		fmt.Fprintf(&b, "| `%s` | %s (%s, %s better) |", s.Scenario, s.Metric, s.Unit, arrow)
		for _, n := range names {
			if v, ok := s.Median[n]; ok {
				cell := formatValue(v, s.Unit)
				if s.Runs[n] < cmp.Rounds {
					cell += fmt.Sprintf(" (%d/%d ok)", s.Runs[n], cmp.Rounds)
				}
				if w, warned := s.Warnings[n]; warned {
					notes = append(notes, fmt.Sprintf("`%s` on %s (completed, flagged): %s", s.Scenario, n, w))
					cell += fmt.Sprintf(" ⚠[%d]", len(notes))
				}
				fmt.Fprintf(&b, " %s |", cell)
			} else {
				notes = append(notes, fmt.Sprintf("`%s` on %s: %s", s.Scenario, n, oneLine(s.Failures[n])))
				fmt.Fprintf(&b, " failed [%d] |", len(notes))
			}
		}
		for _, n := range names {
			if n == "skybridge" {
				continue
			}
			if r, ok := s.Ratio[n]; ok {
				fmt.Fprintf(&b, " %.2fx |", r)
			} else {
				b.WriteString(" — |")
			}
		}
		b.WriteString("\n")
	}
	if len(notes) > 0 {
		b.WriteString("\nNotes: failures (first error of the scenario on that broker) and flagged runs:\n\n")
		for i, n := range notes {
			fmt.Fprintf(&b, "%d. %s\n", i+1, n)
		}
	}
	// Latency percentiles of the message scenarios.
	b.WriteString("\nEnd-to-end latency of the fixed-rate and windowed (QoS ≥ 1) scenarios, medians over rounds of each run's percentile (µs), p50 / p99 / p99.9 " +
		"(saturating QoS 0 runs are left out: their latency is time spent in socket buffers):\n\n| Scenario |")
	for _, n := range names {
		fmt.Fprintf(&b, " %s |", n)
	}
	b.WriteString("\n|---|")
	for range names {
		b.WriteString("---:|")
	}
	b.WriteString("\n")
	for _, s := range cmp.Summary {
		if len(s.P50) == 0 {
			continue
		}
		fmt.Fprintf(&b, "| `%s` |", s.Scenario)
		for _, n := range names {
			if _, ok := s.P50[n]; ok {
				fmt.Fprintf(&b, " %s / %s / %s |", formatValue(s.P50[n], "µs"), formatValue(s.P99[n], "µs"), formatValue(s.P999[n], "µs"))
			} else {
				b.WriteString(" — |")
			}
		}
		b.WriteString("\n")
	}
	var lossy []string
	for _, s := range cmp.Summary {
		for _, n := range names {
			if s.Lost[n] > 0 {
				lossy = append(lossy, fmt.Sprintf("`%s` on %s: up to %d", s.Scenario, n, s.Lost[n]))
			}
		}
	}
	if len(lossy) > 0 {
		b.WriteString("\nMessages not delivered in a run (QoS 0 may drop under saturation; QoS 1/2 must not): " + strings.Join(lossy, "; ") + ".\n")
	}
	receivedTable(&b, cmp, names)
	keepAliveTable(&b, cmp)
	if len(cmp.Goals) > 0 {
		b.WriteString("\nGoals:\n\n| Goal | Scenario | Measured | Met |\n|---|---|---|---|\n")
		for _, g := range cmp.Goals {
			fmt.Fprintf(&b, "| %s | `%s` | %s | %s |\n", g.Goal, g.Scenario, g.Measured, g.Met)
		}
	}
	return b.String()
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// writeReport writes STEM.json, STEM.md, STEM-scenarios.svg,
// STEM-latency.svg and latest-PROFILE.md into dir.
func writeReport(cmp *Comparison, dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	stem := cmp.Started.Format("2006-01-02T150405Z") + "-" + cmp.Profile
	j, err := json.MarshalIndent(cmp, "", "  ")
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{
		stem + ".json":          append(j, '\n'),
		stem + "-scenarios.svg": []byte(scenariosSVG(cmp)),
		stem + "-latency.svg":   []byte(latencySVG(cmp)),
	}
	md := "# Skybridge comparison: " + stem + "\n\n" + markdownReport(cmp, "bench/results/"+stem+".json") +
		fmt.Sprintf("\n![per scenario](%s-scenarios.svg)\n\n![latency](%s-latency.svg)\n", stem, stem)
	files[stem+".md"] = []byte(md)
	files["latest-"+cmp.Profile+".md"] = []byte(md)
	var paths []string
	for _, name := range []string{stem + ".json", stem + ".md", stem + "-scenarios.svg", stem + "-latency.svg", "latest-" + cmp.Profile + ".md"} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, files[name], 0o644); err != nil {
			return paths, err
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// keepAliveTable lists the runs with a keep-alive window (idle-N-kaS), one
// row per run.
func keepAliveTable(b *strings.Builder, cmp *Comparison) {
	var rows []*Result
	for _, r := range cmp.Runs {
		if r.KeepAlive != nil && r.KeepAlive.Pings > 0 {
			rows = append(rows, r)
		}
	}
	if len(rows) == 0 {
		return
	}
	b.WriteString("\nIdle connections with keep alive, per run: connect time and rate (TCP connect to the last CONNACK, 32 in flight), " +
		"broker RSS per connection after connecting and after the PINGREQ window, broker CPU (utime+stime from /proc/PID/stat, % of one core) " +
		"silent and during the window, CPU per PINGREQ (of the whole window, and with the silent rate subtracted), PINGREQ→PINGRESP p50/p99 and the harness's own CPU:\n\n" +
		"| Scenario | Broker | Round | Conns | Connect s | conn/s | RSS/conn | RSS/conn after pings | Silent CPU | PINGREQ/s | Broker CPU | µs/PINGREQ (net) | Ping p50 / p99 µs | Harness CPU |\n" +
		"|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		ka := r.KeepAlive
		after := "—"
		if r.Connections > 0 && ka.RSSAfter > 0 {
			after = formatValue(float64((ka.RSSAfter-r.RSSBefore)/int64(r.Connections)), "bytes")
		}
		lat := "—"
		if ka.Latency != nil {
			lat = fmt.Sprintf("%s / %s", formatValue(ka.Latency.P50, "µs"), formatValue(ka.Latency.P99, "µs"))
		}
		fmt.Fprintf(b, "| `%s` | %s | %d | %d | %.1f | %s | %s | %s | %.1f%% | %s | %.1f%% | %.1f (%.1f) | %s | %.1f%% |\n",
			r.Scenario, r.Broker, r.Round, r.Connections, r.DurationS, formatValue(r.ConnectRate, "conn/s"),
			formatValue(r.RSSPerConn, "bytes"), after, ka.IdleCPUPct, formatValue(ka.PingRate, "msg/s"), ka.BrokerCPUPct,
			ka.CPUPerPingUS, ka.NetCPUPerPingUS, lat, ka.BenchCPUPct)
	}
}

// receivedTable gives the received rate of fixed-rate fan-out runs, whose
// headline is a latency: the deliveries offered (rate x subscribers) and
// the medians over rounds of what arrived, per second of the window.
func receivedTable(b *strings.Builder, cmp *Comparison, names []string) {
	var lines []string
	for _, sum := range cmp.Summary {
		s, err := ParseScenario(sum.Scenario)
		if err != nil || s.Kind != "fanout" || s.Rate <= 0 {
			continue
		}
		line := fmt.Sprintf("| `%s` | %s |", s.Name, formatValue(s.Rate*float64(s.Subs), "msg/s"))
		for _, n := range names {
			var v []float64
			for _, r := range cmp.Runs {
				if r.Scenario == s.Name && r.Broker == n && r.OK {
					v = append(v, r.RecvRate)
				}
			}
			if len(v) == 0 {
				line += " — |"
				continue
			}
			line += fmt.Sprintf(" %s |", formatValue(median(v), "msg/s"))
		}
		lines = append(lines, line)
	}
	if len(lines) == 0 {
		return
	}
	b.WriteString("\nDeliveries of the fixed-rate fan-out runs (msg/s received by all subscribers in the window, median over the runs that completed):\n\n| Scenario | offered |")
	for _, n := range names {
		fmt.Fprintf(b, " %s |", n)
	}
	b.WriteString("\n|---|---:|")
	for range names {
		b.WriteString("---:|")
	}
	b.WriteString("\n" + strings.Join(lines, "\n") + "\n")
}
