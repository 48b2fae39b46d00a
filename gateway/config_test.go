package gateway

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"edgegw/config"
	"edgegw/session"
)

// TestDefaultConfig keeps default.yaml (the documented text) and the defaults in
// code (config.Default: each section's default from the package that owns it,
// config.DefaultLog, store.DefaultOptions, session.DefaultOptions, ...) equal.
// The text is parsed over a zero Config, so every value comes from it.
func TestDefaultConfig(t *testing.T) {
	c, err := config.ParseOver("default.yaml", defaultYAML, Config{}, meterProtocols())
	if err != nil {
		t.Fatalf("embedded default.yaml is invalid: %v", err)
	}
	if ch := c.Changed(DefaultConfig()); ch != nil || !reflect.DeepEqual(c, DefaultConfig()) {
		t.Errorf("default.yaml and the code defaults differ in sections %q:\n%+v\nwant\n%+v", ch, c, DefaultConfig())
	}
	// The documented defaults are the session package's defaults.
	if got, want := c.SessionOptions(), session.DefaultOptions(); !reflect.DeepEqual(got, want) {
		t.Errorf("DefaultConfig().SessionOptions() =\n%+v\nwant session.DefaultOptions()\n%+v", got, want)
	}
	if err := c.SessionOptions().Validate(); err != nil {
		t.Errorf("default session options invalid: %v", err)
	}
}

// TestDefaultYAMLRoundTrip checks that the text printed by `edgegw config default`
// parses back to DefaultConfig.
func TestDefaultYAMLRoundTrip(t *testing.T) {
	c, err := ParseConfig("default.yaml", DefaultYAML())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, DefaultConfig()) {
		t.Errorf("ParseConfig(DefaultYAML()) = %+v, want DefaultConfig()", c)
	}
	b := DefaultYAML()
	b[0] ^= 0xff
	if bytes.Equal(b, DefaultYAML()) {
		t.Error("DefaultYAML returns a shared slice")
	}
}

// TestPackagingConfig keeps packaging/edgegw.yaml identical to the embedded default.
func TestPackagingConfig(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "packaging", "edgegw.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, DefaultYAML()) {
		t.Error("packaging/edgegw.yaml differs from gateway/default.yaml; run: cp gateway/default.yaml packaging/edgegw.yaml")
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("sessions:\n  max_sessions: 7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(good)
	if err != nil || c.Sessions.MaxSessions != 7 {
		t.Errorf("LoadConfig(good) = %d, %v", c.Sessions.MaxSessions, err)
	}
	if w, err := CheckConfig(good); err != nil || w != nil {
		t.Errorf("CheckConfig(good) = %q, %v", w, err)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("mqtt:\n  sys_interval: 1500ms\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = CheckConfig(bad)
	if want := bad + ":2: mqtt.sys_interval: must be whole seconds"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("CheckConfig(bad) = %v, want prefix %q", err, want)
	}

	_, err = LoadConfig(filepath.Join(dir, "missing.yaml"))
	var ce *ConfigError
	if err == nil || errors.As(err, &ce) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadConfig(missing) = %v, want a not-exist error that is not a *ConfigError", err)
	}
}
