// Package hardware connects serial, RS-485, Modbus TCP and LoRa-UART meters to
// the broker.
//
// Three parts:
//
//   - ports: a serial device opened with github.com/tarm/serial (OpenSerial), or
//     a TCP connection (DialTCP: Modbus TCP devices and gateways, RS-485-to-
//     Ethernet converters), wrapped in a Conn whose reader goroutine delivers
//     received bytes in bounded chunks. A port that fails (USB adapter unplugged,
//     I/O error, hang-up, connection refused or reset, a protocol giving up on a
//     silent connection) is closed and reopened with exponential backoff; the
//     gateway keeps running, logs it and publishes the port's retained status.
//   - protocols: one package per wire protocol (hardware/modbus, hardware/line).
//     Each owns all of its protocol: the keys it adds to the `meters:`
//     configuration section, their defaults and checks, and the construction
//     of the Protocol that drives an open Conn and reports to its Meters. It
//     exports a Plugin value (modbus.Plugin{}, line.Plugin{}).
//   - meters: each configured meter is the broker identity "meter-<id>": its
//     readings, status and command results are published through
//     Engine.PublishLocal with that origin, and its commands wait in a durable
//     queue (the store's CommandQueue) whose queue.Lane the engine admits into
//     (a session.Consumer) and the meter takes from, one command at a time
//     (NextCommand, Finish, Retry, Abandon).
//
// Configuration (config.go): DecodeMeters and CheckMeters handle what every port
// shares (topics, types' names, the serial settings, meter ids) through a
// Decoder (config.Decoder, which reports file:line: key: message),
// and hand each protocol its keys: a meter type's part (modbus `registers`,
// line `fields`), the port section named after it (meters.ports[].modbus) and
// the keys it adds to a meter (modbus `slave`, `interval`). Hub.AddConfigured
// builds the ports from the checked section.
//
// Registration is explicit, not global: a Registry is built from a list of
// plugins in one place (hardware/protocols, used by the gateway and the
// configuration's tests) and passed to the decoder and to Hub.AddConfigured;
// no init() and no package-level map, so a test can build a registry of its
// own (hwtest/golden builds one holding only the protocol under test).
// NewRegistry refuses duplicate names and keys that would collide. Adding M-Bus or DLMS is one package
// (hardware/mbus with its Plugin, README.md, sample.yaml and golden cases in
// testdata/golden/<case>/ run by its TestGolden through hwtest/golden)
// plus one import and one entry in that list:
//
//	r, err := hardware.NewRegistry(
//		modbus.Plugin{},
//		line.Plugin{},
//		mbus.Plugin{}, // new
//	)
//
// A Hub owns all of it: New, AddConfigured (or AddMeter and AddPort; before
// the engine restores its state and the server serves), Start, Stop.
//
// Report by exception (report.go) is decided in Meter.Publish for every
// protocol: a protocol decodes the `deadband` / `deadband_percent` keys of
// its type's entries (DeadbandConfig) and passes the deadbands in
// MeterConfig.Report; the meter key `heartbeat` is applied by AddConfigured.
//
// Bad input on a port (garbage, truncated or oversized frames, wrong CRCs or
// checksums, floods) is counted per port, logged at a bounded rate and skipped;
// every buffer has a fixed upper bound.
package hardware
