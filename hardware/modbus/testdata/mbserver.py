#!/usr/bin/python3
"""A Modbus TCP server for edgegw's tests, built on pymodbus (Debian's
python3-pymodbus 3.0): the third-party far end of a TCP meter port.

  mbserver.py serve --slaves FILE [--framer tcp|rtu] [--port N] [--wrong-tid]
                    [--only-wrong-tid] [--wrong-unit] [--gateway] [--die-at K]
      Serves the units and registers of FILE (JSON, the format of the golden
      cases' slaves.json: {"<unit>": {"holding": {"<reg>": v}, "input": {...}}})
      on 127.0.0.1:N (0: any free port) with pymodbus's socket (MBAP) framer or
      its RTU framer over TCP. A read or write of a register not listed gets
      exception 2. Device identification (function 43/14) answers vendor
      "pymodbus", product code "PM-TEST", revision "3.0". A request for a
      unit not listed gets no answer: pymodbus 3.0's framer drops it (unless
      unit 0 or 255 is listed: then its framer takes every unit id, as with
      --gateway). Prints "LISTENING <port>" once it serves.
      --wrong-tid sends every response twice, first with the transaction id
      plus one (pymodbus's response_manipulator hook), then as it should be
      (tcp framer only). --only-wrong-tid sends only the first of the two.
      --wrong-unit sends every response twice, first from the unit id plus
      one (in the framer's own encoding: MBAP, or RTU with its CRC), then as
      it should be.
      --gateway makes the server a Modbus TCP gateway with the listed units
      behind it: it takes requests for every unit id, and for a unit not
      listed pymodbus itself answers exception 11 (gateway target device
      failed to respond; its NoSuchSlaveException path).
      --die-at K exits at the K-th request (counted from 1 over all
      connections), after reading it and before answering it: a device that
      loses power in the middle of a transaction. Its connections are closed
      by the kernel.

  mbserver.py read --port N --unit U --address A --count C [--framer tcp|rtu]
      Reads C holding registers with pymodbus's client and prints them as a
      JSON list (to check what edgegw wrote).
"""

import argparse
import asyncio
import json
import logging
import os
import struct
import sys


def load_context(path, gateway=False):
    from pymodbus.datastore import (ModbusServerContext, ModbusSlaveContext,
                                    ModbusSparseDataBlock)

    class GatewayContext(ModbusServerContext):
        """Claims every unit id to pymodbus's framer (which drops requests
        for units not in slaves()); looking up one not served raises
        pymodbus's NoSuchSlaveException, which its server answers with
        exception 11."""

        def slaves(self):
            return list(range(256))

    with open(path) as f:
        spec = json.load(f)
    slaves = {}
    for unit, tables in spec.items():
        def block(name):
            regs = {int(k): int(v) for k, v in (tables.get(name) or {}).items()}
            # An empty sparse block would be filled by pymodbus; an unused
            # address far out keeps it empty in effect.
            return ModbusSparseDataBlock(regs or {65535: 0})
        slaves[int(unit)] = ModbusSlaveContext(hr=block("holding"), ir=block("input"),
                                               zero_mode=True)
    return (GatewayContext if gateway else ModbusServerContext)(slaves=slaves, single=False)


def serve(args):
    from pymodbus.device import ModbusDeviceIdentification
    from pymodbus.framer.rtu_framer import ModbusRtuFramer
    from pymodbus.framer.socket_framer import ModbusSocketFramer
    from pymodbus.server.async_io import ModbusTcpServer

    framer = ModbusSocketFramer if args.framer == "tcp" else ModbusRtuFramer
    # Each option wraps the bytes of one response (pymodbus's
    # response_manipulator hook: the response object in, the bytes to send
    # out); --die-at exits before any is built.
    requests = 0

    def manipulate(response):
        nonlocal requests
        requests += 1
        if requests == args.die_at:
            os._exit(0)
        right = framer(None).buildPacket(response)
        out = right
        if args.wrong_unit:
            unit = response.unit_id
            response.unit_id = (unit + 1) & 0xFF
            out = framer(None).buildPacket(response) + out
            response.unit_id = unit
        if args.wrong_tid or args.only_wrong_tid:
            wrong = struct.pack(">H", (response.transaction_id + 1) & 0xFFFF) + right[2:]
            out = wrong if args.only_wrong_tid else wrong + out
        return out, True

    kwargs = {"identity": ModbusDeviceIdentification(info_name={
        "VendorName": "pymodbus", "ProductCode": "PM-TEST", "MajorMinorRevision": "3.0"})}
    if args.wrong_tid or args.only_wrong_tid or args.wrong_unit or args.die_at:
        kwargs["response_manipulator"] = manipulate

    async def main():
        server = ModbusTcpServer(load_context(args.slaves, args.gateway), framer=framer,
                                 address=("127.0.0.1", args.port),
                                 allow_reuse_address=True, allow_reuse_port=True, **kwargs)
        task = asyncio.create_task(server.serve_forever())
        await server.serving
        port = server.server.sockets[0].getsockname()[1]
        print("LISTENING %d" % port, flush=True)
        await task

    asyncio.run(main())


def read(args):
    from pymodbus.client import ModbusTcpClient
    from pymodbus.framer.rtu_framer import ModbusRtuFramer
    from pymodbus.framer.socket_framer import ModbusSocketFramer

    framer = ModbusSocketFramer if args.framer == "tcp" else ModbusRtuFramer
    client = ModbusTcpClient("127.0.0.1", port=args.port, framer=framer, timeout=3)
    if not client.connect():
        sys.exit("cannot connect")
    rr = client.read_holding_registers(args.address, args.count, slave=args.unit)
    client.close()
    if rr.isError():
        sys.exit("read failed: %s" % rr)
    print(json.dumps(rr.registers), flush=True)


def run():
    logging.basicConfig(level=logging.CRITICAL)
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--slaves", required=True)
    s.add_argument("--framer", choices=["tcp", "rtu"], default="tcp")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--wrong-tid", action="store_true")
    s.add_argument("--only-wrong-tid", action="store_true")
    s.add_argument("--wrong-unit", action="store_true")
    s.add_argument("--gateway", action="store_true")
    s.add_argument("--die-at", type=int, default=0)
    r = sub.add_parser("read")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--framer", choices=["tcp", "rtu"], default="tcp")
    r.add_argument("--unit", type=int, required=True)
    r.add_argument("--address", type=int, required=True)
    r.add_argument("--count", type=int, default=1)
    args = p.parse_args()
    serve(args) if args.cmd == "serve" else read(args)


if __name__ == "__main__":
    run()
