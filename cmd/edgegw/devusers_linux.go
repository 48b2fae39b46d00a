package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// deviceUsers lists the other processes that have the device at path open,
// as "pid 1234 (name)", from /proc/*/fd. Without root only this user's
// processes can be seen. This process and its ancestors are left out: what
// started the command (a wrapper holding the device, a test driving a
// pseudo-terminal) is not a competitor. Cost: a readlink per open file of
// every process.
func deviceUsers(path string) []string {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil
	}
	procs, _ := os.ReadDir("/proc")
	skip := map[int]bool{}
	for pid := os.Getpid(); pid > 1 && !skip[pid]; pid = parentOf(pid) {
		skip[pid] = true
	}
	var out []string
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || skip[pid] {
			continue
		}
		fds, _ := os.ReadDir(filepath.Join("/proc", p.Name(), "fd"))
		for _, fd := range fds {
			if target, err := os.Readlink(filepath.Join("/proc", p.Name(), "fd", fd.Name())); err == nil && target == real {
				comm, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "comm"))
				out = append(out, fmt.Sprintf("pid %d (%s)", pid, strings.TrimSpace(string(comm))))
				break
			}
		}
	}
	return out
}

// parentOf returns the parent of process pid (0 when unknown), from
// /proc/PID/stat: "pid (comm) state ppid ...", comm may hold spaces.
func parentOf(pid int) int {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}
