// Command bench-subs measures what large subscription sets cost edgegw next to
// Debian's mosquitto (issue 14 section 3; docs/benchmarks.md "Large
// subscription sets"; `make bench-subs`):
//
//	subscribe  one persistent v3.1.1 session sends -subs SUBSCRIBE packets, one
//	           filter each, waiting for each SUBACK (a dashboard subscribing
//	           meter by meter): wall time, broker CPU, store bytes written
//	qos2       a persistent session holding N subscriptions (-qos2-subs, none
//	           of them matching) publishes QoS 2 messages one flow at a time
//	           for -duration: messages per second, store bytes written per message
//
// edgegw runs with store.durability batch (the default: commits every 100 ms)
// and strict (a commit before each PUBREC and SUBACK of a persistent session).
// Bytes written are edgegw's own counter (pages its commits wrote x page
// size, GET /api/v1/store on the admin socket, read after the next commit).
// mosquitto writes nothing until its autosave (30 min) or shutdown, so its
// column gives the size of the snapshot it writes at shutdown. CPU is
// utime+stime of the broker process from /proc/<pid>/stat. Every broker is
// started fresh in its own directory and stopped with SIGTERM.
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

var (
	binFlag  = flag.String("bin", "bin/edgegw", "edgegw binary (make build)")
	subsN    = flag.Int("subs", 10000, "SUBSCRIBE packets in the subscribe scenario")
	qos2Subs = flag.String("qos2-subs", "2000,10000", "subscriptions held by the publishing session, per qos2 run")
	duration = flag.Duration("duration", 5*time.Second, "length of each qos2 run")
	brokers  = flag.String("brokers", "edgegw,edgegw-strict,mosquitto", "brokers to measure: edgegw (store.durability batch, the default), edgegw-strict, mosquitto")
	dirFlag  = flag.String("dir", "", "working directory (default: a new one under $TMPDIR)")
)

// live is the broker running now, killed if the run is interrupted; tmpRoot
// is the directory run created, removed then too.
var (
	live    atomic.Pointer[broker]
	tmpRoot atomic.Pointer[string]
)

func main() {
	flag.Parse()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		if b := live.Load(); b != nil && b.cmd != nil {
			_ = b.cmd.Process.Kill()
			_ = os.RemoveAll(b.dir)
		}
		if d := tmpRoot.Load(); d != nil {
			_ = os.RemoveAll(*d)
		}
		os.Exit(130)
	}()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-subs:", err)
		os.Exit(1)
	}
}

func run() error {
	root := *dirFlag
	if root == "" {
		d, err := os.MkdirTemp("", "edgegw-bench-subs-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		tmpRoot.Store(&d)
		root = d
	}
	fmt.Printf("%-10s %-22s %10s %10s %14s %16s\n", "broker", "scenario", "seconds", "cpu_s", "msg/s", "bytes_written")
	for _, kind := range strings.Split(*brokers, ",") {
		if err := scSubscribe(kind, root); err != nil {
			return err
		}
		for _, f := range strings.Split(*qos2Subs, ",") {
			n, err := strconv.Atoi(f)
			if err != nil {
				return fmt.Errorf("-qos2-subs: %w", err)
			}
			if err := scQoS2(kind, root, n); err != nil {
				return err
			}
		}
	}
	return nil
}

func scSubscribe(kind, root string) error {
	b, err := start(kind, root)
	if err != nil {
		return err
	}
	defer b.stop()
	c, err := dial(b.addr, "dash", false)
	if err != nil {
		return err
	}
	defer c.close()
	w0, cpu0, t0 := b.written(), cpuTicks(b.pid()), time.Now()
	for i := range *subsN {
		if err := c.subscribe(uint16(i%65535+1), []string{fmt.Sprintf("site/meter/%d/value", i)}); err != nil {
			return fmt.Errorf("%s: subscribe %d: %w", kind, i, err)
		}
	}
	secs := time.Since(t0).Seconds()
	cpu := float64(cpuTicks(b.pid())-cpu0) / 100
	c.disconnect()
	written := b.written() - w0
	note := ""
	if kind == "mosquitto" {
		written, note = b.stopSnapshot(), " (shutdown snapshot)"
	}
	fmt.Printf("%-10s %-22s %10.2f %10.2f %14s %16s\n", kind, fmt.Sprintf("subscribe x%d", *subsN), secs, cpu, "-",
		fmt.Sprint(written)+note)
	return nil
}

func scQoS2(kind, root string, subs int) error {
	b, err := start(kind, root)
	if err != nil {
		return err
	}
	defer b.stop()
	c, err := dial(b.addr, "pub", false)
	if err != nil {
		return err
	}
	defer c.close()
	const per = 100 // filters per SUBSCRIBE while setting up
	for i := 0; i < subs; i += per {
		var fs []string
		for j := i; j < min(i+per, subs); j++ {
			fs = append(fs, fmt.Sprintf("site/meter/%d/value", j))
		}
		if err := c.subscribe(uint16(i/per%65535+1), fs); err != nil {
			return fmt.Errorf("%s: subscribe: %w", kind, err)
		}
	}
	w0, cpu0, t0 := b.written(), cpuTicks(b.pid()), time.Now()
	n := 0
	payload := make([]byte, 64)
	for time.Since(t0) < *duration {
		if err := c.publishQoS2(uint16(n%65535+1), "bench/qos2", payload); err != nil {
			return fmt.Errorf("%s: publish %d: %w", kind, n, err)
		}
		n++
	}
	secs := time.Since(t0).Seconds()
	cpu := float64(cpuTicks(b.pid())-cpu0) / 100
	per1 := "-"
	if kind != "mosquitto" && n > 0 {
		per1 = fmt.Sprintf("%d/msg", (b.written()-w0)/int64(n))
	} else if kind == "mosquitto" {
		c.disconnect()
		per1 = fmt.Sprintf("0 (snapshot %d)", b.stopSnapshot())
	}
	fmt.Printf("%-10s %-22s %10.2f %10.2f %14.0f %16s\n", kind, fmt.Sprintf("qos2, %d subs", subs), secs, cpu, float64(n)/secs, per1)
	return nil
}

// broker is one broker process in its own directory.
type broker struct {
	kind, dir, addr string
	cmd             *exec.Cmd
	exited          chan error
	http            *http.Client
}

func start(kind, root string) (*broker, error) {
	dir, err := os.MkdirTemp(root, kind+"-")
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	_ = l.Close()
	b := &broker{kind: kind, dir: dir, addr: addr}
	conf := filepath.Join(dir, "broker.conf")
	var args []string
	switch kind {
	case "edgegw", "edgegw-strict":
		limit := ""
		if out, err := exec.Command(*binFlag, "config", "default").Output(); err == nil && strings.Contains(string(out), "max_subscriptions:") {
			limit = "\n  max_subscriptions: 100000"
		}
		durability := "batch"
		if kind == "edgegw-strict" {
			durability = "strict"
		}
		text := fmt.Sprintf("data_dir: %s/data\nlog:\n  level: warn\nlisteners:\n  - name: local\n    address: %s\nstore:\n  durability: %s\nsessions:\n  max_queued: 1000000%s\n",
			dir, addr, durability, limit)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			return nil, err
		}
		args = []string{*binFlag, "run", "-c", conf}
		sock := filepath.Join(dir, "data", "admin.sock")
		b.http = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
	case "mosquitto":
		_, port, _ := net.SplitHostPort(addr)
		text := fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\nmax_queued_messages 0\nlog_dest none\nuser root\n", port, dir)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			return nil, err
		}
		args = []string{"mosquitto", "-c", conf}
	default:
		return nil, fmt.Errorf("unknown broker %q", kind)
	}
	b.cmd = exec.Command(args[0], args[1:]...)
	if kind != "mosquitto" { // mosquitto only warns that it runs as root
		b.cmd.Stderr = os.Stderr
	}
	if err := b.cmd.Start(); err != nil {
		return nil, err
	}
	b.exited = make(chan error, 1)
	go func() { b.exited <- b.cmd.Wait() }()
	live.Store(b)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := dial(addr, "probe", true); err == nil {
			c.disconnect()
			c.close()
			break
		}
		if time.Now().After(deadline) {
			b.stop()
			return nil, fmt.Errorf("%s did not serve within 10s", kind)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return b, nil
}

func (b *broker) pid() int { return b.cmd.Process.Pid }

// stop sends SIGTERM, waits for the exit and removes the directory.
func (b *broker) stop() {
	if b.cmd != nil {
		_ = b.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-b.exited:
		case <-time.After(time.Minute):
			_ = b.cmd.Process.Kill()
			<-b.exited
		}
		b.cmd = nil
	}
	_ = os.RemoveAll(b.dir)
}

// stopSnapshot stops mosquitto and returns the size of the snapshot it wrote.
func (b *broker) stopSnapshot() int64 {
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	<-b.exited
	b.cmd = nil
	fi, err := os.Stat(filepath.Join(b.dir, "mosquitto.db"))
	if err != nil {
		return 0
	}
	return fi.Size()
}

// written returns edgegw's store bytes_written once the changes made so far
// are committed (the commit interval is 100 ms; the counter is read until it
// holds still for 300 ms). 0 for mosquitto.
func (b *broker) written() int64 {
	if b.http == nil {
		return 0
	}
	last := int64(-1)
	for range 100 {
		time.Sleep(150 * time.Millisecond)
		v, err := b.storeBytes()
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench-subs: admin API:", err)
			return 0
		}
		if v == last {
			return v
		}
		last = v
	}
	return last
}

func (b *broker) storeBytes() (int64, error) {
	resp, err := b.http.Get("http://admin/api/v1/store")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var st struct {
		BytesWritten *int64 `json:"bytes_written"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return 0, err
	}
	if st.BytesWritten == nil {
		return 0, errors.New("no bytes_written in /api/v1/store (binary too old)")
	}
	return *st.BytesWritten, nil
}

// cpuTicks returns utime+stime of pid in clock ticks (USER_HZ = 100).
func cpuTicks(pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st
}

// client is a minimal MQTT 3.1.1 client: one flow at a time.
type client struct {
	conn net.Conn
	r    *bufio.Reader
}

func dial(addr, id string, clean bool) (*client, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := &client{conn: conn, r: bufio.NewReader(conn)}
	flags := byte(0)
	if clean {
		flags = 2
	}
	body := append([]byte{0, 4, 'M', 'Q', 'T', 'T', 4, flags, 0, 60}, str(id)...)
	if err := c.write(0x10, body); err != nil {
		c.close()
		return nil, err
	}
	typ, b, err := c.read()
	if err != nil || typ != 2 || len(b) < 2 || b[1] != 0 {
		c.close()
		return nil, fmt.Errorf("CONNACK %x %x: %v", typ, b, err)
	}
	return c, nil
}

func str(s string) []byte { return append(binary.BigEndian.AppendUint16(nil, uint16(len(s))), s...) }

func (c *client) write(first byte, body []byte) error {
	pk := []byte{first}
	for n := len(body); ; {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 128
		}
		pk = append(pk, d)
		if n == 0 {
			break
		}
	}
	_ = c.conn.SetWriteDeadline(time.Now().Add(time.Minute))
	_, err := c.conn.Write(append(pk, body...))
	return err
}

func (c *client) read() (typ byte, body []byte, err error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(time.Minute))
	first, err := c.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, shift := 0, 0
	for {
		d, err := c.r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n |= int(d&127) << shift
		shift += 7
		if d&128 == 0 {
			break
		}
	}
	body = make([]byte, n)
	_, err = io.ReadFull(c.r, body)
	return first >> 4, body, err
}

// subscribe sends one SUBSCRIBE (QoS 1 for every filter) and waits for its SUBACK.
func (c *client) subscribe(pid uint16, filters []string) error {
	body := binary.BigEndian.AppendUint16(nil, pid)
	for _, f := range filters {
		body = append(append(body, str(f)...), 1)
	}
	if err := c.write(0x82, body); err != nil {
		return err
	}
	typ, b, err := c.read()
	if err != nil {
		return err
	}
	if typ != 9 || len(b) != 2+len(filters) {
		return fmt.Errorf("want SUBACK, got type %d (%d bytes)", typ, len(b))
	}
	for _, rc := range b[2:] {
		if rc >= 0x80 {
			return fmt.Errorf("SUBACK refused a filter (0x%02x)", rc)
		}
	}
	return nil
}

// publishQoS2 runs one QoS 2 flow: PUBLISH, PUBREC, PUBREL, PUBCOMP.
func (c *client) publishQoS2(pid uint16, topic string, payload []byte) error {
	body := append(append(str(topic), byte(pid>>8), byte(pid)), payload...)
	if err := c.write(0x34, body); err != nil {
		return err
	}
	if typ, _, err := c.read(); err != nil || typ != 5 {
		return fmt.Errorf("want PUBREC, got type %d: %v", typ, err)
	}
	if err := c.write(0x62, []byte{byte(pid >> 8), byte(pid)}); err != nil {
		return err
	}
	if typ, _, err := c.read(); err != nil || typ != 7 {
		return fmt.Errorf("want PUBCOMP, got type %d: %v", typ, err)
	}
	return nil
}

func (c *client) disconnect() { _ = c.write(0xe0, nil) }
func (c *client) close()      { _ = c.conn.Close() }
