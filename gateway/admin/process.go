package admin

import (
	"bytes"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
)

// Process is what the kernel and the Go runtime report about the gateway's own
// process: the numbers a fleet operator alerts on (memory, CPU, descriptors).
// Values the kernel does not give (no /proc) are -1.
type Process struct {
	// ResidentBytes is the resident set size (/proc/self/statm x page size).
	ResidentBytes int64 `json:"resident_bytes"`
	// CPUSeconds is user plus system CPU time (/proc/self/stat, in clock ticks
	// of 1/100 s, the value of USER_HZ on every Linux port).
	CPUSeconds float64 `json:"cpu_seconds"`
	// OpenFDs counts /proc/self/fd; MaxFDs is the soft limit (RLIMIT_NOFILE from
	// /proc/self/limits).
	OpenFDs int64 `json:"open_fds"`
	MaxFDs  int64 `json:"max_fds"`
	// Goroutines is runtime.NumGoroutine.
	Goroutines int `json:"goroutines"`
	// MemoryLimitBytes is the Go runtime's soft memory limit (memory.limit or
	// GOMEMLIMIT); 0 = none.
	MemoryLimitBytes int64  `json:"memory_limit_bytes"`
	Hostname         string `json:"hostname"`
}

// userHZ is the unit of the CPU times in /proc/<pid>/stat. The kernel exports
// it as USER_HZ, 100 on every architecture Linux runs the gateway on.
const userHZ = 100

// readProcess reads /proc/self. Cost: four small file reads and one directory
// listing (one entry per open descriptor).
func readProcess() Process {
	p := Process{ResidentBytes: -1, CPUSeconds: -1, OpenFDs: -1, MaxFDs: -1, Goroutines: runtime.NumGoroutine()}
	p.Hostname, _ = os.Hostname()
	if l := debug.SetMemoryLimit(-1); l > 0 && l < 1<<62 {
		p.MemoryLimitBytes = l
	}
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			if n, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				p.ResidentBytes = n * int64(os.Getpagesize())
			}
		}
	}
	if b, err := os.ReadFile("/proc/self/stat"); err == nil {
		// The command name (field 2) is in parentheses and may hold spaces:
		// fields are counted after its closing one; utime and stime are 14, 15.
		if i := bytes.LastIndexByte(b, ')'); i > 0 {
			if f := strings.Fields(string(b[i+1:])); len(f) > 12 {
				ut, err1 := strconv.ParseInt(f[11], 10, 64)
				st, err2 := strconv.ParseInt(f[12], 10, 64)
				if err1 == nil && err2 == nil {
					p.CPUSeconds = float64(ut+st) / userHZ
				}
			}
		}
	}
	if d, err := os.ReadDir("/proc/self/fd"); err == nil {
		p.OpenFDs = int64(len(d)) - 1 // less the descriptor ReadDir itself had open
	}
	if b, err := os.ReadFile("/proc/self/limits"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
				if f := strings.Fields(rest); len(f) > 0 {
					if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
						p.MaxFDs = n
					}
				}
			}
		}
	}
	return p
}
