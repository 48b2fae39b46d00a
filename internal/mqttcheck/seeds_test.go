package mqttcheck

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"

	"edgegw/internal/mqttwire"
)

// seedMalformed names the seeds that hold a malformed packet Body must refuse
// (found by fuzzing or reported upstream); every other seed is a valid packet.
var seedMalformed = map[string]bool{
	"subscribe-v5-no-options": true, // mochi-mqtt/server#501
}

// readSeed parses a `go test fuzz v1` file of FuzzDecode: version, first byte
// of the fixed header, body.
func readSeed(t *testing.T, path string) (version, h byte, body []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 4 || lines[0] != "go test fuzz v1" {
		t.Fatalf("%s: not a FuzzDecode seed (version, header, body):\n%s", path, b)
	}
	byteArg := func(line string) byte {
		lit, ok := strings.CutPrefix(line, "byte(")
		lit, ok2 := strings.CutSuffix(lit, ")")
		s, err := strconv.Unquote(lit)
		r := []rune(s)
		if !ok || !ok2 || err != nil || len(r) != 1 || r[0] > 0xff {
			t.Fatalf("%s: %q is not a byte literal", path, line)
		}
		return byte(r[0])
	}
	lit, ok := strings.CutPrefix(lines[3], "[]byte(")
	lit, ok2 := strings.CutSuffix(lit, ")")
	s, err := strconv.Unquote(lit)
	if !ok || !ok2 || err != nil {
		t.Fatalf("%s: %q is not a []byte literal", path, lines[3])
	}
	return byteArg(lines[1]), byteArg(lines[2]), []byte(s)
}

// The seed corpus FuzzDecode runs in every `go test` holds what issue 14.5
// asks: valid v3.1.1 and v5 CONNECT, SUBSCRIBE and PUBLISH packets and a valid
// v5 AUTH (AUTH is v5 only), each accepted by Body and decoded by mochi without
// an error, so the fuzzer starts from packets that reach the decoders' depths;
// and the malformed seeds are refused by Body before mochi sees them.
func TestSeedCorpusValid(t *testing.T) {
	paths, err := filepath.Glob("testdata/fuzz/FuzzDecode/*")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no seeds: %v", err)
	}
	valid := map[[2]byte]bool{} // packet type, version
	for _, path := range paths {
		name := filepath.Base(path)
		version, h, body := readSeed(t, path)
		err := Body(version, h>>4, body)
		if seedMalformed[name] {
			if err == nil {
				t.Errorf("%s: Body accepts the malformed seed", name)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: Body refuses a valid packet: %v", name, err)
			continue
		}
		got, err := mqttwire.Read(bufio.NewReader(bytes.NewReader(wirePacket(h, body))), version)
		if err != nil {
			t.Errorf("%s: mochi does not decode the seed: %v", name, err)
			continue
		}
		if got.FixedHeader.Type != h>>4 {
			t.Errorf("%s: decoded as packet type %d, want %d", name, got.FixedHeader.Type, h>>4)
		}
		valid[[2]byte{h >> 4, version}] = true
	}
	for _, want := range [][2]byte{
		{packets.Connect, 4}, {packets.Connect, 5},
		{packets.Subscribe, 4}, {packets.Subscribe, 5},
		{packets.Publish, 4}, {packets.Publish, 5},
		{packets.Auth, 5},
	} {
		if !valid[want] {
			t.Errorf("no valid %s seed for protocol version %d", packets.PacketNames[want[0]], want[1])
		}
	}
}
