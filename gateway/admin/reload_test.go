package admin

import (
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// POST /api/v1/reload is a write: the socket's owner gets the report, another
// user is refused (403) without the reload running; an invalid file answers
// 422 with its lines, which the client returns as the error's message.
func TestReloadEndpoint(t *testing.T) {
	calls := 0
	var answer error
	parts := &Parts{Reload: func() (ReloadReport, error) {
		calls++
		return ReloadReport{File: "/etc/edgegw/edgegw.yaml", Applied: []string{"log.level: info -> debug"}, NeedsRestart: []string{}}, answer
	}}
	start := func(uids []uint32) *Client {
		sock := filepath.Join(t.TempDir(), "admin.sock")
		s := New(Config{Socket: sock, WriterUIDs: uids}, parts, slog.New(slog.DiscardHandler))
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return NewClient(sock, "")
	}
	owner := start(nil) // the process's own uid writes
	var rep ReloadReport
	if err := owner.Post("/api/v1/reload", &rep); err != nil || calls != 1 || rep.Applied[0] != "log.level: info -> debug" {
		t.Fatalf("owner's reload: %v, %d calls, %+v", err, calls, rep)
	}

	answer = &ReloadError{Lines: []string{"/etc/edgegw/edgegw.yaml:17: sessions.max_queued: must be an integer, got \"lots\""}}
	err := owner.Post("/api/v1/reload", &rep)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusUnprocessableEntity ||
		ae.Message != "configuration not reloaded; the running configuration stays:\n/etc/edgegw/edgegw.yaml:17: sessions.max_queued: must be an integer, got \"lots\"" {
		t.Errorf("invalid file: %v", err)
	}

	other := start([]uint32{uint32(os.Getuid()) + 1})
	err = other.Post("/api/v1/reload", &rep)
	if !errors.As(err, &ae) || ae.Status != http.StatusForbidden || !strings.Contains(ae.Message, "reload") {
		t.Errorf("another user's reload: %v", err)
	}
	if calls != 2 {
		t.Errorf("the reload ran %d times, want 2 (not for the refused request)", calls)
	}
}
