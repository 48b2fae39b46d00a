//go:build !linux

package main

// deviceUsers lists the other processes that have the device open; only
// Linux is looked at.
func deviceUsers(string) []string { return nil }
