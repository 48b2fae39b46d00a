package hardware

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/tarm/serial"

	"edgegw/internal/ratelog"
)

// SerialConfig is how a serial device is opened.
type SerialConfig struct {
	Device      string // path, e.g. /dev/ttyUSB0 or /dev/serial/by-id/...
	Baud        int
	DataBits    int           // 7 or 8 (5 and 6 are accepted by the driver too)
	Parity      string        // "none", "even" or "odd"
	StopBits    int           // 1 or 2
	ReadTimeout time.Duration // the device's read timeout (VTIME), 100ms steps, 100ms-25.5s
}

// Line returns the character framing of c.
func (c SerialConfig) Line() Line {
	return Line{Baud: c.Baud, DataBits: c.DataBits, Parity: c.Parity == "even" || c.Parity == "odd", StopBits: c.StopBits}
}

// Check validates c; errors name the field.
func (c SerialConfig) Check() error {
	if c.Device == "" {
		return fmt.Errorf("device: must not be empty")
	}
	if !slices.Contains(StandardBauds, c.Baud) {
		return fmt.Errorf("baud: %d is not a standard rate (%v)", c.Baud, StandardBauds)
	}
	if c.DataBits < 5 || c.DataBits > 8 {
		return fmt.Errorf("data_bits: must be 5 to 8")
	}
	switch c.Parity {
	case "none", "even", "odd":
	default:
		return fmt.Errorf("parity: must be none, even or odd")
	}
	if c.StopBits != 1 && c.StopBits != 2 {
		return fmt.Errorf("stop_bits: must be 1 or 2")
	}
	if c.ReadTimeout < 100*time.Millisecond || c.ReadTimeout > 25500*time.Millisecond {
		return fmt.Errorf("read_timeout: must be between 100ms and 25.5s")
	}
	return nil
}

// StandardBauds are the rates a Linux serial driver accepts (tarm/serial).
var StandardBauds = []int{50, 75, 110, 134, 150, 200, 300, 600, 1200, 1800, 2400, 4800, 9600, 19200, 38400,
	57600, 115200, 230400, 460800, 500000, 576000, 921600, 1000000, 1152000, 1500000, 2000000, 2500000,
	3000000, 3500000, 4000000}

// OpenSerial opens a serial device with github.com/tarm/serial: raw mode, the
// given framing, reads that return after ReadTimeout when nothing arrives.
func OpenSerial(c SerialConfig) (io.ReadWriteCloser, error) {
	parity := serial.ParityNone
	switch c.Parity {
	case "even":
		parity = serial.ParityEven
	case "odd":
		parity = serial.ParityOdd
	}
	p, err := serial.OpenPort(&serial.Config{Name: c.Device, Baud: c.Baud, Size: byte(c.DataBits),
		Parity: parity, StopBits: serial.StopBits(c.StopBits), ReadTimeout: c.ReadTimeout})
	if err != nil {
		if !strings.Contains(err.Error(), c.Device) {
			err = fmt.Errorf("open %s: %w", c.Device, err)
		}
		return nil, err
	}
	return p, nil
}

// TCPConfig is how a TCP port (a Modbus TCP device or gateway, an
// RS-485-to-Ethernet converter) is reached.
type TCPConfig struct {
	Address        string        // host:port
	ConnectTimeout time.Duration // how long one connection attempt may take
}

// DefaultConnectTimeout is meters.ports[].connect_timeout when not set.
const DefaultConnectTimeout = 5 * time.Second

// CheckAddress validates a TCP port's address: host:port with a host and a
// numeric port 1-65535 (a name such as "modbus" is refused: it would depend
// on /etc/services). The error says what is wrong.
func CheckAddress(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		if strings.Contains(err.Error(), "missing port") {
			return fmt.Errorf("%q has no port: write host:port, e.g. %s:502", addr, addr)
		}
		return fmt.Errorf("%q must be host:port (%v)", addr, errors.Unwrap(err))
	}
	if host == "" {
		return fmt.Errorf("%q has no host", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: port %q must be a number 1-65535", addr, port)
	}
	return nil
}

// DialTCP opens a TCP connection to c.Address within c.ConnectTimeout (or
// ctx). TCP keep-alive probes run every 15 s, so a peer that vanished is
// noticed by the kernel too; a peer that accepts and never answers is noticed
// by the protocol's response timeout.
func DialTCP(ctx context.Context, c TCPConfig) (net.Conn, error) {
	timeout := c.ConnectTimeout
	if timeout <= 0 {
		timeout = DefaultConnectTimeout
	}
	d := net.Dialer{Timeout: timeout, KeepAlive: 15 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", c.Address)
	if err != nil {
		return nil, err
	}
	return conn, nil
}

// Protocol drives the meters on one port. A protocol package (hardware/modbus,
// hardware/line) implements it.
type Protocol interface {
	// Name is the protocol's configuration name ("modbus", "line").
	Name() string
	// Run talks to the meters over an open port until ctx is done or the port
	// fails (c.Done). It returns the reason it stopped; the hub then reopens the
	// port and calls Run again.
	Run(ctx context.Context, c *Conn) error
}

// Attacher is implemented by a Protocol that serves others while the port is
// open (modbus.Protocol.Exchange). The port calls Attach with each new Conn
// before it reports the port open (Status, Opened) and calls Run with the same
// Conn right after, so whoever sees the port open finds the protocol ready for
// their work, even before Run has started.
type Attacher interface {
	Attach(c *Conn)
}

// PortConfig is one port of a hub: a serial device (Serial), or a TCP
// connection when TCP.Address is set.
type PortConfig struct {
	Name      string
	Serial    SerialConfig
	TCP       TCPConfig
	ReopenMin time.Duration // first wait after a failure; doubles up to ReopenMax
	ReopenMax time.Duration
	// Open opens the device; nil means OpenSerial. Tests inject other devices.
	Open func(SerialConfig) (io.ReadWriteCloser, error)
}

// PortStatus is a port's state, published retained on "edgegw/ports/<name>/status"
// when it changes.
type PortStatus struct {
	Port      string           `json:"port"`
	Device    string           `json:"device,omitempty"`  // serial ports
	Address   string           `json:"address,omitempty"` // TCP ports: host:port
	Protocol  string           `json:"protocol"`
	Open      bool             `json:"open"`
	Since     time.Time        `json:"since"`
	LastError string           `json:"last_error,omitempty"`
	Meters    []string         `json:"meters"`
	Counters  map[string]int64 `json:"counters"`
}

// Port is one serial port or TCP connection with its protocol and meters.
type Port struct {
	cfg      PortConfig
	proto    Protocol
	meters   []*Meter
	hub      *Hub
	log      *slog.Logger
	counters Counters
	// Limited is the port's rate-limited logger for bad input; protocols use it.
	Limited *ratelog.Logger

	stop func() // ends run and waits for it (set by the hub when it runs the port)

	mu     sync.Mutex
	status PortStatus
	opened chan struct{} // closed while the port is open
}

// Counters returns the port's counters.
func (p *Port) Counters() *Counters { return &p.counters }

// Name returns the port's name.
func (p *Port) Name() string { return p.cfg.Name }

// Protocol returns the protocol driving the port.
func (p *Port) Protocol() Protocol { return p.proto }

// Serial returns how the port's device is opened (zero for a TCP port).
func (p *Port) Serial() SerialConfig { return p.cfg.Serial }

// TCP returns how a TCP port connects (zero Address for a serial port).
func (p *Port) TCP() TCPConfig { return p.cfg.TCP }

// Status returns the port's current state.
func (p *Port) Status() PortStatus {
	p.mu.Lock()
	st := p.status
	p.mu.Unlock()
	st.Counters = p.counters.Map()
	return st
}

// StatusTopic is where the port's status is published.
func (p *Port) StatusTopic() string { return portStatusTopic(p.cfg.Name) }

// portStatusTopic is where the port called name publishes its status.
func portStatusTopic(name string) string { return "edgegw/ports/" + name + "/status" }

// IsTCP reports whether the port is a TCP connection (not a serial device).
func (p *Port) IsTCP() bool { return p.cfg.TCP.Address != "" }

// where returns the port's device or address, for logs.
func (p *Port) where() slog.Attr {
	if p.IsTCP() {
		return slog.String("address", p.cfg.TCP.Address)
	}
	return slog.String("device", p.cfg.Serial.Device)
}

// connect opens the serial device or the TCP connection and wraps it in a Conn.
func (p *Port) connect(ctx context.Context) (*Conn, error) {
	if p.IsTCP() {
		nc, err := DialTCP(ctx, p.cfg.TCP)
		if err != nil {
			return nil, err
		}
		return NewStreamConn(nc), nil
	}
	open := p.cfg.Open
	if open == nil {
		open = OpenSerial
	}
	rw, err := open(p.cfg.Serial)
	if err != nil {
		return nil, err
	}
	return NewConn(rw, p.cfg.Serial.Line(), p.cfg.Serial.ReadTimeout), nil
}

// run opens the port, runs the protocol, and reopens after failures with backoff
// until ctx is done. A TCP port is the same loop: connect (within its connect
// timeout), run, reconnect with the same backoff.
func (p *Port) run(ctx context.Context) {
	kind := "serial port"
	if p.IsTCP() {
		kind = "TCP connection"
	}
	backoff := p.cfg.ReopenMin
	everOpen := false
	for ctx.Err() == nil {
		c, err := p.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			p.setState(false, err)
			wait := jitter(backoff)
			p.Limited.Warn("open", kind+" cannot be opened; retrying",
				p.where(), slog.Any("error", err), slog.Duration("retry_in", wait))
			backoff = min(backoff*2, p.cfg.ReopenMax)
			if !sleepCtx(ctx, wait) {
				break
			}
			continue
		}
		if everOpen {
			p.counters.Reopens.Add(1)
		}
		everOpen = true
		c.counters, c.limited = &p.counters, p.Limited
		if a, ok := p.proto.(Attacher); ok {
			a.Attach(c) // before the port reports open: Opened promises a protocol ready for work
		}
		if p.IsTCP() {
			p.log.Info(kind+" open", p.where(), slog.String("protocol", p.proto.Name()))
		} else {
			p.log.Info(kind+" open", p.where(), slog.Int("baud", p.cfg.Serial.Baud), slog.String("protocol", p.proto.Name()))
		}
		p.setState(true, nil)
		p.resetReports()
		start := time.Now()
		err = p.proto.Run(ctx, c)
		_ = c.Close()
		if cerr := c.Err(); cerr != nil && cerr != ErrClosed {
			err = cerr
		}
		if ctx.Err() != nil {
			break
		}
		if time.Since(start) > 30*time.Second {
			backoff = p.cfg.ReopenMin // it worked for a while: start over
		}
		wait := jitter(backoff)
		backoff = min(backoff*2, p.cfg.ReopenMax)
		p.setState(false, err)
		p.log.Warn(kind+" lost; reopening", p.where(), slog.Any("error", err), slog.Duration("retry_in", wait))
		if !sleepCtx(ctx, wait) {
			break
		}
	}
	p.setState(false, ErrClosed)
}

// jitter returns a random duration in [d/2, d].
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// setState records an open/closed transition and publishes the status when it
// changed.
func (p *Port) setState(open bool, err error) {
	p.mu.Lock()
	changed := p.status.Open != open || p.status.Since.IsZero()
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if !changed && p.status.LastError == msg {
		p.mu.Unlock()
		return
	}
	if changed {
		p.status.Since = p.hub.wall()
	}
	p.status.Open = open
	p.status.LastError = msg
	select {
	case <-p.opened: // closed: the port was open
		if !open {
			p.opened = make(chan struct{})
		}
	default:
		if open {
			close(p.opened)
		}
	}
	p.mu.Unlock()
	p.publishStatus()
}

// Opened returns a channel that is closed while the port is open: it is
// closed at once if the port is open now, else once it opens. Once it is
// closed, a protocol that is an Attacher takes work on the new connection.
func (p *Port) Opened() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.opened
}

// IsOpen reports whether the port is open.
func (p *Port) IsOpen() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status.Open
}

func (p *Port) publishStatus() {
	payload, err := json.Marshal(p.Status())
	if err != nil {
		return
	}
	_ = p.hub.engine.PublishLocal(p.hub.origin, packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1, Retain: true},
		TopicName:   p.StatusTopic(), Payload: payload,
	})
}
