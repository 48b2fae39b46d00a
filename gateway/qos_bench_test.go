package gateway_test

// QoS benchmarks of the broker path alone, for CPU and heap profiles:
//
//	go test -run '^$' -bench 'BenchmarkQoS' -benchtime 200000x -cpuprofile cpu.out -memprofile mem.out ./gateway/
//	go tool pprof -top -nodecount 40 gateway.test cpu.out
//
// An in-process gateway (batch durability, data_dir on disk) gets 64-byte
// PUBLISHes from 4 publishers, each keeping up to 64 QoS 1 PUBLISHes
// unacknowledged (or sending QoS 0 back to back), for one clean-session
// subscriber that acknowledges everything, as scripts/bench's qos0/qos1
// scenarios do: the publishers keep publishing until the subscriber has had
// b.N messages, so the subscriber's queue builds up as it does there when the
// broker accepts faster than it delivers. The clients are raw MQTT 3.1.1 writers on loopback that encode
// nothing per message (a pre-encoded PUBLISH with its packet id patched), so the
// profile is the broker's. One op is one message received by the subscriber.
// cpu-µs/msg is the process's CPU time (broker and clients) per message, which
// varies less than msgs/s on a shared machine.

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func BenchmarkQoS1Path(b *testing.B) { benchQoSPath(b, 1, "batch") }

func BenchmarkQoS1PathStrict(b *testing.B) { benchQoSPath(b, 1, "strict") }

func BenchmarkQoS0Path(b *testing.B) { benchQoSPath(b, 0, "batch") }

// BenchmarkQoS0PathExact and BenchmarkQoS1PathExact do a fixed amount of work
// per op, for instruction counts (make bench-instructions runs them under
// callgrind, which runs the process about 50 times slower): each publisher
// sends exactly its share of b.N messages, and at most exactWindow messages are
// published and not yet received, so the subscriber's queue never nears a
// limit and nothing is dropped or held by flow control, however slow the
// machine. Otherwise as BenchmarkQoS0Path and BenchmarkQoS1Path.
func BenchmarkQoS0PathExact(b *testing.B) { benchQoSPathExact(b, 0, "batch", true) }

func BenchmarkQoS1PathExact(b *testing.B) { benchQoSPathExact(b, 1, "batch", true) }

const exactWindow = 256

func benchQoSPath(b *testing.B, qos byte, mode string) { benchQoSPathExact(b, qos, mode, false) }

func benchQoSPathExact(b *testing.B, qos byte, mode string, exact bool) {
	b.StopTimer()
	g, _ := startBenchGateway(b, mode)
	addr := g.Addr("local")
	const pubs, pubWindow = 4, 64

	sub := rawBenchConn(b, addr, "qos-sub")
	sub.write(append([]byte{0x82, byte(2 + 2 + 5 + 1), 0, 1, 0, 5}, append([]byte("t/qos"), qos)...))
	if typ, _ := sub.next(b); typ != 9 {
		b.Fatalf("no SUBACK: packet type %d", typ)
	}
	var got atomic.Int64
	want := int64(b.N / pubs * pubs)
	done := make(chan struct{})
	// window holds a token for each message published and not yet received
	// (exact only).
	window := make(chan struct{}, exactWindow)
	go func() {
		defer close(done)
		ack := make([]byte, 0, 4096)
		for got.Load() < want {
			typ, body := sub.next(b)
			if body == nil && typ == 0 {
				return // next failed the benchmark
			}
			if typ != 3 {
				continue
			}
			if exact {
				<-window
			}
			if qos == 1 {
				pid := body[2+binary.BigEndian.Uint16(body):]
				ack = append(ack, 0x40, 2, pid[0], pid[1])
			}
			got.Add(1)
			if sub.r.Buffered() == 0 || len(ack) > 4000 {
				sub.write(ack)
				ack = ack[:0]
			}
		}
		sub.write(ack)
	}()

	conns := make([]*rawBench, pubs)
	for i := range conns {
		conns[i] = rawBenchConn(b, addr, fmt.Sprintf("qos-pub-%d", i))
	}
	// PUBLISH t/qos, 64-byte payload; QoS 1 carries a packet id at pidAt.
	pk := []byte{0x30 | qos<<1, 0, 0, 5, 't', '/', 'q', 'o', 's'}
	pidAt := len(pk)
	if qos == 1 {
		pk = append(pk, 0, 0)
	}
	pk = append(pk, make([]byte, 64)...)
	pk[1] = byte(len(pk) - 2)

	b.ReportAllocs()
	b.StartTimer()
	start, cpu0 := time.Now(), processCPU()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slots := make(chan struct{}, pubWindow)
			if qos == 1 {
				go func() {
					for {
						typ, _, err := c.read()
						if err != nil {
							return
						}
						if typ == 4 {
							<-slots
						}
					}
				}()
			}
			w := bufio.NewWriterSize(c.conn, 64<<10)
			share := int(want / pubs)
			for i := 0; exact && i < share || !exact && got.Load() < want; i++ {
				if exact {
					select {
					case window <- struct{}{}:
					default:
						_ = w.Flush()
						window <- struct{}{}
					}
				}
				if qos == 1 {
					select {
					case slots <- struct{}{}:
					default:
						_ = w.Flush()
						select {
						case slots <- struct{}{}:
						case <-done:
							return
						}
					}
					binary.BigEndian.PutUint16(pk[pidAt:], uint16(i%65535+1))
				}
				_, _ = w.Write(pk)
			}
			_ = w.Flush()
		}()
	}
	select {
	case <-done:
	case <-time.After(benchTimeout):
		b.Fatalf("subscriber got %d of %d messages in %s", got.Load(), want, benchTimeout)
	}
	b.StopTimer()
	b.ReportMetric(float64(want)/time.Since(start).Seconds(), "msgs/s")
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(want), "cpu-µs/msg")
	wg.Wait()
}

// processCPU is the user plus system CPU time of the process so far: broker and
// test clients together (the clients' share is small and the same for every
// variant).
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rawBench is a connected MQTT 3.1.1 client (clean session) for the QoS
// benchmarks; its reads fail the benchmark on error, after a deadline.
type rawBench struct {
	conn net.Conn
	r    *bufio.Reader
	mu   sync.Mutex
	buf  []byte
}

func rawBenchConn(b *testing.B, addr, id string) *rawBench {
	b.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	c := &rawBench{conn: conn, r: bufio.NewReaderSize(conn, 64<<10)}
	body := append([]byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 0, 0, byte(len(id))}, id...)
	c.write(append([]byte{0x10, byte(len(body))}, body...))
	if typ, _ := c.next(b); typ != 2 {
		b.Fatalf("no CONNACK: packet type %d", typ)
	}
	return c
}

func (c *rawBench) write(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, _ = c.conn.Write(p)
}

func (c *rawBench) next(b *testing.B) (byte, []byte) {
	typ, body, err := c.read()
	if err != nil {
		b.Errorf("read: %v", err)
		return 0, nil
	}
	return typ, body
}

// read returns the next packet's type and body (valid until the next read).
func (c *rawBench) read() (byte, []byte, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(benchTimeout))
	h, err := c.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, err := binary.ReadUvarint(c.r)
	if err != nil {
		return 0, nil, err
	}
	if uint64(cap(c.buf)) < n {
		c.buf = make([]byte, n)
	}
	c.buf = c.buf[:n]
	if _, err := io.ReadFull(c.r, c.buf); err != nil {
		return 0, nil, err
	}
	return h >> 4, c.buf, nil
}

// BenchmarkIdleConnections opens b.N idle MQTT 3.1.1 connections (clean
// session, keep alive 0, no subscriptions) to an in-process gateway and
// reports what each one costs the process: Go heap in use and goroutine
// stacks (runtime.MemStats after a GC), and goroutines. The test's own client
// side (a net.Conn each, no goroutine) counts in the heap too.
//
//	go test -run '^$' -bench BenchmarkIdleConnections -benchtime 1000x ./gateway/
func BenchmarkIdleConnections(b *testing.B) {
	g, _ := startBenchGateway(b, "batch")
	addr := g.Addr("local")
	conns := make([]net.Conn, 0, b.N)
	before := memNow()
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for range b.N {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
	}
	b.ResetTimer()
	for i, c := range conns {
		id := fmt.Sprintf("idle-%d", i)
		body := append([]byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 0, 0, byte(len(id))}, id...)
		if _, err := c.Write(append([]byte{0x10, byte(len(body))}, body...)); err != nil {
			b.Fatal(err)
		}
		var ack [4]byte
		_ = c.SetReadDeadline(time.Now().Add(benchTimeout))
		if _, err := io.ReadFull(c, ack[:]); err != nil || ack[0] != 0x20 {
			b.Fatalf("CONNACK %d: %v %x", i, err, ack)
		}
	}
	b.StopTimer()
	time.Sleep(200 * time.Millisecond) // sessions established, senders started
	after := memNow()
	n := float64(b.N)
	b.ReportMetric(float64(after.heap-before.heap)/n, "heap-B/conn")
	b.ReportMetric(float64(after.stack-before.stack)/n, "stack-B/conn")
	b.ReportMetric(float64(after.goroutines-before.goroutines)/n, "goroutines/conn")
}

type memReading struct{ heap, stack, goroutines int64 }

func memNow() memReading {
	for range 4 { // each GC may halve a goroutine stack that uses under a quarter of it
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memReading{int64(ms.HeapInuse), int64(ms.StackInuse), int64(runtime.NumGoroutine())}
}
