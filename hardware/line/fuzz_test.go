package line

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzLineFrame feeds arbitrary bytes through the line splitter, in chunks cut
// where the input says, and every line through the parsers of every format and
// checksum mode, and arbitrary payloads through the downlink formatter. Nothing
// may panic, lines never exceed the limit, accepted frames are well formed,
// and downlink lines are single lines that parse back.
func FuzzLineFrame(f *testing.F) {
	f.Add([]byte("id=m1 energy=1.5 fw=\"a b\"\n"), uint8(3))
	f.Add([]byte(`{"id":"m1","e":2,"x":{"y":[1]}}*1234`+"\r\n"), uint8(7))
	f.Add([]byte("id=m1 e=2*5A\nid=m2\n\n"), uint8(1))
	f.Add(bytes.Repeat([]byte("x"), 300), uint8(50))
	parsers := []Parser{
		{Format: Auto, Checksum: ChecksumOptional},
		{Format: JSON, Checksum: ChecksumRequired},
		{Format: KV, Checksum: ChecksumNone, IDKey: "dev"},
	}
	f.Fuzz(func(t *testing.T, b []byte, cut uint8) {
		s := Splitter{Max: 128}
		step := int(cut)%17 + 1
		lines := 0
		for i := 0; i < len(b); i += step {
			_, _ = s.Feed(b[i:min(i+step, len(b))], func(l []byte) error {
				lines++
				if len(l) > 128 || bytes.IndexByte(l, '\n') >= 0 {
					t.Fatalf("splitter produced %q", l)
				}
				for _, p := range parsers {
					fr, err := p.Parse(l)
					if err != nil {
						continue
					}
					if !validID.MatchString(fr.ID) || len(fr.Values)+len(fr.Text) > MaxFields {
						t.Fatalf("accepted %+v from %q", fr, l)
					}
				}
				return nil
			})
			if cap(s.buf) > 4*128 {
				t.Fatalf("splitter buffer %d", cap(s.buf))
			}
		}
		for _, asJSON := range []bool{false, true} {
			out, err := FormatCommand("id", "m1", b, asJSON, cut%2 == 0, 512)
			if err != nil {
				continue
			}
			if bytes.IndexByte(out[:len(out)-1], '\n') >= 0 || out[len(out)-1] != '\n' || len(out) > 512 {
				t.Fatalf("downlink %q is not one line", out)
			}
			body, present, ok := splitChecksum(out[:len(out)-1])
			if cut%2 != 0 {
				body = out[:len(out)-1] // no checksum added (a payload may end in something like one)
			} else if !present || !ok {
				t.Fatalf("downlink %q: checksum present=%v ok=%v", out, present, ok)
			}
			if asJSON && !json.Valid(body) {
				t.Fatalf("downlink %q is not JSON", out)
			}
		}
	})
}
