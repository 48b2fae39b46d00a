package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/eclipse/paho.golang/paho"
)

// fullDisk is one way to make the store's disk full.
type fullDisk interface {
	name() string
	dataDir() string
	maxBytes() int64 // store.max_bytes for the configuration, 0: default
	fill(t *testing.T)
	// problem is what the gateway's log must say about the failed commits.
	problem() string
}

// tmpfsDisk is a 4 MiB tmpfs holding data_dir, filled by a filler file.
//
// Why the filler takes all free space: bbolt grows edgegw.db by ftruncate to its
// next mmap size (doubling from 32 KiB up to 1 GiB steps). On tmpfs that makes a
// sparse file and never fails, so the size of a growth step does not matter; what
// fails is the first write of a page into the hole (pwrite: ENOSPC). Pages the
// file already holds (meta pages, freed pages bbolt reuses) can still be written.
// With every free block taken by the filler, the first commit that needs a page
// above the file's high-water mark fails; QoS 1 messages of 1 KiB for an offline
// subscriber get there within a few dozen messages.
type tmpfsDisk struct{ dir string }

func (d *tmpfsDisk) name() string    { return "tmpfs (size=4m, filled by a filler file)" }
func (d *tmpfsDisk) dataDir() string { return filepath.Join(d.dir, "data") }
func (d *tmpfsDisk) maxBytes() int64 { return 0 }
func (d *tmpfsDisk) problem() string { return "no space left on device" }
func (d *tmpfsDisk) filler() string  { return filepath.Join(d.dir, "filler") }

// mountTmpfs mounts a tmpfs under a new temporary directory; the cleanup
// unmounts it (registered before the gateway starts, so it runs after the
// gateway's cleanup has killed it).
func mountTmpfs(t *testing.T) (*tmpfsDisk, error) {
	dir := filepath.Join(t.TempDir(), "fs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size=4m,mode=0755"); err != nil {
		return nil, fmt.Errorf("mount tmpfs on %s: %w", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
			_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return &tmpfsDisk{dir: dir}, nil
}

// fill writes the filler until the filesystem refuses more: large writes first,
// then single pages, so that not even one free block is left.
func (d *tmpfsDisk) fill(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(d.filler(), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, chunk := range []int{256 << 10, 4 << 10, 512} {
		buf := bytes.Repeat([]byte{0xf1}, chunk)
		for {
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("filler: %v", err)
				}
				break
			}
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(d.dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Bavail != 0 {
		t.Fatalf("filesystem still has %d free blocks after filling", st.Bavail)
	}
	fi, _ := f.Stat()
	t.Logf("filler: %d bytes, no free block left", fi.Size())
}

func (d *tmpfsDisk) free(t *testing.T) {
	t.Helper()
	if err := os.Remove(d.filler()); err != nil {
		t.Fatal(err)
	}
}

// capDisk is the fallback when mounting is not permitted: store.max_bytes set
// low, so the store refuses durable work that would take it past the cap.
type capDisk struct{ dir string }

// capBytes: the store admits a message only while the pages in use plus what
// was appended since (each entry its size plus 80 bytes) stay under it: about
// 120 messages of 1 KiB for the one offline subscriber.
const capBytes = 256 << 10

func (d *capDisk) name() string {
	return fmt.Sprintf("store.max_bytes %d (mounting a tmpfs was not possible or not chosen)", capBytes)
}
func (d *capDisk) dataDir() string { return filepath.Join(d.dir, "data") }
func (d *capDisk) maxBytes() int64 { return capBytes }
func (d *capDisk) fill(*testing.T) {} // the publishes themselves fill it
func (d *capDisk) problem() string { return "store.max_bytes" }

// fileSize is the size of the store file, -1 if it cannot be read.
func (d *capDisk) fileSize() int64 {
	st, err := os.Stat(filepath.Join(d.dataDir(), "edgegw.db"))
	if err != nil {
		return -1
	}
	return st.Size()
}

// TestFullDisk fills the store's disk while a v5 publisher sends QoS 1 messages
// for an offline persistent subscriber, in strict durability: the publish that
// cannot be stored gets PUBACK 0x97 and the log names the problem, live QoS 0
// traffic keeps flowing, nothing already stored is lost, and once space returns
// QoS 1 is accepted again without a restart.
//
// Path: a 4 MiB tmpfs (needs CAP_SYS_ADMIN) or, when mounting is refused, the
// store.max_bytes cap. EDGEGW_FULLDISK=tmpfs|max_bytes forces one.
func TestFullDisk(t *testing.T) {
	var disk fullDisk
	switch mode := os.Getenv("EDGEGW_FULLDISK"); mode {
	case "", "tmpfs":
		d, err := mountTmpfs(t)
		if err == nil {
			disk = d
			break
		}
		if mode == "tmpfs" {
			t.Fatalf("EDGEGW_FULLDISK=tmpfs: %v", err)
		}
		t.Logf("%v; falling back to store.max_bytes", err)
		disk = &capDisk{dir: t.TempDir()}
	case "max_bytes":
		disk = &capDisk{dir: t.TempDir()}
	default:
		t.Fatalf("EDGEGW_FULLDISK=%q: want tmpfs or max_bytes", mode)
	}
	t.Logf("full-disk path: %s", disk.name())

	addr := freeAddr(t)
	cfg := gwConfig{DataDir: disk.dataDir(), Addr: addr, Durability: "strict", MaxBytes: disk.maxBytes()}.write(t)
	gw := startGW(t, cfg, addr)

	// The offline persistent subscriber.
	connectSub := func(clean bool) (*paho.Client, bool, chan string) {
		t.Helper()
		msgs := make(chan string, 100000)
		c, ca, err := dialV5(addr, &paho.Connect{ClientID: "full-sub", CleanStart: clean,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}},
			func(m *paho.Publish) { msgs <- string(m.Payload) })
		if err != nil {
			t.Fatalf("connect full-sub: %v", err)
		}
		return c, ca.SessionPresent, msgs
	}
	sub, _, _ := connectSub(true)
	if err := subscribeV5(sub, "full/#", 1); err != nil {
		t.Fatal(err)
	}
	closeV5(sub)

	// The live QoS 0 pair, no session state.
	liveMsgs := make(chan string, 100)
	liveSub, _, err := dialV5(addr, &paho.Connect{ClientID: "live-sub", CleanStart: true},
		func(m *paho.Publish) { liveMsgs <- string(m.Payload) })
	if err != nil {
		t.Fatal(err)
	}
	defer closeV5(liveSub)
	if err := subscribeV5(liveSub, "live/#", 0); err != nil {
		t.Fatal(err)
	}
	livePub, _, err := dialV5(addr, &paho.Connect{ClientID: "live-pub", CleanStart: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeV5(livePub)
	liveSeq := 0
	checkLive := func(when string) {
		t.Helper()
		liveSeq++
		want := fmt.Sprintf("live-%d", liveSeq)
		if _, err := publishV5(livePub, "live/x", 0, []byte(want)); err != nil {
			t.Fatalf("%s: QoS 0 publish: %v", when, err)
		}
		select {
		case got := <-liveMsgs:
			if got != want {
				t.Errorf("%s: live message %q, want %q", when, got, want)
			}
		case <-timeout():
			t.Fatalf("%s: live QoS 0 message not delivered", when)
		}
	}
	checkLive("before the disk is full")

	pub, _, err := dialV5(addr, &paho.Connect{ClientID: "full-pub", CleanStart: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeV5(pub)
	var acked, refused []string
	seq := 0
	publish := func() byte {
		t.Helper()
		seq++
		payload := fmt.Sprintf("m%05d:", seq)
		payload += strings.Repeat("x", 1024-len(payload))
		rc, err := publishV5(pub, "full/data", 1, []byte(payload))
		if err != nil {
			t.Fatalf("QoS 1 publish %d: %v", seq, err)
		}
		switch {
		case rc < 0x80:
			acked = append(acked, payload)
		case rc == 0x97:
			refused = append(refused, payload)
		default:
			t.Fatalf("QoS 1 publish %d: PUBACK reason %#x, want 0x00 or 0x97", seq, rc)
		}
		return rc
	}

	// Stored while there is space.
	for range 20 {
		if rc := publish(); rc != 0 {
			t.Fatalf("publish %d before the disk is full: reason %#x", seq, rc)
		}
	}

	disk.fill(t)
	storedBefore := len(acked)
	for publish() != 0x97 {
		if seq > 20000 {
			t.Fatalf("%d messages of 1 KiB accepted on a full disk, none refused with 0x97", seq)
		}
	}
	t.Logf("first refusal (0x97) at message %d; %d accepted after the disk was filled", seq, len(acked)-storedBefore)
	// Durable work stays refused while the disk is full.
	if rc := publish(); rc != 0x97 {
		t.Errorf("publish after the first refusal: reason %#x, want 0x97", rc)
	}
	wantLine := "store commit failed" // the disk refused a write
	if _, ok := disk.(*capDisk); ok {
		wantLine = `msg="store full` // the cap is admission control: commits go on (not the refused publish's error="store full: ...")
	}
	if line, ok := gw.waitLog(wantLine); !ok || !strings.Contains(line, disk.problem()) || !strings.Contains(line, "level=ERROR") {
		t.Errorf("log: want an ERROR line %q naming %q, got %q", wantLine, disk.problem(), line)
	}
	if line, ok := gw.waitLog("publish refused"); !ok || !strings.Contains(line, "client=full-pub") {
		t.Errorf("log: want a \"publish refused\" line naming the client, got %q", line)
	}
	checkLive("while the disk is full")

	// Space returns.
	drained := 0 // acked[:drained] were delivered and acknowledged before the restart
	switch d := disk.(type) {
	case *tmpfsDisk:
		d.free(t)
	case *capDisk:
		// The only way space returns under the cap: the subscriber drains its queue.
		sub, present, msgs := connectSub(false)
		if !present {
			t.Fatal("full-sub: session not present")
		}
		checkDelivered(t, "full-sub (draining to free space)", msgs, acked)
		closeV5(sub)
		drained = len(acked)
	}
	if _, ok := gw.waitLog("store writable again"); !ok {
		t.Fatalf("the store did not become writable within %v after space returned", waitTimeout)
	}
	// "store writable again" is logged by the commit that cleared the error, so
	// the next publish must be accepted.
	for i := range 10 {
		if rc := publish(); rc != 0 {
			t.Fatalf("publish %d after space returned: reason %#x, want 0x00", i, rc)
		}
	}
	checkLive("after space returned")
	t.Logf("acked %d, refused %d", len(acked), len(refused))

	// Nothing stored is damaged: a clean restart reads the store back and the
	// subscriber receives every acknowledged message.
	closeV5(pub)
	closeV5(livePub)
	closeV5(liveSub)
	if code := gw.stop(); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0", code)
	}
	gw = startGW(t, cfg, addr)
	if lines := gw.grep("is damaged"); len(lines) > 0 {
		t.Fatalf("store damaged after the full disk: %s", lines)
	}
	sub, present, msgs := connectSub(false)
	if !present {
		t.Fatal("full-sub: session not present after the restart")
	}
	got := checkDelivered(t, "full-sub", msgs, acked[drained:])
	closeV5(sub)
	refusedDelivered := 0
	for _, r := range refused {
		if got[r] > 0 {
			refusedDelivered++
		}
	}
	t.Logf("full-sub received %d distinct messages; %d of the %d refused (0x97) ones were delivered anyway",
		len(got), refusedDelivered, len(refused))
	if code := gw.stop(); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
}

// checkDelivered reads msgs until every payload of want has arrived, in order of
// first arrival, and returns the copies received per payload.
func checkDelivered(t *testing.T, who string, msgs <-chan string, want []string) map[string]int {
	t.Helper()
	got := map[string]int{}
	var order []string
	missing := len(want)
	need := map[string]bool{}
	for _, w := range want {
		need[w] = true
	}
	for missing > 0 {
		select {
		case m := <-msgs:
			if got[m] == 0 {
				order = append(order, m)
				if need[m] {
					missing--
				}
			}
			got[m]++
		case <-timeout():
			var lost []string
			for _, w := range want {
				if got[w] == 0 {
					lost = append(lost, w[:7])
				}
			}
			t.Fatalf("%s: %d acknowledged messages not delivered: %v", who, len(lost), first(lost, 20))
		}
	}
	// Acknowledged messages arrive in publishing order (first copies).
	i := 0
	for _, m := range order {
		if i < len(want) && m == want[i] {
			i++
		}
	}
	if i != len(want) {
		t.Errorf("%s: acknowledged messages out of order: %d of %d in sequence", who, i, len(want))
	}
	return got
}
