// Package hardware connects serial, RS-485 and LoRa-UART meters to the broker.
//
// Three parts:
//
//   - ports: a serial device opened with github.com/tarm/serial (Open), wrapped in
//     a Conn whose reader goroutine delivers received bytes in bounded chunks. A
//     port that fails (USB adapter unplugged, I/O error, hang-up) is closed and
//     reopened with exponential backoff; the gateway keeps running, logs it and
//     publishes the port's retained status.
//   - protocols: one package per wire protocol (hardware/modbus, hardware/line),
//     each a Protocol that drives an open Conn and reports to its Meters. Adding
//     M-Bus or DLMS means one more package implementing Protocol.
//   - meters: each configured meter is the broker identity "meter-<id>": its
//     readings, status and command results are published through
//     Engine.PublishLocal with that origin, and its commands wait in a durable
//     queue registered with Engine.AddConsumer ("m/<id>" in the store).
//
// A Hub owns all of it: New, AddMeter, AddPort (before the engine restores its
// state and the server serves), Start, Stop.
//
// Bad input on a port (garbage, truncated or oversized frames, wrong CRCs or
// checksums, floods) is counted per port, logged at a bounded rate and skipped;
// every buffer has a fixed upper bound.
package hardware
