"""The EEMBC / MLPerf Tiny runner's text protocol (performance mode): device (the firmware's eembc.h through
ctypes) and host client. Grammar and the implemented subset: docs/PROTOCOL.md.

`EembcDevice` runs firmware_templates/common/eembc.h compiled for the host, as the virtual board's device
side (`SimOptions(protocol="eembc")`, or "both": detection on the first byte, as the firmware does).
`EembcClient` is the host: it speaks exactly what mlcommons/tiny's runner sends (`name%`, `profile%`,
`db load N%`, `db HEX%` with 31 bytes a command, `infer N W%`, replies up to `m-ready`), and offers the
calls the serial checker makes (`hello`, `send_input`, `invoke`), so `ofa-mcu check --protocol eembc`
measures an ofa-mcu firmware built with PROTOCOL=EEMBC or BOTH, and MLPerf Tiny reference firmware.
"""
from __future__ import annotations

import ctypes as C
import hashlib
import os
import re
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import SerialLinkError, ToolMissingError
from . import framing as fr
from .native import PROTOCOL_DIR, cache_dir, find_cc

EEMBC_H = PROTOCOL_DIR / "eembc.h"
DEFAULT_BAUD = 115200  # the runner's performance-mode baud (devices_kws_ic_vww.yaml)
DB_CHUNK_BYTES = 31    # bytes per `db HEX%` command, as the runner sends them (26 with a power manager)
TERMINATOR = b"%"
DTYPE_INT16 = fr.DTYPE_INT16


@lru_cache(maxsize=1)
def load_library() -> C.CDLL:
    src = EEMBC_H.read_bytes()
    flags = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared", "-DEE_API=")
    key = hashlib.sha256(src + repr(flags).encode()).hexdigest()[:16]
    out = cache_dir() / f"libofa_eembc-{key}.so"
    if not out.exists():
        cc = find_cc()
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            unit = Path(tmp) / "eembc_host.c"
            unit.write_text('#include "eembc.h"\n')
            lib = Path(tmp) / "lib.so"
            r = subprocess.run([cc, *flags, "-I", str(PROTOCOL_DIR), str(unit), "-o", str(lib)],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise ToolMissingError(f"{cc} could not build eembc.h for the host:\n{r.stderr.strip()}",
                                       hint="eembc.h must compile as plain C99 with -Wall -Wextra -Werror")
            os.replace(lib, out)
    lib = C.CDLL(str(out))
    lib.ee_device_size.restype = C.c_size_t
    lib.ee_device_setup.restype = None
    lib.ee_device_setup.argtypes = [C.c_void_p, C.c_char_p, C.c_char_p, C.c_char_p, WRITE_FN, INVOKE_FN,
                                    MICROS_FN, C.c_void_p, C.c_void_p, C.c_size_t, C.c_void_p, C.c_size_t,
                                    C.c_uint8, C.c_float, C.c_int32, C.c_int]
    lib.ee_device_feed.restype = None
    lib.ee_device_feed.argtypes = [C.c_void_p, C.c_char_p, C.c_size_t]
    return lib


U8P = C.POINTER(C.c_uint8)
WRITE_FN = C.CFUNCTYPE(C.c_int, C.c_void_p, U8P, C.c_size_t)
INVOKE_FN = C.CFUNCTYPE(C.c_int, C.c_void_p, U8P, C.c_size_t, U8P, C.c_size_t)
MICROS_FN = C.CFUNCTYPE(C.c_uint64, C.c_void_p)


class EembcDevice:
    """eembc.h's device with Python callbacks: `invoke(input bytes) -> (output bytes, cycles)`; the
    microsecond clock advances by each inference's cycles at `cycle_hz` (simulated time)."""

    def __init__(self, *, write: Callable[[bytes], None], invoke: Callable[[bytes], tuple[bytes, int]],
                 input_bytes: int, output_bytes: int, output_dtype: str, output_scale: float,
                 output_zero_point: int, cycle_hz: int, vendor: str, model: str, model_hash: str,
                 banner: bool = True):
        self.lib = load_library()
        self._write, self._invoke, self._hz = write, invoke, max(1, int(cycle_hz))
        self._error: BaseException | None = None
        self._cycles = 0
        self._strings = (vendor.encode(), model.encode(), model_hash.encode())
        self._in = (C.c_uint8 * max(1, input_bytes))()
        self._out = (C.c_uint8 * max(1, output_bytes))()
        self._state = C.create_string_buffer(self.lib.ee_device_size())
        self._cbs = (WRITE_FN(self._on_write), INVOKE_FN(self._on_invoke), MICROS_FN(self._on_micros))
        self._args = (input_bytes, output_bytes, DTYPE_INT16 if output_dtype == "int16" else fr.DTYPE_INT8,
                      output_scale, output_zero_point)
        self._lock = threading.Lock()
        self.reset(banner)

    def reset(self, banner: bool = True) -> None:
        in_len, out_len, dt, scale, zp = self._args
        with self._lock:
            self.lib.ee_device_setup(self._state, *self._strings, *self._cbs, None, self._in, in_len,
                                     self._out, out_len, dt, scale, zp, int(banner))

    def feed(self, data: bytes) -> None:
        with self._lock:
            self.lib.ee_device_feed(self._state, data, len(data))
        if self._error is not None:
            e, self._error = self._error, None
            raise e

    def _on_write(self, _user, data, n) -> int:
        try:
            self._write(C.string_at(data, n))
            return 0
        except BaseException as e:  # noqa: BLE001 - re-raised from feed()
            self._error = e
            return 1

    def _on_invoke(self, _user, inp, n_in, out, n_out) -> int:
        try:
            result, cycles = self._invoke(C.string_at(inp, n_in))
            if len(result) != n_out:
                return 1
            C.memmove(out, result, n_out)
            self._cycles += int(cycles)
            return 0
        except BaseException as e:  # noqa: BLE001
            self._error = e
            return 1

    def _on_micros(self, _user) -> int:
        return self._cycles * 1_000_000 // self._hz


# ------------------------------------------------------------------ host side

@dataclass(frozen=True)
class EembcResult:
    output: bytes          # raw output tensor bytes (from m-output, else re-quantized from m-results)
    cycles: int            # microseconds between the two m-lap-us lines (cycle_hz = 1 MHz)
    results: tuple[float, ...]
    exact: bool            # the device sent its raw output (m-output); else it was re-quantized


class EembcError(SerialLinkError):
    """The device answered an EEMBC command with an e-[...] line."""


_RESULTS = re.compile(r"^m-results-\[([^]]*)\]$")
_OUTPUT = re.compile(r"^m-output-\[([0-9a-fA-F]*)\]$")
_LAP = re.compile(r"^m-lap-us-([0-9]+)$")


class EembcClient:
    """Host end of the runner protocol over a pyserial port. Also duck-types ProtocolClient for check."""

    def __init__(self, port, *, model=None, timeout_s: float = 5.0, retries: int = 3):
        from .client import LinkStats

        self.port = port
        self.model = model  # ModelInfo: output dtype/scale for re-quantizing m-results
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.stats = LinkStats()
        self.name = self.profile_name = self.model_name = self.model_hash = ""
        self._buf = b""
        port.timeout = 0.05

    # -- lines
    def _readline(self, deadline: float) -> str | None:
        while b"\n" not in self._buf:
            if time.monotonic() > deadline:
                return None
            chunk = self.port.read(max(1, self.port.in_waiting or 0))
            if chunk:
                self.stats.bytes_received += len(chunk)
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.replace(b"\r", b"").replace(b"\x00", b"").decode("latin-1")

    def command(self, cmd: str, timeout_s: float | None = None, expect: str | None = None) -> list[str]:
        """Send `cmd%`; return the reply lines up to (without) m-ready. e-[...] lines raise EembcError.

        With `expect` (a line prefix), lines and m-ready before that line are stale (a boot banner, the
        reply to a command sent before we connected) and are skipped: how `hello` gets in step."""
        wire = cmd.encode("ascii") + TERMINATOR
        self.port.write(wire)
        self.stats.frames_sent += 1
        self.stats.bytes_sent += len(wire)
        name = cmd.split(" ", 1)[0]
        self.stats.requests[name] = self.stats.requests.get(name, 0) + 1
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        lines = []
        while True:
            line = self._readline(deadline)
            if line is None:
                self.stats.timeouts += 1
                raise SerialLinkError(f"no m-ready after '{cmd}%' within {timeout_s or self.timeout_s:g} s "
                                      f"(got {lines[-3:] or 'nothing'})",
                                      hint="is the firmware built with PROTOCOL=EEMBC or BOTH, and the baud "
                                           "right (the runner's default is 115200)?")
            self.stats.frames_received += 1
            if expect is not None:
                if line.startswith(expect):
                    expect = None
                else:
                    continue
            if line.startswith("m-ready"):
                break
            if line:
                lines.append(line)
        errors = [ln for ln in lines if ln.startswith("e-[")]
        if errors:
            raise EembcError(f"device refused '{cmd}': {errors[0]}")
        return lines

    # -- the runner's calls
    def hello(self) -> fr.DeviceInfo:
        """name% and profile% (retried once: the first command may meet boot noise)."""
        self.port.reset_input_buffer()
        for attempt in range(2):
            try:
                lines = self.command("name", expect="m-name-") + self.command("profile")
                break
            except SerialLinkError:
                if attempt:
                    raise
                self.port.write(TERMINATOR)  # end whatever half command the device holds
                time.sleep(0.2)
                self.port.reset_input_buffer()
                self._buf = b""
        for ln in lines:
            if m := re.match(r"^m-name-dut-\[([^]]*)\]$", ln):
                self.name = m.group(1)
            elif m := re.match(r"^m-profile-\[([^]]*)\]$", ln):
                self.profile_name = m.group(1)
            elif m := re.match(r"^m-model-hash-\[([0-9a-f]*)\]$", ln):
                self.model_hash = m.group(1)
            elif m := re.match(r"^m-model-\[([^]]*)\]$", ln):
                self.model_name = m.group(1)
        mi = self.model
        sim = "board-sim" in self.name
        return fr.DeviceInfo(
            # m-lap-us is a microsecond timer reading (cycle_hz 1 MHz), simulated on the virtual board
            protocol_version=0, flags=(fr.FLAG_SIMULATED | fr.FLAG_REFERENCE_KERNELS) if sim else fr.FLAG_CYCLES_TIMER,
            window=1,
            max_payload=DB_CHUNK_BYTES, model_hash=self.model_hash or "",
            input_dtype=mi.input.dtype.lower() if mi else "int8", input_shape=tuple(mi.input.shape) if mi else (),
            input_bytes=mi.input.nbytes if mi else 0, input_scale=mi.input.scale if mi else 0.0,
            input_zero_point=mi.input.zero_point if mi else 0,
            output_dtype=mi.output.dtype.lower() if mi else "int8", output_bytes=mi.output.nbytes if mi else 0,
            output_scale=mi.output.scale if mi else 0.0, output_zero_point=mi.output.zero_point if mi else 0,
            arena_bytes=0, cycle_hz=1_000_000, board_id=self.name or "eembc-dut",
            firmware_version=f"{self.profile_name} / model {self.model_name}")

    def load(self, data: bytes) -> None:
        self.command(f"db load {len(data)}")
        for i in range(0, len(data), DB_CHUNK_BYTES):
            self.command("db " + data[i:i + DB_CHUNK_BYTES].hex())

    def infer(self, n: int = 1, warmups: int = 0, timeout_s: float = 60.0) -> EembcResult:
        lines = self.command(f"infer {int(n)} {int(warmups)}", timeout_s=timeout_s)
        laps = [int(m.group(1)) for ln in lines if (m := _LAP.match(ln))]
        results: tuple[float, ...] = ()
        raw = None
        for ln in lines:
            if m := _RESULTS.match(ln):
                results = tuple(float(v) for v in m.group(1).split(",") if v.strip())
            elif m := _OUTPUT.match(ln):
                raw = bytes.fromhex(m.group(1))
        us = (laps[-1] - laps[0]) // max(1, n) if len(laps) >= 2 else 0
        if raw is None:
            raw = self._requantize(results)
        return EembcResult(raw, int(us), results, exact=raw is not None and any(_OUTPUT.match(x) for x in lines))

    def _requantize(self, results: tuple[float, ...]) -> bytes:
        """Reference firmware prints only dequantized %0.3f values: quantize them back (exact while the
        output scale is coarser than 0.002)."""
        if self.model is None:
            return b""
        t = self.model.output
        dt = np.int16 if t.dtype == "INT16" else np.int8
        q = np.round(np.asarray(results, np.float64) / (t.scale or 1.0)) + t.zero_point
        info = np.iinfo(dt)
        return np.clip(q, info.min, info.max).astype(np.dtype(dt).newbyteorder("<")).tobytes()

    # -- ProtocolClient's interface, for the checker
    def send_input(self, data: bytes) -> None:
        self.load(data)

    def invoke(self):
        from .client import InvokeResult

        r = self.infer(1, 0)
        return InvokeResult(r.output, r.cycles)

    def close(self) -> None:
        self.port.close()

    def detach(self) -> None:
        pass
