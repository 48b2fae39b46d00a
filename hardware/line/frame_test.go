package line

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func withCRC(s string) string { return fmt.Sprintf("%s*%04X", s, CRC16([]byte(s))) }
func withXOR(s string) string { return fmt.Sprintf("%s*%02x", s, XOR8([]byte(s))) }

func TestParse(t *testing.T) {
	p := Parser{Format: Auto, Checksum: ChecksumOptional}
	tests := []struct {
		line string
		want Frame
	}{
		{`id=m1 energy=123.4 power=-5`, Frame{ID: "m1", Values: []Field{{"energy", 123.4}, {"power", -5}}}},
		{"id=m1,energy=1;fw=\"1.2 beta\"\r", Frame{ID: "m1", Values: []Field{{"energy", 1}}, Text: map[string]string{"fw": "1.2 beta"}}},
		{`  id=7 e=1e3 x=0x10 n=nan`, Frame{ID: "7", Values: []Field{{"e", 1000}}, Text: map[string]string{"x": "0x10", "n": "nan"}}},
		{`{"id":"m2","energy":5.5,"ok":true,"fw":"2","nested":{"a":1},"arr":[1],"nul":null}`,
			Frame{ID: "m2", JSON: true, Values: []Field{{"energy", 5.5}}, Text: map[string]string{"ok": "true", "fw": "2"}}},
		{`{"id":42,"e":1}`, Frame{ID: "42", JSON: true, Values: []Field{{"e", 1}}}},
		{withCRC(`id=m1 e=2`), Frame{ID: "m1", Values: []Field{{"e", 2}}, Checksum: true}},
		{withXOR(`id=m1 e=2`), Frame{ID: "m1", Values: []Field{{"e", 2}}, Checksum: true}},
		{withCRC(`{"id":"m1","e":2}`), Frame{ID: "m1", JSON: true, Values: []Field{{"e", 2}}, Checksum: true}},
		{`id=m1 e=1 e=2`, Frame{ID: "m1", Values: []Field{{"e", 2}}}},
	}
	for _, tt := range tests {
		got, err := p.Parse([]byte(tt.line))
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Parse(%q) = %+v, %v\nwant %+v", tt.line, got, err, tt.want)
		}
	}
	bad := []string{
		`energy=1`, `id=`, `id=a/b e=1`, `id=m1 e`, `id=m1 =3`, `id=m1 e="open`, `id=m1 e="a"b`,
		`{"id":"m1"`, `{"id":"m1"} x`, `{"id":"m1","e":1}{}`, `[1,2]`, `{"id":"a b"}`,
		withCRC(`id=m1 e=2`)[:len(withCRC(`id=m1 e=2`))-1] + "0", "id=m1 \xff", `id=m1 k` + strings.Repeat("x", 70) + `=1`,
		`id=m1 e=` + strings.Repeat("1", 300),
	}
	for _, line := range bad {
		if f, err := p.Parse([]byte(line)); err == nil {
			t.Errorf("Parse(%q) = %+v, want an error", line, f)
		}
	}
	if _, err := p.Parse([]byte("  \r")); err != ErrEmpty {
		t.Errorf("blank line: %v", err)
	}
	var many strings.Builder
	many.WriteString("id=m")
	for i := range MaxFields + 1 {
		fmt.Fprintf(&many, " f%d=1", i)
	}
	if _, err := p.Parse([]byte(many.String())); err == nil {
		t.Error("too many fields accepted")
	}
	// Checksum modes.
	req := Parser{Checksum: ChecksumRequired}
	if _, err := req.Parse([]byte(`id=m1 e=1`)); err != ErrNoChecksum {
		t.Errorf("required, missing: %v", err)
	}
	if _, err := req.Parse([]byte(withCRC(`id=m1 e=1`))); err != nil {
		t.Errorf("required, present: %v", err)
	}
	none := Parser{Checksum: ChecksumNone}
	if f, err := none.Parse([]byte(`id=m1 note=a*12`)); err != nil || f.Text["note"] != "a*12" {
		t.Errorf("checksum none: %+v %v", f, err)
	}
	if _, err := p.Parse([]byte(`id=m1 note=a*12`)); err != ErrChecksum {
		t.Errorf("optional: a*12 is a (wrong) checksum: %v", err)
	}
	kv := Parser{Format: KV}
	if _, err := kv.Parse([]byte(`{"id":"m1"}`)); err == nil {
		t.Error("kv port accepted JSON")
	}
	idk := Parser{IDKey: "dev"}
	if f, err := idk.Parse([]byte(`dev=x id=3`)); err != nil || f.ID != "x" || f.Values[0].Name != "id" {
		t.Errorf("id_key dev: %+v %v", f, err)
	}
}

func TestSplitter(t *testing.T) {
	s := Splitter{Max: 10}
	var got []string
	collect := func(l []byte) error { got = append(got, string(l)); return nil }
	total := 0
	for _, chunk := range []string{"ab", "c\nde", "f\n", "0123456789ABC", "DEF\nok\n", "0123456789\n", "01234567890\nx\n"} {
		n, _ := s.Feed([]byte(chunk), collect)
		total += n
	}
	want := []string{"abc", "def", "ok", "0123456789", "x"}
	if !reflect.DeepEqual(got, want) || total != 2 {
		t.Errorf("lines %q, oversized %d; want %q, 2", got, total, want)
	}
	if cap(s.buf) > 32 {
		t.Errorf("splitter buffer grew to %d", cap(s.buf))
	}
}

func TestFormatCommand(t *testing.T) {
	tests := []struct {
		payload string
		json    bool
		sum     bool
		want    string
	}{
		{`{"interval": 60}`, true, false, `{"id":"m1","cmd":{"interval":60}}` + "\n"},
		{`reboot`, true, false, `{"id":"m1","cmd":"reboot"}` + "\n"},
		{`interval=60`, false, false, "id=m1 interval=60\n"},
		{`interval=60`, false, true, withCRC("id=m1 interval=60") + "\n"},
	}
	for _, tt := range tests {
		got, err := FormatCommand("id", "m1", []byte(tt.payload), tt.json, tt.sum, 100)
		if err != nil || string(got) != tt.want {
			t.Errorf("FormatCommand(%q) = %q, %v; want %q", tt.payload, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "a\nb", "a\x00", "\xff"} {
		if got, err := FormatCommand("id", "m1", []byte(bad), false, false, 100); err == nil {
			t.Errorf("FormatCommand(%q) = %q", bad, got)
		}
	}
	if _, err := FormatCommand("id", "m1", []byte(strings.Repeat("x", 200)), false, false, 100); err == nil {
		t.Error("line longer than max_line accepted")
	}
	// A downlink line parses as an uplink of the same format.
	line, _ := FormatCommand("id", "m1", []byte(`k=v`), false, true, 100)
	if f, err := (Parser{Checksum: ChecksumRequired}).Parse([]byte(strings.TrimSuffix(string(line), "\n"))); err != nil || f.ID != "m1" {
		t.Errorf("round trip: %+v %v", f, err)
	}
}
