package e2e

import (
	bolt "go.etcd.io/bbolt"

	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/paho"
)

// TestCorruptStoreAtStartup damages data_dir/edgegw.db while the gateway is
// stopped. The next start must move the file aside as edgegw.db.corrupt-<time>,
// log an error that says so, start with an empty store (the old session is gone)
// and serve.
func TestCorruptStoreAtStartup(t *testing.T) {
	tests := []struct {
		name    string
		corrupt func(t *testing.T, path string)
	}{
		{"garbage", func(t *testing.T, path string) {
			// Pseudo-random bytes over the whole file, same size.
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			garbage := make([]byte, st.Size())
			r := rand.NewChaCha8([32]byte{1})
			_, _ = r.Read(garbage)
			if err := os.WriteFile(path, garbage, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"data-pages", func(t *testing.T, path string) {
			// Both meta pages intact (their checksums pass), every page after them
			// garbage: what a card that lost its data blocks but not the first two leaves.
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			ps := boltPageSize(b)
			if ps == 0 || len(b) <= 2*ps {
				t.Fatalf("store file of %d bytes, page size %d: no data pages", len(b), ps)
			}
			r := rand.NewChaCha8([32]byte{2})
			_, _ = r.Read(b[2*ps:])
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"swapped-keys", func(t *testing.T, path string) {
			// Two keys of one leaf page swapped: every page is well formed, only the
			// B+tree key order is broken (a typical single-sector mix-up). The file is
			// compacted first so that every leaf page is live: swapping keys in a
			// freed page (an old copy-on-write version) damages nothing.
			compactInPlace(t, path)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !swapLeafKeys(b) {
				t.Fatal("no leaf page with two keys of equal length in the store file")
			}
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"truncated", func(t *testing.T, path string) {
			if err := os.Truncate(path, 100); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testCorruptStore(t, tt.corrupt)
		})
	}
}

var movedRE = regexp.MustCompile(`moved it to (\S+) and started with an empty store`)

func testCorruptStore(t *testing.T, corrupt func(t *testing.T, path string)) {
	dataDir := filepath.Join(t.TempDir(), "data")
	dbPath := filepath.Join(dataDir, "edgegw.db")
	addr := freeAddr(t)
	cfg := gwConfig{DataDir: dataDir, Addr: addr, Durability: "strict"}.write(t)

	// A persistent session with a subscription and a queued message.
	gw := startGW(t, cfg, addr)
	connectSub := func(clean bool) (*paho.Client, bool, chan string) {
		t.Helper()
		msgs := make(chan string, 100)
		c, ca, err := dialV5(addr, &paho.Connect{ClientID: "corrupt-sub", CleanStart: clean,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(3600)}},
			func(m *paho.Publish) { msgs <- string(m.Payload) })
		if err != nil {
			t.Fatalf("connect corrupt-sub: %v", err)
		}
		return c, ca.SessionPresent, msgs
	}
	sub, _, _ := connectSub(true)
	if err := subscribeV5(sub, "corrupt/#", 1); err != nil {
		t.Fatal(err)
	}
	closeV5(sub)
	pub, _, err := dialV5(addr, &paho.Connect{ClientID: "corrupt-pub", CleanStart: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rc, err := publishV5(pub, "corrupt/a", 1, []byte("queued")); err != nil || rc != 0 {
		t.Fatalf("publish: reason %#x, %v", rc, err)
	}
	closeV5(pub)
	if code := gw.stop(); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0", code)
	}
	if st, err := os.Stat(dbPath); err != nil || st.Size() == 0 {
		t.Fatalf("store file after a clean stop: %v", err)
	}

	corrupt(t, dbPath)
	damaged, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}

	gw = launchGW(t, cfg, addr)
	select {
	case <-gw.done:
		if panics := gw.grep("panic: "); len(panics) > 0 && len(gw.grep("go.etcd.io/bbolt.(*DB).freepages")) > 0 {
			t.Fatalf("edgegw crashes at start-up (%v, %s) instead of moving the damaged store aside: "+
				"bbolt.Open with NoFreelistSync rebuilds the freelist by walking every page and panics on a damaged "+
				"page, in store.Compact (session/store/store.go:528, called from gateway.openStore in gateway/gateway.go), which has "+
				"no recover; and bbolt's freepages panics in a goroutine of its own when its check finds broken "+
				"key order (bbolt v1.4.3 db.go:1246-1249), which no recover can catch (store.open's neither)",
				gw.waitEr, panics[0])
		}
		t.Fatalf("edgegw exited (%v) before listening; log:\n%s", gw.waitEr, gw.log)
	default:
	}
	line, ok := gw.waitLog("is damaged")
	if !ok {
		t.Fatalf("no log line saying the store is damaged")
	}
	if !strings.Contains(line, "level=ERROR") || !strings.Contains(line, dbPath) {
		t.Errorf("log line %q: want level ERROR naming %s", line, dbPath)
	}
	m := movedRE.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("log line %q does not say where the store was moved", line)
	}
	aside := m[1]
	if dir, base := filepath.Split(aside); filepath.Clean(dir) != dataDir || !strings.HasPrefix(base, "edgegw.db.corrupt-") {
		t.Errorf("moved to %s, want %s/edgegw.db.corrupt-<time>", aside, dataDir)
	}
	matches, _ := filepath.Glob(filepath.Join(dataDir, "edgegw.db.corrupt-*"))
	if len(matches) != 1 || matches[0] != aside {
		t.Errorf("files edgegw.db.corrupt-* in %s: %v, want [%s]", dataDir, matches, aside)
	}
	if kept, err := os.ReadFile(aside); err != nil || !bytes.Equal(kept, damaged) {
		t.Errorf("the moved file does not hold the damaged store unchanged (read error %v)", err)
	}
	if _, err := os.Stat(dbPath); err != nil {
		t.Errorf("no new store file: %v", err)
	}
	movedAsideShown(t, cfg, dataDir, aside)

	// The old session is gone; pub/sub works on the new store.
	sub, present, msgs := connectSub(false)
	if present {
		t.Error("session present after the store was replaced, want a new session")
	}
	if err := subscribeV5(sub, "corrupt/#", 1); err != nil {
		t.Fatal(err)
	}
	pub, _, err = dialV5(addr, &paho.Connect{ClientID: "corrupt-pub", CleanStart: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rc, err := publishV5(pub, "corrupt/b", 1, []byte("after")); err != nil || rc != 0 {
		t.Fatalf("publish after recovery: reason %#x, %v", rc, err)
	}
	select {
	case got := <-msgs:
		if got != "after" {
			t.Errorf("received %q, want %q (the queued message died with the old store)", got, "after")
		}
	case <-gw.done:
		t.Fatal("edgegw exited")
	case <-timeout():
		t.Fatal("message not delivered after the store was replaced")
	}
	closeV5(pub)
	closeV5(sub)
	if code := gw.stop(); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0", code)
	}

	// The new store is sound: the next start reads it and resumes the session.
	gw = startGW(t, cfg, addr)
	if lines := gw.grep("is damaged"); len(lines) > 0 {
		t.Errorf("the new store was damaged at the next start: %s", lines)
	}
	sub, present, _ = connectSub(false)
	if !present {
		t.Error("session on the new store not present after a clean restart")
	}
	closeV5(sub)
	if code := gw.stop(); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0", code)
	}
}

// swapLeafKeys swaps two adjacent keys of equal length on a bbolt leaf page
// (outside the meta pages) and reports whether it found such a pair. Layout
// (bbolt v1.4): page header id u64, flags u16, count u16, overflow u32; leaf
// elements of 16 bytes: flags u32, pos u32 (from the element), ksize u32, vsize
// u32. The meta page holds the page size after its magic and version.
func swapLeafKeys(b []byte) bool {
	const leafFlag = 0x02
	ps := boltPageSize(b)
	if ps == 0 {
		return false
	}
	for off := 2 * ps; off+ps <= len(b); off += ps {
		pg := b[off : off+ps]
		if binary.LittleEndian.Uint64(pg) != uint64(off/ps) || binary.LittleEndian.Uint16(pg[8:]) != leafFlag {
			continue
		}
		count := int(binary.LittleEndian.Uint16(pg[10:]))
		key := func(i int) (int, int) {
			e := 16 + 16*i
			return e + int(binary.LittleEndian.Uint32(pg[e+4:])), int(binary.LittleEndian.Uint32(pg[e+8:]))
		}
		for i := 0; i+1 < count && 16+16*(i+2) <= ps; i++ {
			k0, n0 := key(i)
			k1, n1 := key(i + 1)
			if n0 != n1 || n0 == 0 || k0+n0 > ps || k1+n1 > ps || bytes.Equal(pg[k0:k0+n0], pg[k1:k1+n1]) {
				continue
			}
			tmp := bytes.Clone(pg[k0 : k0+n0])
			copy(pg[k0:k0+n0], pg[k1:k1+n1])
			copy(pg[k1:k1+n1], tmp)
			return true
		}
	}
	return false
}

// boltPageSize returns the page size recorded in a bbolt file's first meta page
// (after the 16-byte page header, the magic and the version), 0 if implausible.
func boltPageSize(b []byte) int {
	if len(b) < 28 {
		return 0
	}
	ps := int(binary.LittleEndian.Uint32(b[24:]))
	if ps < 512 || ps > 1<<16 {
		return 0
	}
	return ps
}

// compactInPlace rewrites a bbolt file with only its live pages.
func compactInPlace(t *testing.T, path string) {
	t.Helper()
	src, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	tmp := path + ".live"
	dst, err := bolt.Open(tmp, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bolt.Compact(dst, src, 1<<20); err != nil {
		t.Fatal(err)
	}
	_ = src.Close()
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// movedAsideShown checks that the moved-aside file is in `edgegw status` (text
// and JSON, with the health degraded) and in /metrics, read over the admin
// socket as a scraper or the CLI does.
func movedAsideShown(t *testing.T, cfg, dataDir, aside string) {
	t.Helper()
	st := gwStatus(t, cfg)
	if m := st.Store.MovedAside; len(m) != 1 || m[0].Path != aside || m[0].Bytes == 0 {
		t.Errorf("status store.moved_aside = %+v, want [%s]", m, aside)
	}
	if st.Health.Status != "degraded" || !strings.Contains(strings.Join(st.Health.Problems, "; "), "moved aside, newest "+aside) {
		t.Errorf("health %+v: want degraded, naming %s", st.Health, aside)
	}
	cmd := exec.Command(gwBinary, "status", "-c", cfg)
	cmd.Env = gwEnv()
	text, err := cmd.Output()
	if err != nil || !regexp.MustCompile(`(?m)^moved aside +`+regexp.QuoteMeta(aside)).Match(text) {
		t.Errorf("edgegw status (%v) does not list %s:\n%s", err, aside, text)
	}
	body := scrape(t, filepath.Join(dataDir, "admin.sock"))
	if !strings.Contains(body, "\nedgegw_store_moved_aside_files 1\n") {
		t.Errorf("/metrics lacks edgegw_store_moved_aside_files 1:\n%s", body)
	}
}
