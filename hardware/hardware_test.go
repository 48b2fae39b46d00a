package hardware_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/hardware"
	"edgegw/hardware/hwtest"
	"edgegw/internal/queue"
	"edgegw/session"
)

// eofDevice returns end of file after delay on every read, like a tarm/serial
// port whose read timeout passed (delay = timeout) or whose device hung up
// (delay ~ 0).
type eofDevice struct {
	delay time.Duration
	once  sync.Once
	done  chan struct{}
}

func (d *eofDevice) Read([]byte) (int, error) {
	select {
	case <-time.After(d.delay):
		return 0, io.EOF
	case <-d.done:
		return 0, errors.New("closed")
	}
}
func (d *eofDevice) Write(p []byte) (int, error) { return len(p), nil }
func (d *eofDevice) Close() error                { d.once.Do(func() { close(d.done) }); return nil }

func TestConnHangupAndTimeouts(t *testing.T) {
	hung := hardware.NewConn(&eofDevice{done: make(chan struct{})}, hardware.Line{Baud: 9600, DataBits: 8, StopBits: 1}, 100*time.Millisecond)
	select {
	case <-hung.Done():
		if !errors.Is(hung.Err(), hardware.ErrHangup) {
			t.Errorf("err = %v, want ErrHangup", hung.Err())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("hang-up not detected")
	}
	// End of file after the read timeout is an idle line.
	idle := hardware.NewConn(&eofDevice{delay: 20 * time.Millisecond, done: make(chan struct{})}, hardware.Line{}, 20*time.Millisecond)
	defer idle.Close()
	select {
	case <-idle.Done():
		t.Fatalf("idle line ended the conn: %v", idle.Err())
	case <-time.After(150 * time.Millisecond):
	}
	// Without a read timeout, end of file ends the conn.
	eof := hardware.NewConn(&eofDevice{done: make(chan struct{})}, hardware.Line{}, 0)
	<-eof.Done()
	if !errors.Is(eof.Err(), io.EOF) {
		t.Errorf("err = %v", eof.Err())
	}
	if err := eof.Write([]byte("x")); err == nil {
		t.Error("write on an ended conn succeeded")
	}
}

func TestLineTimes(t *testing.T) {
	l := hardware.Line{Baud: 9600, DataBits: 8, Parity: true, StopBits: 1}
	if got := l.CharTime(); got != 11*time.Second/9600 {
		t.Errorf("char time %v", got)
	}
	if got := l.WireTime(8); got != 8*(11*time.Second/9600) {
		t.Errorf("wire time %v", got)
	}
}

func TestEncodeReading(t *testing.T) {
	ts := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
	b := hardware.EncodeReading("m1", ts, hardware.Reading{Values: []hardware.Value{
		{Name: "e", Value: 1.5, Unit: "kWh"}, {Name: "bad", Value: math.NaN()}, {Name: "inf", Value: math.Inf(1)}}})
	want := `{"ts":"2026-05-04T10:00:00Z","meter":"m1","values":{"bad":{"v":null},"e":{"v":1.5,"unit":"kWh"},"inf":{"v":null}},"quality":["invalid_value"]}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	if b := hardware.EncodeReading("m1", ts, hardware.Reading{}); !bytes.Contains(b, []byte(`"quality":["ok"]`)) {
		t.Errorf("empty reading %s", b)
	}
}

// A command's attempts are kept in its queue entry; after the last one it is
// finished with the last outcome.
func TestCommandAttempts(t *testing.T) {
	eng := hwtest.NewEngine()
	hub := hardware.New(eng, hardware.Options{Log: slog.New(slog.DiscardHandler), MaxQueued: 10, Overflow: session.RefuseNew})
	q := queue.NewMem(nil)
	m, err := hub.AddMeter(hardware.MeterConfig{ID: "m1"}, q)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hub.AddMeter(hardware.MeterConfig{ID: "m1"}, q); err == nil {
		t.Error("duplicate meter id accepted")
	}
	if _, err := hub.AddMeter(hardware.MeterConfig{ID: "a/b"}, q); err == nil {
		t.Error("meter id with a slash accepted")
	}
	_ = eng.PublishLocal("app", packets.Packet{TopicName: "meters/m1/cmd", Payload: []byte("x"), Created: time.Now().Unix(),
		Properties: packets.Properties{ResponseTopic: "app/r", CorrelationData: []byte("c")}})
	_ = eng.PublishLocal("meter-m1", packets.Packet{TopicName: "meters/m1/cmd", Payload: []byte("loop")})
	if q.Len() != 1 {
		t.Fatalf("queued %d, want 1 (the meter's own message is skipped)", q.Len())
	}
	for i := range 3 {
		cmd, ok := m.NextCommand()
		if !ok || cmd.Attempts != i {
			t.Fatalf("attempt %d: %+v %v", i, cmd, ok)
		}
		final := m.Retry(cmd, hardware.Result{Status: "timeout"}, 3)
		if final != (i == 2) {
			t.Fatalf("attempt %d: final = %v", i, final)
		}
	}
	if q.Len() != 0 {
		t.Fatal("command still queued after its last attempt")
	}
	var res struct {
		Status   string
		Attempts int
	}
	var pk packets.Packet
	for pk = range eng.Published() {
		if pk.TopicName == "app/r" {
			break
		}
	}
	if err := json.Unmarshal(pk.Payload, &res); err != nil || res.Status != "timeout" || res.Attempts != 3 ||
		string(pk.Properties.CorrelationData) != "c" || pk.Origin != "meter-m1" {
		t.Errorf("result %s %+v", pk.Payload, pk.Properties)
	}
}
