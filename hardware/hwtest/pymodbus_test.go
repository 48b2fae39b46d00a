package hwtest

import (
	"errors"
	"net"
	"syscall"
	"testing"
)

// While a ModbusServer is down its port refuses connections and no other
// listener can bind it; Restart serves there again.
func TestModbusServerKeepsPortWhileDown(t *testing.T) {
	s := StartModbusServer(t, Units{1: {Holding: map[uint16]uint16{0: 7}}}, ModbusServerOptions{})
	addr := s.Addr
	s.Stop()
	if _, err := net.Dial("tcp", addr); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial of a stopped server's port: %v, want connection refused", err)
	}
	if l, err := net.Listen("tcp", addr); err == nil {
		_ = l.Close()
		t.Fatal("another listener bound the port of a stopped server")
	}
	s.Restart()
	if s.Addr != addr {
		t.Fatalf("restarted on %s, want %s", s.Addr, addr)
	}
	if regs, err := s.ReadHolding(1, 0, 1); err != nil || len(regs) != 1 || regs[0] != 7 {
		t.Fatalf("read after the restart: %v %v", regs, err)
	}
}
