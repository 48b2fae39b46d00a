package gateway

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// mochi's log calls that carry packets (hooks.go "publish packet error",
// server.go "error processing packet") write a summary: never the payload, the
// properties or a struct dump; its warn and error lines are limited per message
// and name the client's remote address with the client. The packet chain's
// "publish packet error" is not written (the engine logs its refusals itself,
// with client and remote address).
func TestMochiLoggerScrubsPacketsAndLimits(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var buf bytes.Buffer
	remote := func(id string) (string, bool) { return "192.0.2.7:1883", strings.HasPrefix(id, "ccc") }
	log := mochiLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
		func() time.Time { return now }, remote)
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 7,
		TopicName: "a/b", Payload: []byte("password=hunter2"),
		Properties: packets.Properties{User: []packets.UserProperty{{Key: "k", Val: "password=hunter2"}}}}
	will := mqtt.Will{TopicName: "w", Payload: []byte("password=hunter2")}
	hookLog := log.With("hook", "some-hook", "pk", &pk) // mochi derives loggers with With
	chainLog := log.With("hook", chainHook)
	for range 1000 {
		hookLog.Error("publish packet error", "error", packets.ErrQuotaExceeded, "packet", pk)
		chainLog.Error("publish packet error", "error", packets.ErrQuotaExceeded, "packet", pk)
		log.Error("publish packet error", "error", packets.ErrQuotaExceeded, "hook", chainHook, "packet", pk)
		log.Warn("error processing packet", "error", errors.New("x"), "client", strings.Repeat("c", 5000), "pk", pk)
	}
	log.Debug("failed publishing packet", "packet", pk, "will", will, "other", struct{ Secret string }{"password=hunter2"})
	now = now.Add(10 * time.Second)
	log.Warn("error processing packet", "pk", pk)

	out := buf.String()
	if strings.Contains(out, "hunter2") || strings.Contains(out, "{password") {
		t.Fatalf("payload or struct dump in the log:\n%s", out)
	}
	if !strings.Contains(out, "packet.type=Publish packet.id=7 packet.qos=1 packet.topic=a/b packet.payload_bytes=16") {
		t.Fatalf("no packet summary in the log:\n%s", out)
	}
	if n := strings.Count(out, `msg="publish packet error"`); n != 5 || strings.Contains(out, "hook="+chainHook) {
		t.Fatalf("%d 'publish packet error' lines for 1000 of another hook in one window, want 5, and none of the packet chain's:\n%s", n, out)
	}
	if n := strings.Count(out, "remote=192.0.2.7:1883"); n != 5 {
		t.Fatalf("%d lines name the client's remote address, want the 5 'error processing packet' lines:\n%s", n, out)
	}
	if !strings.Contains(out, `msg="error processing packet (suppressed 995 similar in the last 10s)"`) {
		t.Fatalf("no suppression note after the window:\n%s", out)
	}
	if !strings.Contains(out, "will.payload_bytes=16") || !strings.Contains(out, `other="struct { Secret string }"`) {
		t.Fatalf("will summary or struct type name missing:\n%s", out)
	}
	if n := buf.Len(); n > 6000 {
		t.Fatalf("%d bytes of log for 2001 lines asked, want at most 6000", n)
	}
}
