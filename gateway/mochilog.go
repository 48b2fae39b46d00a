package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/ratelog"
)

// mochiLogger returns the logger mochi writes through (Options.Logger). mochi
// logs whole packets.Packet values ("pk", "packet") and wills ("will") on
// paths that remote input reaches: a refused PUBLISH ("publish packet error",
// about 6.5 KB with its payload as decimal bytes), a packet that fails
// processing ("error processing packet"). Through this logger:
//   - no packet or will reaches the output, only a summary (type, packet id,
//     QoS, topic, payload length); any other struct becomes its type name;
//     strings and errors are cut to ratelog.MaxValue bytes (a client id may be 64 KB);
//   - mochi's warn and error lines, which remote input causes, are limited per
//     message (ratelog, DefaultBurst per DefaultEvery) with the count of those
//     left out. Startup lines are info, and debug lines are opt-in, so neither
//     is limited;
//   - a warn or error line that names a client ("error processing packet")
//     also names its remote address, from remote (nil: none known);
//   - "publish packet error" from the packet chain is not written: the only
//     OnPublish refusal with a reason code is the engine's, which logs it
//     itself with the client and remote address ("publish refused",
//     session.refusePublish); mochi's line names neither, and would double
//     every refusal.
func mochiLogger(log *slog.Logger, now func() time.Time, remote func(clientID string) (string, bool)) *slog.Logger {
	return slog.New(&scrubHandler{next: log.Handler(), lim: ratelog.New(0, 0, now), remote: remote})
}

// scrubHandler is mochiLogger's handler.
type scrubHandler struct {
	next   slog.Handler
	lim    *ratelog.Limiter // shared by the handlers WithAttrs and WithGroup derive
	remote func(clientID string) (string, bool)
	hook   string // the "hook" attribute WithAttrs gave (mochi's hook loggers)
}

func (h *scrubHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

// chainHook is the packet chain's hook ID (packetChain.ID).
const chainHook = "edgegw-packet-chain"

func (h *scrubHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "publish packet error" && h.hookOf(r) == chainHook {
		return nil
	}
	msg := r.Message
	if r.Level >= slog.LevelWarn {
		ok, n, over := h.lim.Allow(r.Message)
		if !ok {
			return nil
		}
		msg = ratelog.Note(msg, n, over)
	}
	out := slog.NewRecord(r.Time, r.Level, msg, r.PC)
	client, hasRemote := "", false
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "client":
			client = a.Value.String()
		case "remote":
			hasRemote = true
		}
		out.AddAttrs(scrubAttr(a))
		return true
	})
	if r.Level >= slog.LevelWarn && client != "" && !hasRemote && h.remote != nil {
		if addr, ok := h.remote(client); ok {
			out.AddAttrs(slog.String("remote", addr))
		}
	}
	return h.next.Handle(ctx, out)
}

// hookOf returns the "hook" attribute of r, or of the logger r came through.
func (h *scrubHandler) hookOf(r slog.Record) string {
	hook := h.hook
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "hook" {
			hook = a.Value.String()
			return false
		}
		return true
	})
	return hook
}

func (h *scrubHandler) WithAttrs(as []slog.Attr) slog.Handler {
	clean := make([]slog.Attr, len(as))
	hook := h.hook
	for i, a := range as {
		clean[i] = scrubAttr(a)
		if a.Key == "hook" {
			hook = a.Value.String()
		}
	}
	return &scrubHandler{next: h.next.WithAttrs(clean), lim: h.lim, remote: h.remote, hook: hook}
}

func (h *scrubHandler) WithGroup(name string) slog.Handler {
	return &scrubHandler{next: h.next.WithGroup(name), lim: h.lim, remote: h.remote, hook: h.hook}
}

// scrubAttr returns a with its value made safe and short (see mochiLogger).
func scrubAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, ratelog.Cut(v.String()))
	case slog.KindGroup:
		as := v.Group()
		clean := make([]any, len(as))
		for i, g := range as {
			clean[i] = scrubAttr(g)
		}
		return slog.Group(a.Key, clean...)
	case slog.KindAny:
		return slog.Attr{Key: a.Key, Value: scrubAny(v.Any())}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

func scrubAny(x any) slog.Value {
	switch x := x.(type) {
	case nil:
		return slog.StringValue("<nil>")
	case packets.Packet:
		return packetSummary(&x)
	case *packets.Packet:
		if x == nil {
			return slog.StringValue("<nil>")
		}
		return packetSummary(x)
	case mqtt.Will:
		return willSummary(&x)
	case *mqtt.Will:
		if x == nil {
			return slog.StringValue("<nil>")
		}
		return willSummary(x)
	case error:
		return slog.StringValue(ratelog.Cut(x.Error()))
	}
	return slog.StringValue(fmt.Sprintf("%T", x)) // neither a struct dump nor a String method's text

}

// packetSummary is what the log may say about a packet: never its payload,
// properties or credentials.
func packetSummary(pk *packets.Packet) slog.Value {
	as := []slog.Attr{slog.String("type", packets.PacketNames[pk.FixedHeader.Type])}
	if pk.PacketID != 0 {
		as = append(as, slog.Int("id", int(pk.PacketID)))
	}
	if pk.FixedHeader.Type == packets.Publish {
		as = append(as, slog.Int("qos", int(pk.FixedHeader.Qos)), slog.String("topic", ratelog.Cut(pk.TopicName)),
			slog.Int("payload_bytes", len(pk.Payload)))
	}
	return slog.GroupValue(as...)
}

func willSummary(w *mqtt.Will) slog.Value {
	return slog.GroupValue(slog.String("topic", ratelog.Cut(w.TopicName)), slog.Int("qos", int(w.Qos)),
		slog.Int("payload_bytes", len(w.Payload)))
}
