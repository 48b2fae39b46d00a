package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/queue"
	"edgegw/session"
)

func retainedMsg(t *testing.T, topic string, size int) []byte {
	t.Helper()
	b, err := session.EncodeMessage(queue.Entry{Packet: packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1, Retain: true},
		TopicName:   topic, Payload: make([]byte, size), Created: 1700000000,
	}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Retained messages have their own limits, count and bytes, the bytes at most
// a quarter of MaxBytes; replacing by a message no larger and deleting always
// work; the totals survive a reopen (entries of any earlier release count).
func TestRetainedLimits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s := openTest(t, path, Options{Durability: Batch, MaxRetained: 3, MaxRetainedBytes: 1 << 20, MaxBytes: 40 << 10})
	for i := range 3 {
		if err := s.SaveRetained(fmt.Sprint("r/", i), retainedMsg(t, fmt.Sprint("r/", i), 2000)); err != nil {
			t.Fatalf("retained %d: %v", i, err)
		}
	}
	// 3 x ~2 KB: replacing one by 7 KB passes the byte limit (40 KiB / 4 = 10 KiB).
	if err := s.SaveRetained("r/0", retainedMsg(t, "r/0", 7000)); !errors.Is(err, ErrRetainedFull) || !strings.Contains(err.Error(), "store.max_retained_bytes") {
		t.Fatalf("growing past max_bytes/4: %v, want ErrRetainedFull naming store.max_retained_bytes", err)
	}
	if err := s.SaveRetained("r/3", retainedMsg(t, "r/3", 10)); !errors.Is(err, ErrRetainedFull) || !strings.Contains(err.Error(), "store.max_retained ") {
		t.Fatalf("4th topic: %v, want ErrRetainedFull naming store.max_retained", err)
	}
	if err := s.SaveRetained("r/1", retainedMsg(t, "r/1", 1500)); err != nil {
		t.Fatalf("replacing by a smaller message: %v", err)
	}
	if err := s.SaveRetained("r/2", nil); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if err := s.SaveRetained("r/3", retainedMsg(t, "r/3", 10)); err != nil {
		t.Fatalf("new topic after a delete: %v", err)
	}
	n, b, maxN, maxB := s.RetainedUsage()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n != 3 || maxN != 3 || maxB != 10<<10 {
		t.Fatalf("usage %d messages, limits %d / %d bytes; want 3, 3, 10240", n, maxN, maxB)
	}
	s2 := openTest(t, path, Options{Durability: Batch, MaxRetained: 3})
	n2, b2, _, _ := s2.RetainedUsage()
	if n2 != n || b2 != b {
		t.Fatalf("after reopen: %d messages %d bytes, want %d, %d", n2, b2, n, b)
	}
}

// A store that an earlier release let fill with retained messages (no
// retained limits then) opens with all of them, and when it is over
// store.max_bytes, Healthy names the retained messages as the cause, not the
// queues.
func TestHealthNamesRetainedCause(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	old := openTest(t, path, Options{Durability: Batch})
	for i := range 100 {
		topic := fmt.Sprint("big/", i)
		if err := old.SaveRetained(topic, retainedMsg(t, topic, 10000)); err != nil {
			t.Fatal(err)
		}
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	s := openTest(t, path, Options{Durability: Batch, MaxBytes: 256 << 10})
	if ms, err := s.Retained(); err != nil || len(ms) != 100 {
		t.Fatalf("retained after reopen: %d, %v; want all 100", len(ms), err)
	}
	if err := s.SaveRetained("big/0", nil); err != nil { // a change, so that a commit measures
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	err := s.Healthy()
	if !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "mostly for retained messages") {
		t.Fatalf("Healthy = %v, want ErrFull naming retained messages", err)
	}
	if err := s.SaveRetained("new", retainedMsg(t, "new", 100)); !errors.Is(err, ErrRetainedFull) {
		t.Fatalf("new retained message over the limit: %v, want ErrRetainedFull", err)
	}
}
