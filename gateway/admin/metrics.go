package admin

import (
	"bufio"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"edgegw/bridge"
	"edgegw/internal/counter"
)

// Prometheus text exposition format 0.0.4, written by hand: it is a few lines
// per family (HELP, TYPE, samples), and the client library would add about a
// megabyte and a dozen packages to the ARM binary for nothing it needs here.
// The test parses the output with a strict checker of the format.
//
// Names: edgegw_<thing>[_unit][_total]; counters end in _total; labels
// bridge=, meter=, port=, state=, kind=.
//
// The drop and refusal counters come from the registry (internal/counter,
// Status.Counters): one Add where a counter is defined makes it
// edgegw_<name>_total here, a line of `edgegw status` and, with a $SYS name, a
// $SYS topic, with no change to this file.

// metricsWriter writes one family at a time.
type metricsWriter struct {
	w   *bufio.Writer
	err error
}

type label struct{ name, value string }

type sample struct {
	labels []label
	value  float64
}

func (m *metricsWriter) family(name, typ, help string, samples ...sample) {
	if len(samples) == 0 {
		return
	}
	m.printf("# HELP ", name, " ", escapeHelp(help), "\n# TYPE ", name, " ", typ, "\n")
	for _, s := range samples {
		m.printf(name)
		if len(s.labels) > 0 {
			m.printf("{")
			for i, l := range s.labels {
				if i > 0 {
					m.printf(",")
				}
				m.printf(l.name, `="`, escapeLabel(l.value), `"`)
			}
			m.printf("}")
		}
		m.printf(" ", strconv.FormatFloat(s.value, 'g', -1, 64), "\n")
	}
}

// summary writes a summary family: its quantile samples, then name_sum and
// name_count.
func (m *metricsWriter) summary(name, help string, quantiles []sample, sum float64, count int64) {
	m.family(name, "summary", help, quantiles...)
	m.printf(name, "_sum ", strconv.FormatFloat(sum, 'g', -1, 64), "\n", name, "_count ", strconv.FormatInt(count, 10), "\n")
}

func (m *metricsWriter) gauge(name, help string, v float64) {
	m.family(name, "gauge", help, sample{value: v})
}

func (m *metricsWriter) counter(name, help string, v int64) {
	m.family(name, "counter", help, sample{value: float64(v)})
}

func (m *metricsWriter) printf(parts ...string) {
	for _, p := range parts {
		if m.err == nil {
			_, m.err = m.w.WriteString(p)
		}
	}
}

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

func escapeHelp(s string) string  { return helpEscaper.Replace(s) }
func escapeLabel(s string) string { return labelEscaper.Replace(s) }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// WriteMetrics writes st in the Prometheus text format.
func WriteMetrics(w io.Writer, st Status) error {
	m := &metricsWriter{w: bufio.NewWriter(w)}
	m.family("edgegw_build_info", "gauge", "Always 1; the labels name the build, the site (site_id) and the host.",
		sample{labels: []label{{"version", st.Version.Version}, {"goversion", st.Version.Go}, {"arch", st.Version.Arch},
			{"site_id", st.SiteID}, {"hostname", st.Process.Hostname}}, value: 1})
	writeProcess(m, st.Process)
	if st.Disk.FreeBytes >= 0 {
		m.gauge("edgegw_data_dir_free_bytes", "Bytes the gateway may still write on the data_dir's file system (statfs f_bavail).", float64(st.Disk.FreeBytes))
		m.gauge("edgegw_data_dir_size_bytes", "Size of the data_dir's file system.", float64(st.Disk.SizeBytes))
	}
	m.gauge("edgegw_start_time_seconds", "When the gateway started, unix seconds.", float64(st.Uptime.Started.UnixNano())/1e9)
	m.gauge("edgegw_healthy", "1 when the health check finds no problem (store, bridges, ports), else 0.", b2f(st.Health.Status == "ok"))
	writeFigures(m, clockFigures, []Clock{st.Clock}, "", nil)

	// Sessions, groups, the MQTT broker and its listeners.
	writeFigures(m, sessionFigures, []SessionsSummary{st.Sessions}, "", nil)
	for _, c := range st.Counters {
		m.counter(counter.MetricName(c.Name), c.Help, c.Value)
	}
	writeFigures(m, mqttFigures, []MQTT{st.MQTT}, "", nil)
	writeFigures(m, listenerFigures, st.Listeners, "listener", lName)

	// Bridges.
	bs := st.Bridges
	writeFigures(m, bridgeFigures, bs, "bridge", bName)
	var upstream []sample
	for _, b := range bs {
		role := "primary"
		if b.Fallback {
			role = "fallback"
		}
		upstream = append(upstream, sample{labels: []label{{"bridge", b.Bridge}, {"address", b.Address}, {"role", role}}, value: 1})
	}
	m.family("edgegw_bridge_upstream_info", "gauge",
		"Always 1: the upstream broker address the bridge uses (while disconnected, the one last tried); role primary or fallback.", upstream...)
	var bcerts []sample
	for _, b := range bs {
		for _, c := range []struct {
			cert string
			at   time.Time
		}{{"upstream", b.CertNotAfter}, {"client", b.ClientCertNotAfter}} {
			if !c.at.IsZero() {
				bcerts = append(bcerts, sample{labels: []label{{"bridge", b.Bridge}, {"cert", c.cert}}, value: float64(c.at.Unix())})
			}
		}
	}
	m.family("edgegw_bridge_cert_not_after_timestamp_seconds", "gauge",
		"When a bridge's TLS certificate expires (notAfter), unix seconds: cert=upstream is the broker's, as presented on the latest connection; cert=client is the bridge's own.", bcerts...)

	// Meters and ports.
	ms := st.Meters
	writeFigures(m, meterFigures, ms, "meter", mID)
	ps := st.Ports
	writeFigures(m, portFigures, ps, "port", pName)
	var perr []sample
	for _, p := range ps {
		for _, k := range slices.Sorted(maps.Keys(p.Counters)) {
			perr = append(perr, sample{labels: []label{{"port", p.Port}, {"kind", k}}, value: float64(p.Counters[k])})
		}
	}
	m.family("edgegw_port_events_total", "counter",
		"Meter port (serial or TCP) events by kind: frames, readings, garbage_bytes, crc_errors, timeouts, exceptions, wrong_slave, wrong_transaction, oversized, parse_errors, unknown_meter, reopens.", perr...)

	// Store.
	s := st.Store
	writeFigures(m, storeFigures, []Store{s}, "", nil)
	m.summary("edgegw_store_commit_duration_seconds",
		"Commit duration: quantile 0.5 and 0.99 over the last 1024 commits, 1 = the longest since start-up; _sum and _count since start-up.",
		[]sample{{labels: []label{{"quantile", "0.5"}}, value: s.CommitP50Seconds},
			{labels: []label{{"quantile", "0.99"}}, value: s.CommitP99Seconds},
			{labels: []label{{"quantile", "1"}}, value: s.CommitMaxSeconds}},
		s.CommitSeconds, s.Commits)
	m.gauge("edgegw_scrape_timestamp_seconds", "When these values were read, unix seconds.", float64(st.Time.UnixNano())/1e9)
	if m.err == nil {
		m.err = m.w.Flush()
	}
	return m.err
}

// writeProcess writes the process families under the names Prometheus client
// libraries give them, so that dashboards and rules made for any exporter
// work; values the kernel did not give (-1) are left out.
func writeProcess(m *metricsWriter, p Process) {
	if p.ResidentBytes >= 0 {
		m.gauge("process_resident_memory_bytes", "Resident memory size in bytes.", float64(p.ResidentBytes))
	}
	if p.CPUSeconds >= 0 {
		m.family("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", sample{value: p.CPUSeconds})
	}
	if p.OpenFDs >= 0 {
		m.gauge("process_open_fds", "Number of open file descriptors.", float64(p.OpenFDs))
	}
	if p.MaxFDs >= 0 {
		m.gauge("process_max_fds", "Maximum number of open file descriptors.", float64(p.MaxFDs))
	}
	m.gauge("go_goroutines", "Number of goroutines that currently exist.", float64(p.Goroutines))
	m.gauge("edgegw_memory_limit_bytes", "The Go runtime's soft memory limit (memory.limit or GOMEMLIMIT); 0 = none.", float64(p.MemoryLimitBytes))
}

// writeFigures writes one part's figures (figures.go): for a list, one sample
// per item labelled labelName=name(item); for a section, items holds it alone
// and labelName is "". Figures with the same metric next to each other are one family.
func writeFigures[T any](m *metricsWriter, fs counter.Figures[T], items []T, labelName string, name func(T) string) {
	for i := 0; i < len(fs); {
		f := fs[i]
		j := i + 1
		for j < len(fs) && fs[j].Metric == f.Metric {
			j++
		}
		if f.Metric != "" {
			var samples []sample
			for _, it := range items {
				for _, g := range fs[i:j] {
					v, ok := g.Value(it)
					if !ok {
						continue
					}
					var ls []label
					if labelName != "" {
						ls = append(ls, label{labelName, name(it)})
					}
					if g.Label[0] != "" {
						ls = append(ls, label{g.Label[0], g.Label[1]})
					}
					samples = append(samples, sample{labels: ls, value: v})
				}
			}
			m.family(f.Metric, f.Kind.String(), f.Help, samples...)
		}
		i = j
	}
}

func unixOrZero(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

type bStatus = bridge.Status

func lName(l Listener) string { return l.Name }
func bName(b bStatus) string  { return b.Bridge }
func mID(x Meter) string      { return x.Meter }
func pName(p Port) string     { return p.Port }
