package suggest

import "testing"

func TestNearest(t *testing.T) {
	cands := []string{"status", "sessions", "meters", "bridge", "run", "max_sessions", "max_queued"}
	for word, want := range map[string]string{"stauts": "status", "sesion": "sessions", "meter": "meters", "brigde": "bridge",
		"rn": "", "status": "status", "zzz": "", "": "", "max_sesions": "max_sessions", "max_qeued": "max_queued"} {
		if got := Nearest(word, cands); got != want {
			t.Errorf("Nearest(%q) = %q, want %q", word, got, want)
		}
	}
}
