package gateway

import (
	"bytes"
	_ "embed"

	"edgegw/config"
)

// The configuration's schema, defaults and checks live in package config; the
// gateway wires runtime parts from a parsed config.Config. What is left here
// binds the meter protocols (meterProtocols: hardware/protocols) and the
// documented text.

// defaultYAML is the documented default configuration. It is read-only: DefaultYAML
// hands out copies.
//
//go:embed default.yaml
var defaultYAML []byte

// Config is edgegw's configuration (config.Config).
type Config = config.Config

// ConfigError is one problem in a configuration file.
type ConfigError = config.Error

// Other names of the sections' types, kept for the gateway's code and tests
// that use them (the types are config's).
type (
	RateConfig       = config.Rate
	ListenerConfig   = config.Listener
	ListenerTLS      = config.ListenerTLS
	UserConfig       = config.User
	ACLRuleConfig    = config.ACLRule
	BridgeConfig     = config.Bridge
	BridgeTLSConfig  = config.BridgeTLS
	BridgeRuleConfig = config.BridgeRule
)

// DefaultYAML returns the documented default configuration, the text printed by
// `edgegw config default`. The caller may modify the returned slice.
func DefaultYAML() []byte {
	return bytes.Clone(defaultYAML)
}

// DefaultConfig returns the default configuration (config.Default), which
// TestDefaultConfig keeps equal to DefaultYAML's.
func DefaultConfig() Config { return config.Default() }

// LoadConfig reads and parses the configuration file at path; see ParseConfig.
func LoadConfig(path string) (Config, error) { return config.Load(path, meterProtocols()) }

// ParseConfig parses a YAML configuration named name (a file name, used in error
// messages) with edgegw's meter protocols (config.Parse). Omitted keys keep their
// DefaultConfig values. On error the Config is zero and the error joins one
// *ConfigError per problem, ordered by line.
func ParseConfig(name string, data []byte) (Config, error) {
	return config.Parse(name, data, meterProtocols())
}

// CheckConfig loads and checks the configuration file at path. Besides the errors of
// LoadConfig it reports TLS listener files that do not load (as edgegw run would),
// and returns warnings about valid but doubtful settings: secrets in files
// every user can read, listeners no client can log in to.
func CheckConfig(path string) (warnings []string, err error) {
	c, err := LoadConfig(path)
	if err != nil {
		return nil, err
	}
	if err := checkTLSFiles(path, c); err != nil {
		return nil, err
	}
	return securityWarnings(path, c), nil
}
