//go:build !linux

package main

import "syscall"

// checkAttr puts the store check child in its own process group (a terminal's
// Ctrl-C does not reach it; edgegw stops it).
func checkAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
