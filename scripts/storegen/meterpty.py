#!/usr/bin/python3
"""Two pseudo-terminals standing in for the meters' serial ports while
mkstore.sh fills a store (see session/store/testdata/README.md).

Usage: meterpty.py DIR. Creates DIR/ttyLINE and DIR/ttyMODBUS (symlinks to the
slave ends), writes DIR/ready, and serves until killed:

- ttyLINE stays silent: a line meter sends no uplink, so its commands wait in
  its queue;
- ttyMODBUS answers Modbus RTU reads (function 3 and 4, all registers 0) of any
  slave until the first write (function 6) arrives; from then on it answers
  nothing, so that write times out after the meter was online and the command
  stays queued with one attempt used."""
import os
import select
import sys
import tty


def crc16(b):
    crc = 0xFFFF
    for x in b:
        crc ^= x
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return bytes([crc & 0xFF, crc >> 8])


def pty_at(path):
    master, slave = os.openpty()
    tty.setraw(slave)
    os.symlink(os.ttyname(slave), path)
    return master, slave


d = sys.argv[1]
line_m, line_s = pty_at(os.path.join(d, "ttyLINE"))
mb_m, mb_s = pty_at(os.path.join(d, "ttyMODBUS"))
open(os.path.join(d, "ready"), "w").close()

buf = b""
silent = False
while True:
    r, _, _ = select.select([line_m, mb_m], [], [])
    if line_m in r:
        os.read(line_m, 4096)  # commands are never due: no uplink was sent
    if mb_m not in r:
        continue
    buf += os.read(mb_m, 4096)
    while len(buf) >= 8:
        req = buf[:8]
        if crc16(req[:6]) != req[6:8]:
            buf = buf[1:]
            continue
        buf = buf[8:]
        if silent:
            continue
        slave, fc = req[0], req[1]
        if fc == 6:
            silent = True
            continue
        if fc in (3, 4):
            count = int.from_bytes(req[4:6], "big")
            resp = bytes([slave, fc, 2 * count]) + bytes(2 * count)
            os.write(mb_m, resp + crc16(resp))
