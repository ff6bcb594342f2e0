"""A Modbus RTU server on a serial port (a socat pty) for the agent's tests (issue 20): Debian's
pymodbus, a datastore the test knows, and a control channel on stdin.

Usage: /usr/bin/python3 modbus-server.py PORT BAUD PARITY UNIT[,UNIT...]
  PARITY: N, E or O (8 data bits, 1 stop bit)

Each unit's datastore (zero-based addresses, as on the wire): 100 coils, 100 discrete inputs,
100 holding and 100 input registers, all 0 but what the test sets. Addresses 100 and up do not
exist: reading them is exception 2 (illegal data address).

Commands, one JSON object a line on stdin; every command is answered by one JSON line on stdout:
  {"op": "set", "unit": 1, "table": "hr", "address": 0, "values": [1, 2]}   hr ir co di
  {"op": "get", "unit": 1, "table": "hr", "address": 0, "count": 2}         -> {"values": [...]}
  {"op": "silent", "unit": 2, "on": true}   the unit stops answering (as if unplugged) / answers again
  {"op": "busy", "unit": 1, "on": true}     the unit answers every request with exception 6 (busy)
  {"op": "requests"}                        -> {"requests": {"1": N, ...}} requests executed per unit
The first line on stdout is {"ready": true} once the port is open.
"""

import asyncio
import json
import logging
import sys
import threading

from pymodbus.datastore import (
    ModbusSequentialDataBlock,
    ModbusServerContext,
    ModbusSlaveContext,
)
from pymodbus.framer.rtu_framer import ModbusRtuFramer
from pymodbus.pdu import ExceptionResponse, ModbusExceptions
from pymodbus.server.async_io import ModbusSerialServer

# pymodbus logs every exception response it sends at ERROR: the tests ask for some on purpose.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL + 1)
for _name in list(logging.root.manager.loggerDict):
    if _name.startswith("pymodbus"):
        logging.getLogger(_name).setLevel(logging.CRITICAL + 1)

SIZE = 100


def new_unit():
    return ModbusSlaveContext(
        di=ModbusSequentialDataBlock(0, [0] * SIZE),
        co=ModbusSequentialDataBlock(0, [0] * SIZE),
        hr=ModbusSequentialDataBlock(0, [0] * SIZE),
        ir=ModbusSequentialDataBlock(0, [0] * SIZE),
        zero_mode=True,
    )


FC_OF_TABLE = {"co": 1, "di": 2, "hr": 3, "ir": 4}


class Server:
    def __init__(self, port, baud, parity, units):
        self.units = {u: new_unit() for u in units}
        self.silent = set()
        self.busy = set()
        self.requests = {u: 0 for u in units}
        self.context = ModbusServerContext(slaves=dict(self.units), single=False)
        self.server = ModbusSerialServer(
            self.context,
            ModbusRtuFramer,
            port=port,
            baudrate=baud,
            parity=parity,
            bytesize=8,
            stopbits=1,
            ignore_missing_slaves=True,
            response_manipulator=self.manipulate,
        )
        self.last_unit = None

    def manipulate(self, response):
        unit = response.unit_id
        if unit in self.busy:
            return ExceptionResponse(response.function_code & 0x7F, ModbusExceptions.SlaveBusy, unit=unit), False
        return response, False

    def command(self, c):
        op = c.get("op")
        if op == "set":
            self.units[c["unit"]].setValues(FC_OF_TABLE[c["table"]], c["address"], c["values"])
            return {"ok": True}
        if op == "get":
            return {"values": self.units[c["unit"]].getValues(FC_OF_TABLE[c["table"]], c["address"], c.get("count", 1))}
        if op == "silent":
            # A unit missing from the context is not answered (ignore_missing_slaves).
            if c["on"]:
                self.silent.add(c["unit"])
                self.context._slaves.pop(c["unit"], None)
            else:
                self.silent.discard(c["unit"])
                self.context._slaves[c["unit"]] = self.units[c["unit"]]
            return {"ok": True}
        if op == "busy":
            (self.busy.add if c["on"] else self.busy.discard)(c["unit"])
            return {"ok": True}
        if op == "requests":
            return {"requests": {str(k): v for k, v in self.requests.items()}}
        return {"error": f"unknown op {op}"}


def main():
    port, baud, parity, units = sys.argv[1], int(sys.argv[2]), sys.argv[3], [int(u) for u in sys.argv[4].split(",")]
    srv = Server(port, baud, parity, units)

    # Count the requests each unit executes (validate runs once per request).
    for u, ctx in srv.units.items():
        original = ctx.validate

        def validate(fc, address, count=1, _u=u, _orig=original):
            srv.requests[_u] += 1
            return _orig(fc, address, count)

        ctx.validate = validate

    async def run():
        loop = asyncio.get_running_loop()
        await srv.server.start()
        if srv.server.transport is None:
            print(json.dumps({"error": f"cannot open {port}"}), flush=True)
            sys.exit(1)
        print(json.dumps({"ready": True}), flush=True)

        def read_commands():
            for line in sys.stdin:
                line = line.strip()
                if not line:
                    continue
                done = threading.Event()
                out = {}

                def apply():
                    try:
                        out.update(srv.command(json.loads(line)))
                    except Exception as e:  # a bad command is the test's bug: say so
                        out["error"] = repr(e)
                    done.set()

                loop.call_soon_threadsafe(apply)
                done.wait()
                print(json.dumps(out), flush=True)
            loop.call_soon_threadsafe(loop.stop)

        threading.Thread(target=read_commands, daemon=True).start()
        await asyncio.Event().wait()

    try:
        asyncio.run(run())
    except RuntimeError:
        pass  # the loop stopped when stdin closed


if __name__ == "__main__":
    main()
