// Package protocols is the one list of the meter protocols edgegw knows. Each
// protocol package owns its configuration keys, their checks and its
// construction (hardware.Plugin); adding a protocol is its package plus one
// import and one entry here. The gateway (gateway/meters.go, gateway/config.go)
// and the configuration's tests (config/) build their registry from this list,
// so a new protocol's keys and documented defaults are checked with the
// others'.
package protocols

import (
	"edgegw/hardware"
	"edgegw/hardware/line"
	"edgegw/hardware/modbus"
)

// Registry returns the registry of every meter protocol, in the order the
// configuration's messages name them ("modbus or line"). It is built at each
// call and passed in: there is no package-level registration.
func Registry() *hardware.Registry {
	r, err := hardware.NewRegistry(
		modbus.Plugin{},
		line.Plugin{},
	)
	if err != nil {
		panic(err) // a programming error in the list above; every config test would fail
	}
	return r
}
