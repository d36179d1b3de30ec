"""Test fixture: a HOSTILE device on a real pseudo-terminal, speaking just enough of the wire protocol to
send the host values a correct firmware never would (max payload 0, NaN scales, a 4 GB output, escape codes
in its board id, an INVOKE acknowledged and never answered).

Not a model of the firmware (that is the virtual board, pipeline/serial/sim.py, running the real
protocol.c); the correct behaviour is tested against that. Not a test module (no `test_` prefix).
"""
from __future__ import annotations

import os
import select
import struct
import threading
import tty
from dataclasses import dataclass, replace

from pipeline.serial import framing as fr
from pipeline.serial.framing import DeviceInfo


def info_for(model_info, **overrides) -> DeviceInfo:
    """The INFO a correct firmware of `model_info` (a ModelInfo) would send, with fields overridden."""
    inp, out = model_info.input, model_info.output
    base = DeviceInfo(protocol_version=fr.VERSION, flags=fr.FLAG_REFERENCE_KERNELS, window=1,
                      max_payload=fr.DEFAULT_MAX_PAYLOAD, model_hash=model_info.hash16,
                      input_dtype="int8", input_shape=tuple(inp.shape), input_bytes=inp.nbytes,
                      input_scale=inp.scale, input_zero_point=inp.zero_point, output_dtype="int8",
                      output_bytes=out.nbytes, output_scale=out.scale, output_zero_point=out.zero_point,
                      arena_bytes=0, cycle_hz=1_000_000, board_id="hostile", firmware_version="0")
    return replace(base, **overrides)


@dataclass
class Behaviour:
    info: DeviceInfo
    info_payload: bytes | None = None  # raw INFO payload instead of info.pack() (truncated, garbage)
    invoke: str = "normal"  # normal | ack_then_silent | huge_output | short_result
    output: bytes = b""


class HostileDevice:
    """`with HostileDevice(behaviour) as dev:` then open `dev.port_path` like a serial device."""

    def __init__(self, behaviour: Behaviour):
        self.b = behaviour
        self.invokes = 0
        self._stop = threading.Event()

    def __enter__(self) -> "HostileDevice":
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        tty.setraw(self._master)
        self.port_path = os.ttyname(self._slave)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        os.close(self._master)
        os.close(self._slave)

    def _send(self, ftype: int, seq: int, payload: bytes = b"") -> None:
        os.write(self._master, fr.encode_frame(ftype, seq, payload))

    def _serve(self) -> None:
        dec = fr.FrameDecoder()
        while not self._stop.is_set():
            r, _, _ = select.select([self._master], [], [], 0.05)
            if not r:
                continue
            try:
                data = os.read(self._master, 4096)
            except OSError:
                return
            for f in dec.feed(data):
                if isinstance(f, fr.Frame):
                    self._answer(f)

    def _answer(self, f: fr.Frame) -> None:
        b = self.b
        if f.type == fr.T_HELLO:
            self._send(fr.T_INFO, f.seq, b.info_payload if b.info_payload is not None else b.info.pack())
        elif f.type == fr.T_SET_INPUT:
            self._send(fr.T_ACK, f.seq, bytes([fr.T_SET_INPUT]) + f.payload[:4])
        elif f.type == fr.T_INVOKE:
            self.invokes += 1
            self._send(fr.T_ACK, f.seq, bytes([fr.T_INVOKE]) + b"\x00" * 4)
            if b.invoke == "ack_then_silent":
                return
            if b.invoke == "huge_output":
                self._send(fr.T_RESULT, f.seq, struct.pack("<QI", 1000, 0xFFFFFFFF) + bytes(64))
            elif b.invoke == "short_result":
                self._send(fr.T_RESULT, f.seq, b"\x01\x02\x03\x04\x05")
            else:
                self._send(fr.T_RESULT, f.seq, struct.pack("<QI", 1000, len(b.output)) + b.output)
        elif f.type == fr.T_READ_OUTPUT:
            off = struct.unpack_from("<I", f.payload)[0]
            self._send(fr.T_OUTPUT, f.seq, struct.pack("<II", off, 0xFFFFFFFF) + bytes(200))
