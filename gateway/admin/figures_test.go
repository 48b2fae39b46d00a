package admin

import (
	"encoding/json"
	"fmt"
	"maps"
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
	fill(reflect.ValueOf(&st.Sessions).Elem(), &n)
	fill(reflect.ValueOf(&st.MQTT).Elem(), &n)
	st.Listeners = make([]Listener, 1)
	fill(reflect.ValueOf(&st.Listeners[0]).Elem(), &n)
	st.Counters = make([]Counter, 1)
	fill(reflect.ValueOf(&st.Counters[0]).Elem(), &n)
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
// (part, then the name they have), each with the reason.
var onOneSurface = map[string]string{
	"session sessions/count": "the sum of edgegw_sessions' two series",

	"mqtt edgegw_mqtt_clients_connected":       "mochi publishes $SYS/broker/clients/connected",
	"mqtt edgegw_mqtt_messages_received_total": "mochi publishes $SYS/broker/messages/received",
	"mqtt edgegw_mqtt_messages_sent_total":     "mochi publishes $SYS/broker/messages/sent",
	"mqtt edgegw_mqtt_received_bytes_total":    "mochi publishes $SYS/broker/load/bytes/received",
	"mqtt edgegw_mqtt_sent_bytes_total":        "mochi publishes $SYS/broker/load/bytes/sent",
	"mqtt edgegw_mqtt_packets_received_total":  "mochi publishes $SYS/broker/packets/received",
	"mqtt edgegw_mqtt_packets_sent_total":      "mochi publishes $SYS/broker/packets/sent",
	"mqtt edgegw_mqtt_messages_dropped_total":  "mochi publishes $SYS/broker/messages/dropped",
	"mqtt edgegw_mqtt_retained_messages":       "mochi publishes $SYS/broker/retained",
	"mqtt edgegw_mqtt_subscriptions":           "mochi publishes $SYS/broker/subscriptions",

	// $SYS carries no per-listener topic, and a sum over listeners is
	// mochi's $SYS/broker/clients/... or sessions/online.
	"listener edgegw_listener_clients":                          "sessions/online is the sum",
	"listener edgegw_listener_connections_open":                 "$SYS/broker/clients/connected (mochi) counts open connections",
	"listener edgegw_listener_connections_accepted_total":       "$SYS/broker/clients/total (mochi) counts connections",
	"listener edgegw_listener_connections_closed_total":         "$SYS/broker/clients/disconnected (mochi) counts closed connections",
	"listener edgegw_listener_cert_not_after_timestamp_seconds": "a sum of times means nothing",

	"bridge edgegw_bridge_outbox_oldest_age_seconds":      "a sum of ages means nothing",
	"bridge edgegw_bridge_last_connect_timestamp_seconds": "a sum of times means nothing",
	"bridge edgegw_bridge_state_change_timestamp_seconds": "a sum of times means nothing",
	"meter meters/configured":                             "/metrics has one series per meter",
	"meter meters/offline":                                "/metrics has edgegw_meter_up 0",
	"meter edgegw_meter_last_seen_timestamp_seconds":      "a sum of times means nothing",
	"meter edgegw_meter_readings_total":                   "$SYS meters/readings is the ports' counter",
	"port meters/ports/configured":                        "/metrics has one series per port",
}

// byHand are the /metrics families written by hand in WriteMetrics, not from
// a table (figures.go says why); any other family must come from a table or
// the counter registry.
var byHand = []string{"edgegw_build_info", "process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds",
	"process_max_fds", "go_goroutines", "edgegw_memory_limit_bytes", "edgegw_data_dir_free_bytes", "edgegw_data_dir_size_bytes",
	"edgegw_start_time_seconds", "edgegw_healthy", "edgegw_bridge_upstream_info", "edgegw_bridge_cert_not_after_timestamp_seconds",
	"edgegw_port_events_total", "edgegw_store_commit_duration_seconds", "edgegw_scrape_timestamp_seconds"}

// notFigures are the keys of the sessions, mqtt and listener JSON objects
// that are no figure: a listener's name (its label), protocol and address.
var notFigures = map[string]bool{"listener name": true, "listener protocol": true, "listener address": true}

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
		if (f.Sys == "" || f.Metric == "") && onOneSurface[part+" "+f.Sys+f.Metric] == "" {
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

// surfaces returns figureStatus with its /metrics text and its admin JSON, decoded.
func surfaces(t *testing.T) (Status, string, map[string]any) {
	t.Helper()
	st := figureStatus(t)
	var b strings.Builder
	if err := WriteMetrics(&b, st); err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		t.Fatal(err)
	}
	return st, b.String(), obj
}

// Every figure of figures.go is on each surface it names: its key in the
// admin JSON, its metric (with labels and value) in /metrics, its topic (with
// the value, or the sum over a list) in $SYS.
func TestFiguresOnEverySurface(t *testing.T) {
	st, metrics, obj := surfaces(t)
	first := func(k string) any { return obj[k].([]any)[0] }
	sys := sysOf(st, true, true)

	checkFigures(t, "session", sessionFigures, st.Sessions, obj["sessions"], "", "", metrics, sys)
	checkFigures(t, "mqtt", mqttFigures, st.MQTT, obj["mqtt"], "", "", metrics, sys)
	checkFigures(t, "listener", listenerFigures, st.Listeners[0], first("listeners"), "listener", st.Listeners[0].Name, metrics, sys)
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
	for _, topic := range []string{"sessions/count", "sessions/online", "sessions/offline", "sessions/max", "sessions/groups",
		"sessions/queued", "sessions/queue/ram_bytes", "store/commits", "store/commits_failed", "store/messages_written", "store/messages_never_written",
		"store/messages_dropped", "store/bytes_written", "store/process_write_bytes", "store/write_bytes_per_message", "store/file_bytes",
		"meters/configured", "meters/online", "meters/offline", "meters/ports/configured", "meters/ports/open",
		"meters/commands/queued", "meters/commands/done", "meters/commands/failed", "meters/commands/expired", "meters/commands/refused"} {
		if _, ok := sys[topic]; !ok {
			t.Errorf("$SYS/edgegw/%s is no longer published", topic)
		}
	}
}

// Nothing is on one surface only without a table saying so: every key of the
// sessions, mqtt and listener JSON objects is a figure's (or in notFigures),
// every /metrics family comes from a table, the counter registry or byHand,
// every $SYS value from a table or a port counter. The names published before
// the tables keep their spelling.
func TestFiguresNothingElse(t *testing.T) {
	st, text, obj := surfaces(t)
	session, mqtt, listener := namesOf(sessionFigures), namesOf(mqttFigures), namesOf(listenerFigures)
	for part, c := range map[string]struct {
		obj   any
		names figureNames
	}{
		"session":  {obj["sessions"], session},
		"mqtt":     {obj["mqtt"], mqtt},
		"listener": {obj["listeners"].([]any)[0], listener},
	} {
		for k := range c.obj.(map[string]any) {
			if !c.names.key[k] && !notFigures[part+" "+k] {
				t.Errorf("%s JSON key %q is in no figure table (gateway/admin/figures.go)", part, k)
			}
		}
	}

	all := []figureNames{session, mqtt, listener, namesOf(storeFigures), namesOf(clockFigures), namesOf(bridgeFigures),
		namesOf(meterFigures), namesOf(portFigures)}
	metrics, sys := map[string]bool{}, map[string]bool{}
	for _, n := range all {
		maps.Copy(metrics, n.metric)
		maps.Copy(sys, n.sys)
	}
	for _, name := range byHand {
		metrics[name] = true
	}
	for _, c := range st.Counters {
		metrics[counter.MetricName(c.Name)] = true
	}
	for _, line := range strings.Split(text, "\n") {
		if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, _, _ = strings.Cut(name, " ")
			if !metrics[name] {
				t.Errorf("/metrics family %s is written by hand: put it in a figure table (or byHand, with a reason in figures.go)", name)
			}
		}
	}
	for _, name := range []string{"edgegw_sessions", "edgegw_sessions_max", "edgegw_session_queued_messages", "edgegw_shared_groups",
		"edgegw_shared_group_queued_messages", "edgegw_mqtt_clients_connected", "edgegw_mqtt_messages_received_total",
		"edgegw_mqtt_messages_sent_total", "edgegw_mqtt_received_bytes_total", "edgegw_mqtt_sent_bytes_total",
		"edgegw_mqtt_packets_received_total", "edgegw_mqtt_packets_sent_total", "edgegw_mqtt_messages_dropped_total",
		"edgegw_mqtt_retained_messages", "edgegw_mqtt_subscriptions", "edgegw_listener_clients", "edgegw_listener_connections_open",
		"edgegw_listener_connections_accepted_total", "edgegw_listener_connections_closed_total",
		"edgegw_listener_cert_not_after_timestamp_seconds"} {
		if !strings.Contains(text, "\n# TYPE "+name+" ") {
			t.Errorf("/metrics no longer has %s", name)
		}
	}

	for k := range st.Ports[0].Counters {
		sys["meters/"+k] = true
	}
	for k := range sysOf(st, true, true) {
		if !sys[k] {
			t.Errorf("$SYS/edgegw/%s is published by hand: put it in a figure table", k)
		}
	}
}

// figureNames are the JSON keys, $SYS topics and metrics of one table.
type figureNames struct{ key, sys, metric map[string]bool }

func namesOf[T any](fs counter.Figures[T]) figureNames {
	n := figureNames{map[string]bool{}, map[string]bool{}, map[string]bool{}}
	for _, f := range fs {
		n.key[f.Key], n.sys[f.Sys], n.metric[f.Metric] = true, true, true
	}
	return n
}

// Without bridges or meter ports their $SYS sums are not published, as before.
func TestSysWithoutBridgesOrMeters(t *testing.T) {
	st := figureStatus(t)
	st.Bridges, st.Meters, st.Ports = nil, nil, nil
	for k := range sysOf(st, true, true) {
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
