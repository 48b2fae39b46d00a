package gateway

import (
	"math"
	"time"

	"gopkg.in/yaml.v3"

	"edgegw/hardware"
)

// The `meters:` section is decoded and checked by the hardware package (what
// every port shares) and by each protocol package (its own keys), through the
// methods below: the decoder as a hardware.Decoder. No meter schema lives here.

var _ hardware.Decoder = (*decoder)(nil)

// Mapping implements hardware.Decoder.
func (d *decoder) Mapping(n *yaml.Node, key string, fields map[string]setter) {
	d.mapping(n, key, fields)
}

// List implements hardware.Decoder.
func (d *decoder) List(n *yaml.Node, key string, item setter) bool { return d.list(n, key, item) }

// Str implements hardware.Decoder.
func (d *decoder) Str(dst *string) setter { return d.str(dst) }

// Enum implements hardware.Decoder.
func (d *decoder) Enum(dst *string, values ...string) setter { return d.enum(dst, values...) }

// Count implements hardware.Decoder.
func (d *decoder) Count(dst *int, lo, hi int64) setter { return d.count(dst, lo, hi) }

// Duration implements hardware.Decoder (any duration in range, not only whole seconds).
func (d *decoder) Duration(dst *time.Duration, lo, hi time.Duration) setter {
	return d.duration(dst, lo, hi, false)
}

// Scale implements hardware.Decoder: a finite, non-zero number (integer or float).
func (d *decoder) Scale(dst *float64) setter {
	return func(n *yaml.Node, key string) {
		var v float64
		if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!float" && n.ShortTag() != "!!int") || n.Decode(&v) != nil {
			d.fail(n, key, "must be a number, got %s", describe(n))
			return
		}
		if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			d.fail(n, key, "must be a finite number other than 0, got %s", n.Value)
			return
		}
		*dst = v
	}
}

// Fail implements hardware.Decoder.
func (d *decoder) Fail(key, format string, args ...any) { d.failKey(key, format, args...) }

// Failed implements hardware.Decoder.
func (d *decoder) Failed(key string) bool { return d.failed(key) }

// Present implements hardware.Decoder.
func (d *decoder) Present(key string) bool {
	_, ok := d.lines[key]
	return ok
}
