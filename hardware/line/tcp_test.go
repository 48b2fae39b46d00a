package line_test

import (
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/hardware"
	"edgegw/hardware/hwtest"
	"edgegw/hardware/line"
	"edgegw/internal/queue"
)

// Line meters work on a TCP port too (a serial device server, or a LoRa
// gateway's TCP feed): uplinks become readings, a command goes down after
// the meter's uplink, and a peer that closes the connection is reconnected.
func TestLineOverTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	conns := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns <- c
		}
	}()
	eng := hwtest.NewEngine()
	hub := hardware.New(eng, hardware.Options{Log: slog.New(slog.DiscardHandler), CommandExpiry: time.Hour, MaxQueued: 10})
	m, err := hub.AddMeter(hardware.MeterConfig{ID: "w1", Silence: time.Hour}, queue.NewMem(nil))
	if err != nil {
		t.Fatal(err)
	}
	proto, err := line.New(line.Config{MaxLine: 256, Meters: []line.MeterConfig{{Meter: m}}})
	if err != nil {
		t.Fatal(err)
	}
	port, err := hub.AddPort(hardware.PortConfig{Name: "feed", ReopenMin: 10 * time.Millisecond, ReopenMax: 20 * time.Millisecond,
		TCP: hardware.TCPConfig{Address: l.Addr().String(), ConnectTimeout: time.Second}}, proto, []*hardware.Meter{m})
	if err != nil {
		t.Fatal(err)
	}
	hub.Start()
	t.Cleanup(hub.Stop)
	c := <-conns
	meter := hwtest.NewLineMeter(c)
	if err := eng.PublishLocal("tester", packets.Packet{TopicName: "meters/w1/cmd", Payload: []byte(`{"interval":60}`),
		Created: time.Now().Unix()}); err != nil {
		t.Fatal(err)
	}
	meter.Send(t, `{"id":"w1","volume":5}`+"\n")
	if pk := next(t, eng, "meters/w1/reading"); !strings.Contains(string(pk.Payload), `"volume":{"v":5}`) {
		t.Errorf("reading %s", pk.Payload)
	}
	if got := meter.Downlink(t, 5*time.Second); got != `{"id":"w1","cmd":{"interval":60}}` {
		t.Errorf("downlink %q", got)
	}
	_ = c.Close() // the peer goes away: the port reconnects
	c = <-conns
	hwtest.NewLineMeter(c).Send(t, "id=w1 volume=6\n")
	if pk := next(t, eng, "meters/w1/reading"); !strings.Contains(string(pk.Payload), `"volume":{"v":6}`) {
		t.Errorf("reading after the reconnect %s", pk.Payload)
	}
	if st := port.Status(); !st.Open || st.Counters["reopens"] != 1 {
		t.Errorf("port status %+v", st)
	}
}
