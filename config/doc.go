// Package config is edgegw's configuration file: a generic YAML decoder that
// reports every problem as "file:line: key: message" (Decoder, Error), and the
// schema of the file's sections.
//
// The package sits below gateway/ and cmd/: it decodes and checks, the gateway
// wires runtime parts from a checked configuration. A runtime package that has
// a section of its own (bridge, hardware and its protocol packages, session)
// owns that section's defaults and validation; the decoder only walks the YAML
// and reports what they find.
package config
