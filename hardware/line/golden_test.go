package line_test

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"edgegw/hardware/hwtest/golden"
	"edgegw/hardware/line"
)

// TestGolden runs the cases in testdata/golden/<case>/: config.yaml (one line
// port), uplink.txt (the bytes the meters send, garbage included) and
// expected.json (the readings). See package hwtest/golden.
func TestGolden(t *testing.T) {
	golden.Run(t, "testdata/golden", line.Plugin{}, func(t *testing.T, dir string, rw io.ReadWriter) {
		b, err := os.ReadFile(filepath.Join(dir, "uplink.txt"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rw.Write(b); err != nil {
			t.Fatal(err)
		}
	})
}
