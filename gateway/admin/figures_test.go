package admin

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"edgegw/bridge"
	"edgegw/internal/counter"
)

// fill sets every field of the struct v points to, recursively, to a value of
// its own (numbers 101, 102, ..., true, a time, one element in each slice and
// map), so that no figure reads a zero by accident.
func fill(v reflect.Value, n *int) {
	*n++
	switch v.Kind() {
	case reflect.Int, reflect.Int64, reflect.Int32:
		v.SetInt(int64(100 + *n))
	case reflect.Float64:
		v.SetFloat(float64(100+*n) + 0.5)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.String:
		v.SetString(fmt.Sprintf("s%d", *n))
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), n)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(v.Index(0), n)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k, n)
		fill(e, n)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(time.Unix(int64(1700000000+*n), 0).UTC()))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), n)
			}
		}
	}
}

// figureStatus is a status with one bridge, meter and port, every field set.
func figureStatus(t *testing.T) Status {
	t.Helper()
	var st Status
	n := 0
	fill(reflect.ValueOf(&st.Store).Elem(), &n)
	fill(reflect.ValueOf(&st.Clock).Elem(), &n)
	st.Bridges = make([]bridge.Status, 1)
	fill(reflect.ValueOf(&st.Bridges[0]).Elem(), &n)
	st.Meters = make([]Meter, 1)
	fill(reflect.ValueOf(&st.Meters[0]).Elem(), &n)
	st.Meters[0].Reading = json.RawMessage(`{}`)
	st.Meters[0].State = "online"
	st.Ports = make([]Port, 1)
	fill(reflect.ValueOf(&st.Ports[0]).Elem(), &n)
	st.Clock.State = "synced"
	return st
}

// jsonHas reports whether obj (decoded JSON) has the key path "a.b".
func jsonHas(obj any, path string) bool {
	for _, k := range strings.Split(path, ".") {
		m, ok := obj.(map[string]any)
		if !ok {
			return false
		}
		if obj, ok = m[k]; !ok {
			return false
		}
	}
	return true
}

// onOneSurface are the figures deliberately missing from $SYS or /metrics
// (part, then the name they have): a sum over bridges or meters of a time or
// an age means nothing, and $SYS counts meters and ports where /metrics has
// one series per meter or port.
var onOneSurface = map[string]bool{
	"bridge edgegw_bridge_outbox_oldest_age_seconds":      true,
	"bridge edgegw_bridge_last_connect_timestamp_seconds": true,
	"bridge edgegw_bridge_state_change_timestamp_seconds": true,
	"meter meters/configured":                             true,
	"meter meters/offline":                                true,
	"meter edgegw_meter_last_seen_timestamp_seconds":      true,
	"meter edgegw_meter_readings_total":                   true, // $SYS meters/readings is the ports' counter
	"port meters/ports/configured":                        true,
}

// checkFigures checks one part's figures against the three surfaces: each
// Key in obj (the part's JSON, or one item's), each Metric in the metrics
// text with its labels and value, each Sys topic in sys with the value (for a
// list of one item, its sum is the item's value).
func checkFigures[T any](t *testing.T, part string, fs counter.Figures[T], v T, obj any, labelName, name, metrics string, sys map[string]int64) {
	t.Helper()
	for _, f := range fs {
		what := fmt.Sprintf("%s figure %q/%q/%q", part, f.Key, f.Sys, f.Metric)
		if f.Key == "" || f.Sys == "" && f.Metric == "" {
			t.Errorf("%s: a figure needs a JSON key and a $SYS topic or a metric", what)
		}
		if (f.Sys == "" || f.Metric == "") && !onOneSurface[part+" "+f.Sys+f.Metric] {
			t.Errorf("%s: missing from $SYS or /metrics, and not among the figures that are (onOneSurface)", what)
		}
		if !jsonHas(obj, f.Key) {
			t.Errorf("%s: the admin JSON has no key %q", what, f.Key)
		}
		x, ok := f.Value(v)
		if !ok {
			t.Errorf("%s: no value", what)
			continue
		}
		if f.Metric != "" {
			var ls []string
			if labelName != "" {
				ls = append(ls, fmt.Sprintf("%s=%q", labelName, name))
			}
			if f.Label[0] != "" {
				ls = append(ls, fmt.Sprintf("%s=%q", f.Label[0], f.Label[1]))
			}
			line := f.Metric
			if len(ls) > 0 {
				line += "{" + strings.Join(ls, ",") + "}"
			}
			line += " " + strconv.FormatFloat(x, 'g', -1, 64) + "\n"
			if !strings.Contains(metrics, "\n"+line) {
				t.Errorf("%s: /metrics lacks %q", what, line)
			}
			if !strings.Contains(metrics, "# TYPE "+f.Metric+" "+f.Kind.String()+"\n") {
				t.Errorf("%s: /metrics lacks its TYPE %s", what, f.Kind)
			}
		}
		if f.Sys != "" {
			if got, ok := sys[f.Sys]; !ok || got != int64(x) {
				t.Errorf("%s: $SYS/edgegw/%s = %d (present %v), want %d", what, f.Sys, got, ok, int64(x))
			}
		}
	}
}

// Every figure of figures.go is on each surface it names: its key in the
// admin JSON, its metric (with labels and value) in /metrics, its topic (with
// the value, or the sum over a list) in $SYS.
func TestFiguresOnEverySurface(t *testing.T) {
	st := figureStatus(t)
	var b strings.Builder
	if err := WriteMetrics(&b, st); err != nil {
		t.Fatal(err)
	}
	metrics := b.String()
	raw, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		t.Fatal(err)
	}
	first := func(k string) any { return obj[k].([]any)[0] }
	sys := sysOf(st, true)

	checkFigures(t, "store", storeFigures, st.Store, obj["store"], "", "", metrics, sys)
	checkFigures(t, "clock", clockFigures, st.Clock, obj["clock"], "", "", metrics, sys)
	checkFigures(t, "bridge", bridgeFigures, st.Bridges[0], first("bridges"), "bridge", st.Bridges[0].Bridge, metrics, sys)
	checkFigures(t, "meter", meterFigures, st.Meters[0], first("meters"), "meter", st.Meters[0].Meter, metrics, sys)
	checkFigures(t, "port", portFigures, st.Ports[0], first("ports"), "port", st.Ports[0].Port, metrics, sys)
	for k, v := range st.Ports[0].Counters {
		if sys["meters/"+k] != v {
			t.Errorf("$SYS/edgegw/meters/%s = %d, want the port counter's %d", k, sys["meters/"+k], v)
		}
	}

	// Figures named on no surface but JSON are errors above; the $SYS topics
	// published before these tables keep their names.
	for _, topic := range []string{"store/commits", "store/commits_failed", "store/messages_written", "store/messages_never_written",
		"store/messages_dropped", "store/bytes_written", "store/process_write_bytes", "store/write_bytes_per_message", "store/file_bytes",
		"meters/configured", "meters/online", "meters/offline", "meters/ports/configured", "meters/ports/open",
		"meters/commands/queued", "meters/commands/done", "meters/commands/failed", "meters/commands/expired", "meters/commands/refused"} {
		if _, ok := sys[topic]; !ok {
			t.Errorf("$SYS/edgegw/%s is no longer published", topic)
		}
	}
}

// Without bridges or meter ports their $SYS sums are not published, as before.
func TestSysWithoutBridgesOrMeters(t *testing.T) {
	st := figureStatus(t)
	st.Bridges, st.Meters, st.Ports = nil, nil, nil
	for k := range sysOf(st, true) {
		if strings.HasPrefix(k, "bridges/") || strings.HasPrefix(k, "meters/") {
			t.Errorf("$SYS/edgegw/%s published without bridges or meters", k)
		}
	}
}

// A figure list that names a $SYS topic twice, or splits a metric family, is
// refused by Check.
func TestFiguresCheck(t *testing.T) {
	one := func(float64) func(Store) (float64, bool) {
		return func(Store) (float64, bool) { return 1, true }
	}
	for name, fs := range map[string]counter.Figures[Store]{
		"sys twice":   {{Key: "a", Sys: "x", Value: one(1)}, {Key: "b", Sys: "x", Value: one(2)}},
		"split":       {{Key: "a", Metric: "m", Value: one(1)}, {Key: "b", Metric: "n", Value: one(1)}, {Key: "c", Metric: "m", Value: one(1)}},
		"mixed kinds": {{Key: "a", Metric: "m", Value: one(1)}, {Key: "b", Metric: "m", Kind: counter.Total, Value: one(1)}},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: Check did not panic", name)
				}
			}()
			fs.Check()
		}()
	}
}
