package main

import "syscall"

// checkAttr puts the store check child in its own process group (a terminal's
// Ctrl-C does not reach it; edgegw stops it) and has the kernel kill it if
// edgegw dies first.
func checkAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
