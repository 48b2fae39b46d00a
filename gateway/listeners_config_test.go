package gateway

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The rate limiter's table is bounded: full buckets are dropped, and beyond
// maxSources addresses newcomers share one bucket; IPv6 sources are grouped
// by /64.
func TestRateLimiterBoundedMemory(t *testing.T) {
	now := netip.MustParseAddr("10.0.0.0")
	var clock = timeAt(0)
	r := newRateLimiter(RateConfig{PerSecond: 1, Burst: 2}, clock.now)
	addr := func(i int) string {
		a := now
		for range i {
			a = a.Next()
		}
		return a.String() + ":1000"
	}
	for i := range maxSources {
		if !r.allow(addr(i)) {
			t.Fatalf("source %d refused", i)
		}
	}
	if len(r.buckets) != maxSources {
		t.Fatalf("%d buckets, want %d", len(r.buckets), maxSources)
	}
	// The table is full and no bucket has refilled: newcomers share the overflow
	// bucket (burst 2).
	if !r.allow(addr(maxSources)) || !r.allow(addr(maxSources+1)) || r.allow(addr(maxSources+2)) {
		t.Fatal("overflow bucket does not hold burst 2")
	}
	if len(r.buckets) != maxSources {
		t.Fatalf("table grew to %d", len(r.buckets))
	}
	// Two seconds later every bucket is full again and is dropped by the sweep.
	clock.advance(2)
	if !r.allow(addr(maxSources + 3)) {
		t.Fatal("newcomer refused after the sweep")
	}
	if len(r.buckets) != 1 {
		t.Fatalf("%d buckets after the sweep, want 1", len(r.buckets))
	}
	// IPv6: one bucket per /64.
	for i, a := range []string{"[2001:db8::1]:1", "[2001:db8::2]:1"} {
		if !r.allow(a) {
			t.Fatalf("IPv6 source %d refused", i)
		}
	}
	if r.allow("[2001:db8::3]:1") {
		t.Fatal("a third connection from the same /64 allowed with burst 2")
	}
	if !r.allow("[2001:db8:0:1::1]:1") {
		t.Fatal("another /64 refused")
	}
}

type fakeClock struct{ t int64 }

func timeAt(sec int64) *fakeClock { return &fakeClock{t: sec} }

func (c *fakeClock) now() time.Time { return time.Unix(1_800_000_000+c.t, 0) }

func (c *fakeClock) advance(sec int64) { c.t += sec }

// config check loads the TLS files a listener names and reports the ones that
// do not load, naming the listener's key and the file.
func TestCheckConfigLoadsTLSFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "edgegw.yaml")
	missing := filepath.Join(dir, "missing.pem")
	yaml := "listeners:\n  - name: a\n    address: ':1'\n    tls:\n      cert_file: " + missing + "\n      key_file: " + missing + "\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := CheckConfig(path)
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Key != "listeners[0].tls" || !strings.Contains(err.Error(), missing) {
		t.Fatalf("config check: %v; want a listeners[0].tls error naming %s", err, missing)
	}
}
