package gateway

import "edgegw/hardware"

// The `meters:` section is decoded and checked by the hardware package (what
// every port shares) and by each protocol package (its own keys), through the
// configuration decoder as a hardware.Decoder. No meter schema lives here.

var _ hardware.Decoder = (*decoder)(nil)
