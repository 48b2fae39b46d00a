package modbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"edgegw/hardware"
	"edgegw/internal/ratelog"
)

var (
	// ErrTimeout: no valid response within the response timeout.
	ErrTimeout = errors.New("no response (timeout)")
	// ErrCRC: a response arrived but its CRC was wrong (and nothing valid followed).
	ErrCRC = errors.New("response with a wrong CRC")
	// ErrSilentConn ends a TCP connection on which requests go unanswered
	// with nothing at all received (see Master.Silent).
	ErrSilentConn = errors.New("no response and nothing received on the connection: closed (half-open or dead peer)")
)

// silentLimit is how many requests in a row (each after its retries) may time
// out on a TCP connection, with not a byte received since the first of them,
// before the connection is taken for dead. One is not enough: one unit behind
// a converter may be off while the others answer.
const silentLimit = 2

// ExceptionError is a Modbus exception response.
type ExceptionError struct {
	Function, Code byte
}

func (e *ExceptionError) Error() string {
	return fmt.Sprintf("modbus exception %d (%s) to function %d", e.Code, exceptionName(e.Code), e.Function)
}

// Gateway reports whether the exception comes from a Modbus gateway on behalf
// of a unit it could not reach (10: gateway path unavailable, 11: gateway
// target device failed to respond): the unit itself gave no answer.
func (e *ExceptionError) Gateway() bool { return e.Code == 10 || e.Code == 11 }

func exceptionName(code byte) string {
	switch code {
	case 1:
		return "illegal function"
	case 2:
		return "illegal data address"
	case 3:
		return "illegal data value"
	case 4:
		return "slave device failure"
	case 5:
		return "acknowledge"
	case 6:
		return "slave device busy"
	case 8:
		return "memory parity error"
	case 10:
		return "gateway path unavailable"
	case 11:
		return "gateway target failed to respond"
	}
	return "unknown"
}

// SilentInterval is the RTU inter-frame gap t3.5: 3.5 character times, and a
// fixed 1.75 ms above 19200 baud (Modbus over serial line, 2.5.1.1).
func SilentInterval(l hardware.Line) time.Duration {
	if l.Baud > 19200 {
		return 1750 * time.Microsecond
	}
	return l.CharTime() * 7 / 2
}

// frameEnd is how long the line must stay quiet after a complete frame with a
// wrong CRC before the master gives up waiting for a valid one. It is longer
// than t3.5 because USB serial adapters deliver bytes in bursts (FTDI: every
// 16 ms).
const frameEnd = 20 * time.Millisecond

// Master runs request/response transactions on one bus or connection, one at
// a time. It is used by one goroutine at a time.
type Master struct {
	conn     *hardware.Conn
	line     hardware.Line
	framing  Framing
	timeout  time.Duration
	t35      time.Duration
	counters *hardware.Counters
	log      *ratelog.Logger

	tid    uint16 // Modbus TCP: transaction id of the last request
	heard  bool   // bytes arrived since the last timed-out request
	silent int    // requests timed out in a row with nothing received (stream conns)

	lastBus time.Time // when the bus was last busy: end of the last frame sent or byte seen
	buf     []byte
	wbuf    []byte
	timer   *time.Timer
}

// NewMaster returns an RTU master on c with the given response timeout
// (counted from the end of the request's wire time). On a stream Conn (RTU
// over TCP) the line has no speed: no silent interval, no wire time.
func NewMaster(c *hardware.Conn, timeout time.Duration) *Master {
	return NewFramedMaster(c, timeout, FramingRTU)
}

// NewFramedMaster returns a master on c with the given framing: FramingRTU
// (NewMaster), or FramingTCP for Modbus TCP on a stream Conn (MBAP header,
// transaction ids; unit ids 0-255).
func NewFramedMaster(c *hardware.Conn, timeout time.Duration, f Framing) *Master {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &Master{conn: c, line: c.Line(), framing: f, timeout: timeout, t35: SilentInterval(c.Line()),
		counters: c.Counters(), log: c.Log(), timer: t,
		buf: make([]byte, 0, 2*MaxADU+chunkMax), wbuf: make([]byte, 0, MaxTCPADU)}
}

// chunkMax bounds one chunk a Conn delivers (hardware's chunkSize).
const chunkMax = 256

// Silent returns ErrSilentConn once silentLimit requests in a row timed out
// (after their retries) on a stream Conn with not a byte received since the
// first of them: the TCP connection is half-open, or the peer accepted it and
// does not serve it. The caller closes the connection and opens a new one.
// On a serial line it is always nil (a silent bus is a silent meter).
func (m *Master) Silent() error {
	if m.conn.Stream() && m.silent >= silentLimit {
		return ErrSilentConn
	}
	return nil
}

// noteOutcome updates the silent-connection count after a transaction.
func (m *Master) noteOutcome(err error) {
	if !errors.Is(err, ErrTimeout) {
		m.silent = 0 // an answer of any kind, or a failure that ends the Conn anyway
		return
	}
	if m.heard {
		m.silent = 0
	}
	m.silent++
	m.heard = false
}

// IsConnError reports whether err ended the port or the run (not a protocol
// outcome of one request).
func IsConnError(err error) bool {
	var ex *ExceptionError
	return err != nil && !errors.Is(err, ErrTimeout) && !errors.Is(err, ErrCRC) && !errors.As(err, &ex)
}

// Transact sends req and returns the response, trying again up to retries
// times after a timeout or CRC error. An exception response is returned with
// an *ExceptionError.
//
// On a stream Conn a transaction that times out counts towards Silent, and
// once Silent reports the connection dead, Transact returns ErrSilentConn
// without sending.
func (m *Master) Transact(ctx context.Context, req Request, retries int) (Response, error) {
	if err := m.Silent(); err != nil {
		return Response{}, err
	}
	for attempt := 0; ; attempt++ {
		resp, err := m.Do(ctx, req)
		if err == nil || IsConnError(err) || attempt >= retries || !(errors.Is(err, ErrTimeout) || errors.Is(err, ErrCRC)) {
			m.noteOutcome(err)
			return resp, err
		}
	}
}

// Exchange is Transact with its own response timeout (a Bus: commissioning
// on a port the caller opened). Its timeouts do not count towards Silent: a
// scan of unit ids nobody answers to is no sign of a dead connection.
func (m *Master) Exchange(ctx context.Context, req Request, timeout time.Duration, retries int) (Response, error) {
	saved, silent, heard := m.timeout, m.silent, m.heard
	m.timeout = timeout
	defer func() { m.timeout, m.silent, m.heard = saved, silent, heard || m.heard }()
	return m.Transact(ctx, req, retries)
}

func (m *Master) garbage(n int) {
	if n > 0 {
		m.counters.GarbageBytes.Add(int64(n))
		m.log.Warn("garbage", "bytes outside any valid Modbus frame skipped", slog.Int("bytes", n))
	}
}

// wait blocks until d passed, collecting stray bytes, or the run ends. It
// returns the chunk that arrived (nil when the timer fired).
func (m *Master) wait(ctx context.Context, d time.Duration) ([]byte, bool, error) {
	m.timer.Reset(d)
	defer m.timer.Stop()
	select {
	case <-ctx.Done():
		return nil, false, ctx.Err()
	case <-m.conn.Done():
		return nil, false, m.conn.Err()
	case b := <-m.conn.Recv():
		m.heard = true
		return b, false, nil
	case <-m.timer.C:
		return nil, true, nil
	}
}

// Do runs one transaction: silent interval, request, response.
func (m *Master) Do(ctx context.Context, req Request) (Response, error) {
	if m.framing == FramingTCP {
		return m.doTCP(ctx, req)
	}
	if err := req.Check(); err != nil {
		return Response{}, err
	}
	// Anything received before the request is no answer to it.
	m.garbage(m.conn.Drain())
	// t3.5 of silence since the bus was last busy; stray bytes restart it.
	for {
		d := time.Until(m.lastBus.Add(m.t35))
		if d <= 0 {
			break
		}
		b, _, err := m.wait(ctx, d)
		if err != nil {
			return Response{}, err
		}
		if b != nil {
			m.garbage(len(b))
			m.lastBus = time.Now()
		}
	}
	m.wbuf = req.Encode(m.wbuf[:0])
	if err := m.conn.Write(m.wbuf); err != nil {
		return Response{}, err
	}
	txEnd := time.Now().Add(m.line.WireTime(len(m.wbuf)))
	m.lastBus = txEnd
	deadline := txEnd.Add(m.timeout)
	quietUntil := time.Time{} // set when a complete frame with a bad CRC is the last thing seen
	m.buf = m.buf[:0]
	var s Scan
	for {
		until := deadline
		if !quietUntil.IsZero() && quietUntil.Before(until) {
			until = quietUntil
		}
		b, fired, err := m.wait(ctx, time.Until(until))
		if err != nil {
			return Response{}, err
		}
		if fired {
			if time.Now().Before(deadline) && quietUntil.IsZero() {
				continue
			}
			break
		}
		m.lastBus = time.Now()
		m.buf = append(m.buf, b...)
		if len(m.buf) > 2*MaxADU { // longer than any frame: keep the newest MaxADU bytes
			drop := len(m.buf) - MaxADU
			m.counters.Oversized.Add(1)
			m.garbage(drop)
			m.buf = append(m.buf[:0], m.buf[drop:]...)
		}
		s = ScanResponse(m.buf, req)
		if s.Status == Found {
			m.garbage(s.Start + len(m.buf) - s.End)
			m.counters.WrongSlave.Add(int64(s.WrongSlave))
			m.counters.Frames.Add(1)
			if s.Resp.Exception != 0 {
				m.counters.Exceptions.Add(1)
				return s.Resp, &ExceptionError{Function: req.Function, Code: s.Resp.Exception}
			}
			return s.Resp, nil
		}
		if s.BadCRC > 0 && !s.Partial {
			quietUntil = m.lastBus.Add(max(frameEnd, m.t35))
		} else {
			quietUntil = time.Time{}
		}
	}
	m.garbage(len(m.buf))
	if s.WrongSlave > 0 {
		m.counters.WrongSlave.Add(int64(s.WrongSlave))
		m.log.Warn("wrong_slave", "Modbus response from another slave address skipped",
			slog.Int("asked", int(req.Slave)))
	}
	if s.BadCRC > 0 {
		m.counters.CRCErrors.Add(1)
		m.log.Warn("crc", "Modbus response with a wrong CRC", slog.Int("slave", int(req.Slave)))
		return Response{}, ErrCRC
	}
	m.counters.Timeouts.Add(1)
	return Response{}, ErrTimeout
}

// doTCP runs one Modbus TCP transaction: the request with the next
// transaction id, then ADUs split from the stream until the response to it.
// ADUs with another transaction id (late answers to a request that timed
// out) or another unit id are counted and skipped, as are ADUs whose PDU is
// no response to the request (parse_errors). Bytes stay buffered across
// transactions: a late answer cut between two reads still splits cleanly.
func (m *Master) doTCP(ctx context.Context, req Request) (Response, error) {
	if err := req.CheckPDU(); err != nil {
		return Response{}, err
	}
	m.tid++
	m.wbuf = req.EncodeTCP(m.wbuf[:0], m.tid)
	if err := m.conn.Write(m.wbuf); err != nil {
		return Response{}, err
	}
	deadline := time.Now().Add(m.timeout)
	for {
		// Every complete ADU already received.
		for {
			adu, n, err := NextADU(m.buf)
			if err != nil {
				m.garbage(len(m.buf))
				m.buf = m.buf[:0]
				return Response{}, err
			}
			if n == 0 {
				break
			}
			resp, found := m.matchADU(adu, req)
			m.buf = m.buf[:copy(m.buf, m.buf[n:])]
			if found {
				m.counters.Frames.Add(1)
				if resp.Exception != 0 {
					m.counters.Exceptions.Add(1)
					return resp, &ExceptionError{Function: req.Function, Code: resp.Exception}
				}
				return resp, nil
			}
		}
		b, fired, err := m.wait(ctx, time.Until(deadline))
		if err != nil {
			return Response{}, err
		}
		if fired {
			if time.Now().Before(deadline) {
				continue
			}
			m.counters.Timeouts.Add(1)
			return Response{}, ErrTimeout
		}
		m.buf = append(m.buf, b...)
	}
}

// matchADU reports whether adu is the response to req (the current
// transaction), counting and logging what it is not.
func (m *Master) matchADU(adu ADU, req Request) (Response, bool) {
	switch {
	case adu.Transaction != m.tid:
		m.counters.WrongTransaction.Add(1)
		m.log.Warn("wrong_transaction", "Modbus TCP response with another transaction id skipped",
			slog.Int("expected", int(m.tid)), slog.Int("got", int(adu.Transaction)))
		return Response{}, false
	case adu.Unit() != req.Slave:
		m.counters.WrongSlave.Add(1)
		m.log.Warn("wrong_slave", "Modbus TCP response from another unit id skipped",
			slog.Int("asked", int(req.Slave)), slog.Int("got", int(adu.Unit())))
		return Response{}, false
	}
	resp, ok := MatchBody(adu.Body, req)
	if !ok {
		m.counters.ParseErrors.Add(1)
		m.log.Warn("malformed", "Modbus TCP response that does not answer the request skipped",
			slog.Int("unit", int(req.Slave)), slog.Int("function", int(req.Function)))
	}
	return resp, ok
}
