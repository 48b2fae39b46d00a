package modbus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"edgegw/hardware"
	"edgegw/internal/ratelog"
)

// MeterConfig is one meter (slave, unit) on the bus or behind the TCP endpoint.
type MeterConfig struct {
	Meter    *hardware.Meter
	Slave    byte          // 1-247 (RTU); 0-255 (Modbus TCP unit id)
	Interval time.Duration // poll period
	Blocks   []Block       // the meter type's register map, from Plan
}

// Config configures the master of one bus.
type Config struct {
	// Timeout is the response timeout, counted from the end of the request's
	// wire time.
	Timeout time.Duration
	// Retries re-sends a request after a timeout or CRC error, per request.
	Retries int
	// Framing is FramingRTU (also "" ) or FramingTCP (Modbus TCP; the port
	// must be a TCP connection).
	Framing Framing
	// CommandAttempts is how many chances a command gets (a timeout uses one)
	// before it fails with "timeout"; at least 1.
	CommandAttempts int
	Meters          []MeterConfig
}

// commandsPerChance bounds the commands sent to one meter after one poll, so
// that a long command queue does not starve the other meters on the bus.
const commandsPerChance = 8

// Protocol is the Modbus RTU master as a hardware.Protocol.
type Protocol struct {
	cfg  Config
	wake chan struct{}
	jobs chan *job // transactions of others (Exchange), between polls

	mu       sync.Mutex
	down     chan struct{}  // closed when the Run on attached returns; nil before the first Attach or Run
	attached *hardware.Conn // the Conn down belongs to
}

// ErrPortDown is Exchange's error when the port is not open (no Conn was
// attached and Run is not running, or Run returned while the transaction
// waited for the bus).
var ErrPortDown = errors.New("the port is not open")

// job is one transaction handed to Run by Exchange.
type job struct {
	req     Request
	timeout time.Duration
	retries int
	done    chan jobResult // buffered: Run never waits for the caller
}

type jobResult struct {
	resp Response
	err  error
}

// New checks cfg and returns the protocol. It subscribes to the meters'
// command notifications: a command for an online meter is sent at once, one
// for an offline meter after its next successful poll.
func New(cfg Config) (*Protocol, error) {
	if cfg.Timeout <= 0 {
		return nil, errors.New("timeout: must be positive")
	}
	if cfg.Retries < 0 {
		return nil, errors.New("retries: must not be negative")
	}
	cfg.CommandAttempts = max(cfg.CommandAttempts, 1)
	switch cfg.Framing {
	case "":
		cfg.Framing = FramingRTU
	case FramingRTU, FramingTCP:
	default:
		return nil, fmt.Errorf("framing: %q is not rtu or tcp", cfg.Framing)
	}
	p := &Protocol{cfg: cfg, wake: make(chan struct{}, 1), jobs: make(chan *job)}
	slaves := map[byte]string{}
	for i, mc := range cfg.Meters {
		if cfg.Framing == FramingRTU && (mc.Slave < minSlave || mc.Slave > maxSlave) {
			return nil, fmt.Errorf("meters[%d].slave: must be 1-247, got %d", i, mc.Slave)
		}
		if other, dup := slaves[mc.Slave]; dup {
			return nil, fmt.Errorf("meters[%d].slave: %d is already the address of meter %s", i, mc.Slave, other)
		}
		slaves[mc.Slave] = mc.Meter.ID()
		if mc.Interval <= 0 {
			return nil, fmt.Errorf("meters[%d].interval: must be positive", i)
		}
		if len(mc.Blocks) == 0 {
			return nil, fmt.Errorf("meters[%d]: the meter type has no registers", i)
		}
		mc.Meter.OnCommand(p.signal)
	}
	return p, nil
}

func (p *Protocol) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Name implements hardware.Protocol.
func (p *Protocol) Name() string { return "modbus" }

// Framing returns the port's framing: FramingRTU or FramingTCP.
func (p *Protocol) Framing() Framing { return p.cfg.Framing }

// Run implements hardware.Protocol: it polls every meter at its interval, one
// transaction at a time, earliest due first, and sends queued commands. On a
// TCP connection it returns ErrSilentConn (and the port reconnects) once the
// connection stops answering altogether (Master.Silent).
func (p *Protocol) Run(ctx context.Context, c *hardware.Conn) error {
	defer close(p.attach(c)) // first: whatever Run returns, Exchange stops waiting for it
	if p.cfg.Framing == FramingTCP && !c.Stream() {
		return errors.New("framing tcp needs a TCP port (address)")
	}
	m := NewFramedMaster(c, p.cfg.Timeout, p.cfg.Framing)
	for len(p.cfg.Meters) == 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.Done():
			return c.Err()
		case j := <-p.jobs:
			if err := p.serve(ctx, m, j); err != nil {
				return err
			}
		}
	}
	due := make([]time.Time, len(p.cfg.Meters))
	now := time.Now()
	for i := range due {
		due[i] = now
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	p.signal() // commands queued while the port was closed
	for {
		i := 0
		for j := range due {
			if due[j].Before(due[i]) {
				i = j
			}
		}
		if wait := time.Until(due[i]); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-c.Done():
				return c.Err()
			case <-p.wake:
				timer.Stop()
				if err := p.commandsForOnline(ctx, m); err != nil {
					return err
				}
				if err := m.Silent(); err != nil {
					return err
				}
				continue
			case j := <-p.jobs:
				timer.Stop()
				if err := p.serve(ctx, m, j); err != nil {
					return err
				}
				continue
			case <-timer.C:
			}
		}
		c.Counters().AddLag(time.Since(due[i]))
		if err := p.poll(ctx, m, p.cfg.Meters[i]); err != nil {
			return err
		}
		if err := m.Silent(); err != nil {
			return err
		}
		// One waiting transaction of others after each poll, so that a scan
		// advances on a bus that is always busy and the polls go on.
		select {
		case j := <-p.jobs:
			if err := p.serve(ctx, m, j); err != nil {
				return err
			}
		default:
		}
		next := due[i].Add(p.cfg.Meters[i].Interval)
		if now := time.Now(); next.Before(now) {
			next = now // behind schedule: poll again as soon as the bus is free, without bursts
		}
		due[i] = next
	}
}

// Attach implements hardware.Attacher: the port calls it with a new Conn
// before it reports the port open and calls Run with it. From then on Exchange
// queues transactions for that Run instead of refusing them (ErrPortDown),
// until that Run returns.
func (p *Protocol) Attach(c *hardware.Conn) { p.attach(c) }

// attach makes c the Conn that Exchange waits on and returns the channel to
// close when the Run on c returns. Attach and then Run on the same Conn share
// one channel; a Run without Attach (or on a Conn whose Run returned) gets a
// new one.
func (p *Protocol) attach(c *hardware.Conn) chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.attached == c && p.down != nil {
		select {
		case <-p.down: // that Run returned: a new Run on the same Conn
		default:
			return p.down
		}
	}
	p.attached, p.down = c, make(chan struct{})
	return p.down
}

// Exchange runs one transaction on the bus between the protocol's own polls
// and commands (a Bus: a scan or an ad-hoc read while the gateway owns the
// port), with its own response timeout and retries. The port's counters and
// logs do not see it: a scan's silent units are no timeouts of the port. It
// waits for the protocol to take it (the poll in progress ends first) until
// ctx is done; a port that is not open takes nothing (one that the hub
// reports open is attached, see Attach). Once taken, the
// transaction runs to its end.
func (p *Protocol) Exchange(ctx context.Context, req Request, timeout time.Duration, retries int) (Response, error) {
	if err := req.CheckFor(p.cfg.Framing); err != nil {
		return Response{}, err
	}
	j := &job{req: req, timeout: timeout, retries: retries, done: make(chan jobResult, 1)}
	p.mu.Lock()
	down := p.down
	p.mu.Unlock()
	if down == nil {
		return Response{}, ErrPortDown
	}
	select {
	case p.jobs <- j:
	case <-down:
		return Response{}, ErrPortDown
	case <-ctx.Done():
		return Response{}, ctx.Err()
	}
	r := <-j.done
	return r.resp, r.err
}

// serve runs a job; only a port failure is returned.
func (p *Protocol) serve(ctx context.Context, m *Master, j *job) error {
	savedC, savedL := m.counters, m.log
	m.counters, m.log = new(hardware.Counters), ratelog.NewLogger(nil, 0, 0, nil)
	resp, err := m.Exchange(ctx, j.req, j.timeout, j.retries)
	m.counters, m.log = savedC, savedL
	j.done <- jobResult{resp, err}
	if IsConnError(err) {
		return err
	}
	return nil
}

// poll reads every register block of one meter and publishes the reading.
// Only a port failure is returned as an error.
func (p *Protocol) poll(ctx context.Context, m *Master, mc MeterConfig) error {
	var values []hardware.Value
	var quality []string
	responded, failed := false, 0
	flag := func(q string) {
		for _, x := range quality {
			if x == q {
				return
			}
		}
		quality = append(quality, q)
	}
	for _, b := range mc.Blocks {
		resp, err := m.Transact(ctx, Request{Slave: mc.Slave, Function: b.Function, Address: b.Address, Count: b.Count}, p.cfg.Retries)
		var ex *ExceptionError
		switch {
		case err == nil:
			values = b.Decode(resp.Data, values)
			responded = true
		case errors.As(err, &ex):
			// A gateway's "path unavailable" or "target failed to respond"
			// speaks for the gateway, not the meter: no contact.
			responded = responded || !ex.Gateway()
			failed++
			flag(fmt.Sprintf("exception_%d", ex.Code))
		case errors.Is(err, ErrTimeout):
			failed++
			flag("timeout")
		case errors.Is(err, ErrCRC):
			failed++
			flag("crc_error")
		default:
			if errors.Is(err, ErrSilentConn) && !responded {
				mc.Meter.Missed() // the earlier blocks of this poll timed out
			}
			return err
		}
	}
	if !responded {
		mc.Meter.Missed()
		return nil
	}
	if failed > 0 {
		quality = append([]string{"partial"}, quality...)
	}
	mc.Meter.Publish(hardware.Reading{Values: values, Quality: quality})
	return p.commands(ctx, m, mc)
}

// commandsForOnline sends queued commands to the meters that are online.
func (p *Protocol) commandsForOnline(ctx context.Context, m *Master) error {
	for _, mc := range p.cfg.Meters {
		if mc.Meter.State() != hardware.StateOnline {
			continue
		}
		if err := p.commands(ctx, m, mc); err != nil {
			return err
		}
	}
	return nil
}

// commands sends up to commandsPerChance queued commands to a reachable meter.
// A command leaves the queue once its outcome is known: done, exception,
// invalid, or its last attempt timed out. A timeout ends this chance.
func (p *Protocol) commands(ctx context.Context, m *Master, mc MeterConfig) error {
	for range commandsPerChance {
		cmd, ok := mc.Meter.NextCommand()
		if !ok {
			return nil
		}
		req, err := ParseCommand(cmd.Payload, mc.Slave)
		if err != nil {
			mc.Meter.Finish(cmd, hardware.Result{Status: "invalid", Error: err.Error()})
			continue
		}
		resp, err := m.Transact(ctx, req, p.cfg.Retries)
		var ex *ExceptionError
		switch {
		case err == nil:
			res := hardware.Result{Status: "ok"}
			for _, v := range resp.Registers() {
				res.Values = append(res.Values, int(v))
			}
			mc.Meter.Finish(cmd, res)
		case errors.As(err, &ex):
			mc.Meter.Finish(cmd, hardware.Result{Status: "exception", Exception: int(ex.Code), Error: err.Error()})
		case errors.Is(err, ErrTimeout), errors.Is(err, ErrCRC):
			status := "timeout"
			if errors.Is(err, ErrCRC) {
				status = "crc_error"
			}
			mc.Meter.Retry(cmd, hardware.Result{Status: status, Error: err.Error()}, p.cfg.CommandAttempts)
			return nil
		default:
			mc.Meter.Abandon(cmd)
			return err
		}
	}
	p.signal() // more may be waiting: come back after the next due poll
	return nil
}
