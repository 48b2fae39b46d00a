package admin

import (
	"strings"
	"testing"
	"time"

	"edgegw/bridge"
)

// Label values are escaped as the text format requires (\\, \", \n); HELP
// text escapes \\ and \n.
func TestMetricsEscaping(t *testing.T) {
	st := Status{Uptime: Uptime{Started: time.Unix(1700000000, 0)}, Time: time.Unix(1700000001, 0),
		Bridges:  []bridge.Status{{Bridge: "a\"b\\c\nd", Connected: true}},
		Counters: []Counter{{Name: "x", Help: "line\\one\nline two", Value: 3}}}
	var b strings.Builder
	if err := WriteMetrics(&b, st); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"edgegw_bridge_connected{bridge=\"a\\\"b\\\\c\\nd\"} 1\n",
		"# HELP edgegw_x_total line\\\\one\\nline two\n# TYPE edgegw_x_total counter\nedgegw_x_total 3\n",
		"edgegw_start_time_seconds 1.7e+09\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "edgegw_meter_up") {
		t.Error("a family without samples was written (no meters)")
	}
}
