"""The firmware's own protocol.c, compiled for the host and loaded through ctypes.

The virtual board and the tests run the device side through this, so host and firmware code are tested
against each other, not against a Python re-implementation. The library is built once per source hash
into a cache directory (OFA_MCU_CACHE, default ~/.cache/ofa-mcu) with the system C compiler ($CC or cc).
"""
from __future__ import annotations

import ctypes as C
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

from ..errors import ToolMissingError
from ..resources import resource_dir
from . import framing as fr

PROTOCOL_DIR = resource_dir("firmware_templates") / "common"
PROTOCOL_C = PROTOCOL_DIR / "protocol.c"
PROTOCOL_H = PROTOCOL_DIR / "protocol.h"
HOST_CFLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared")


def cache_dir() -> Path:
    return Path(os.environ.get("OFA_MCU_CACHE", Path.home() / ".cache" / "ofa-mcu")) / "protocol"


def find_cc() -> str:
    cc = os.environ.get("CC") or "cc"
    path = shutil.which(cc) or shutil.which("gcc") or shutil.which("clang")
    if not path:
        raise ToolMissingError(f"no C compiler found (tried {cc}, gcc, clang) to build protocol.c for the host",
                               hint="install one (Debian/Ubuntu: apt-get install gcc) or set CC")
    return path


def build_library(extra_flags: Sequence[str] = ()) -> Path:
    """Compile protocol.c to a shared library (cached by source and flags); return its path."""
    src = PROTOCOL_C.read_bytes() + PROTOCOL_H.read_bytes()
    flags = (*HOST_CFLAGS, *extra_flags)
    key = hashlib.sha256(src + repr(flags).encode()).hexdigest()[:16]
    out = cache_dir() / f"libofa_protocol-{key}.so"
    if out.exists():
        return out
    cc = find_cc()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".libofa_protocol-", suffix=".so", dir=out.parent)
    os.close(fd)
    try:
        r = subprocess.run([cc, *flags, "-I", str(PROTOCOL_DIR), str(PROTOCOL_C), "-o", tmp],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise ToolMissingError(f"{cc} could not build protocol.c for the host:\n{r.stderr.strip()}",
                                   hint="protocol.c must compile as plain C99 with -Wall -Wextra -Werror")
        os.replace(tmp, out)  # atomic: concurrent builders race harmlessly
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


class DeviceInfoC(C.Structure):
    _fields_ = [("board_id", C.c_char_p), ("firmware_version", C.c_char_p),
                ("model_hash", C.c_uint8 * fr.MODEL_HASH_LEN), ("input_dtype", C.c_uint8),
                ("input_rank", C.c_uint8), ("input_dims", C.c_uint16 * 4), ("input_bytes", C.c_uint32),
                ("input_scale", C.c_float), ("input_zero_point", C.c_int32), ("output_dtype", C.c_uint8),
                ("output_bytes", C.c_uint32), ("output_scale", C.c_float), ("output_zero_point", C.c_int32),
                ("arena_bytes", C.c_uint32), ("cycle_hz", C.c_uint32), ("flags", C.c_uint8),
                ("window", C.c_uint8)]


class OpCyclesC(C.Structure):
    _fields_ = [("op_code", C.c_uint16), ("cycles", C.c_uint64)]


U8P = C.POINTER(C.c_uint8)
WRITE_FN = C.CFUNCTYPE(C.c_int, C.c_void_p, U8P, C.c_size_t)
INVOKE_FN = C.CFUNCTYPE(C.c_int, C.c_void_p, U8P, C.c_size_t, U8P, C.c_size_t, C.POINTER(C.c_size_t),
                        C.POINTER(C.c_uint64))
SET_INPUT_FN = C.CFUNCTYPE(C.c_int, C.c_void_p, C.c_uint32, U8P, C.c_size_t)
PROFILE_FN = C.CFUNCTYPE(C.c_int, C.c_void_p, C.POINTER(OpCyclesC), C.c_size_t, C.POINTER(C.c_size_t))


class ConfigC(C.Structure):
    _fields_ = [("info", C.POINTER(DeviceInfoC)), ("user", C.c_void_p), ("write", WRITE_FN),
                ("invoke", INVOKE_FN), ("set_input", SET_INPUT_FN), ("profile", PROFILE_FN),
                ("rx_buf", U8P), ("rx_cap", C.c_size_t), ("tx_buf", U8P), ("tx_cap", C.c_size_t),
                ("input_buf", U8P), ("input_cap", C.c_size_t), ("output_buf", U8P), ("output_cap", C.c_size_t),
                ("prof_buf", C.POINTER(OpCyclesC)), ("prof_cap", C.c_size_t)]


class DeviceC(C.Structure):
    _fields_ = [("cfg", ConfigC), ("max_payload", C.c_size_t), ("rx_len", C.c_size_t),
                ("rx_overflow", C.c_uint8), ("session", C.c_uint8), ("have_last", C.c_uint8),
                ("last_seq", C.c_uint8), ("last_type", C.c_uint8), ("have_last_chunk", C.c_uint8),
                ("last_chunk_seq", C.c_uint8), ("last_chunk_offset", C.c_uint32), ("tx_len", C.c_size_t),
                ("have_output", C.c_uint8), ("output_len", C.c_size_t), ("last_cycles", C.c_uint64),
                ("have_profile", C.c_uint8), ("prof_len", C.c_size_t), ("small_tx", C.c_uint8 * 24),
                ("frames_ok", C.c_uint32), ("frames_bad", C.c_uint32), ("duplicates", C.c_uint32),
                ("errors_sent", C.c_uint32)]


_lib_lock = threading.Lock()


@lru_cache(maxsize=None)
def load_library(extra_flags: tuple[str, ...] = ()) -> C.CDLL:
    with _lib_lock:
        lib = C.CDLL(str(build_library(extra_flags)))
    lib.proto_crc32.restype = C.c_uint32
    lib.proto_crc32.argtypes = [C.c_uint32, C.c_char_p, C.c_size_t]
    lib.proto_cobs_encode.restype = C.c_size_t
    lib.proto_cobs_encode.argtypes = [C.c_char_p, C.c_size_t, U8P, C.c_size_t]
    lib.proto_cobs_decode.restype = C.c_long
    lib.proto_cobs_decode.argtypes = [C.c_char_p, C.c_size_t, U8P, C.c_size_t]
    lib.proto_frame_encode.restype = C.c_size_t
    lib.proto_frame_encode.argtypes = [C.c_uint8, C.c_uint8, C.c_char_p, C.c_size_t, U8P, C.c_size_t]
    lib.proto_frame_decode.restype = C.c_int
    lib.proto_frame_decode.argtypes = [U8P, C.c_size_t, U8P, U8P, C.POINTER(U8P), C.POINTER(C.c_size_t)]
    lib.proto_device_init.restype = C.c_int
    lib.proto_device_init.argtypes = [C.POINTER(DeviceC), C.POINTER(ConfigC)]
    lib.proto_device_feed.restype = None
    lib.proto_device_feed.argtypes = [C.POINTER(DeviceC), C.c_char_p, C.c_size_t]
    lib.proto_abi_size.restype = C.c_size_t
    lib.proto_abi_size.argtypes = [C.c_int]
    mirrors = {0: DeviceInfoC, 1: OpCyclesC, 2: ConfigC, 3: DeviceC}
    for which, cls in mirrors.items():
        if lib.proto_abi_size(which) != C.sizeof(cls):
            raise ToolMissingError(f"protocol.h and pipeline/serial/native.py disagree on {cls.__name__} "
                                   f"({lib.proto_abi_size(which)} vs {C.sizeof(cls)} bytes)",
                                   hint="update the ctypes mirror in native.py with the struct change")
    return lib


# ------------------------------------------------------------------ codec wrappers (for tests)

def c_crc32(data: bytes, crc: int = 0) -> int:
    return load_library().proto_crc32(crc, data, len(data))


def c_cobs_encode(data: bytes) -> bytes:
    cap = len(data) + len(data) // 254 + 2
    buf = (C.c_uint8 * cap)()
    n = load_library().proto_cobs_encode(data, len(data), buf, cap)
    return bytes(buf[:n])


def c_cobs_decode(data: bytes) -> bytes | None:
    buf = (C.c_uint8 * max(1, len(data)))()
    n = load_library().proto_cobs_decode(data, len(data), buf, len(data))
    return None if n < 0 else bytes(buf[:n])


def c_encode_frame(ftype: int, seq: int, payload: bytes) -> bytes:
    cap = fr.encoded_size(len(payload))
    buf = (C.c_uint8 * cap)()
    n = load_library().proto_frame_encode(ftype, seq, payload, len(payload), buf, cap)
    return bytes(buf[:n])


def c_decode_frame(block: bytes) -> tuple[int, int, int, bytes]:
    """Decode the bytes before a delimiter; return (status, type, seq, payload)."""
    buf = (C.c_uint8 * max(1, len(block))).from_buffer_copy(block.ljust(1, b"\x00"))
    t, s, ln = C.c_uint8(), C.c_uint8(), C.c_size_t()
    p = U8P()
    rc = load_library().proto_frame_decode(buf, len(block), C.byref(t), C.byref(s), C.byref(p), C.byref(ln))
    if rc != 0:
        return rc, 0, 0, b""
    return rc, t.value, s.value, C.string_at(p, ln.value)


# ------------------------------------------------------------------ the device

InvokeFn = Callable[[bytes], tuple[bytes, int]]
ProfileFn = Callable[[bytes], Sequence[tuple[int, int]]]


class NativeDevice:
    """The C device state machine with Python callbacks.

    `write(bytes)` receives every frame the device sends; `invoke(input) -> (output, cycles)` runs the
    model; `profile(input) -> [(op_code, cycles), ...]` is optional. Call `feed(bytes)` with what arrives.
    An exception in a callback is re-raised from `feed` after the C code returns.
    """

    def __init__(self, info: fr.DeviceInfo, *, write: Callable[[bytes], None], invoke: InvokeFn,
                 profile: ProfileFn | None = None, max_payload: int = fr.DEFAULT_MAX_PAYLOAD,
                 max_ops: int = 256):
        self.lib = load_library()
        self._write, self._invoke, self._profile = write, invoke, profile
        self._error: BaseException | None = None
        hash_bytes = bytes.fromhex(info.model_hash)[:fr.MODEL_HASH_LEN].ljust(fr.MODEL_HASH_LEN, b"\x00")
        self._strings = (info.board_id.encode(), info.firmware_version.encode())
        dims = list(info.input_shape)[:4] + [0] * (4 - min(4, len(info.input_shape)))
        self.info_c = DeviceInfoC(
            self._strings[0], self._strings[1], (C.c_uint8 * fr.MODEL_HASH_LEN)(*hash_bytes),
            fr.DTYPE_CODES[info.input_dtype], len(info.input_shape), (C.c_uint16 * 4)(*dims),
            info.input_bytes, info.input_scale, info.input_zero_point, fr.DTYPE_CODES[info.output_dtype],
            info.output_bytes, info.output_scale, info.output_zero_point, info.arena_bytes, info.cycle_hz,
            info.flags | (fr.FLAG_PROFILE if profile else 0), info.window)
        size = fr.encoded_size(max_payload)
        self.rx = (C.c_uint8 * size)()
        self.tx = (C.c_uint8 * size)()
        self.input = (C.c_uint8 * max(1, info.input_bytes))()
        self.output = (C.c_uint8 * max(1, info.output_bytes))()
        self.prof = (OpCyclesC * max_ops)()
        # Keep the C callables alive as long as the device: ctypes does not.
        self._cbs = (WRITE_FN(self._c_write), INVOKE_FN(self._c_invoke),
                     PROFILE_FN(self._c_profile) if profile else PROFILE_FN())
        self.cfg = ConfigC(C.pointer(self.info_c), None, self._cbs[0], self._cbs[1], SET_INPUT_FN(),
                           self._cbs[2], self.rx, size, self.tx, size, self.input, info.input_bytes,
                           self.output, info.output_bytes, self.prof, max_ops if profile else 0)
        self.dev = DeviceC()
        self.resets = -1
        self.reset()

    def reset(self) -> None:
        """Power-cycle: forget everything (including the input) and send the BOOT banner."""
        C.memset(self.input, 0, C.sizeof(self.input))
        rc = self.lib.proto_device_init(C.byref(self.dev), C.byref(self.cfg))
        if rc != 0:
            raise ValueError(f"proto_device_init failed with {fr.ERROR_NAMES.get(rc, rc)}")
        self.resets += 1
        self._raise()

    def feed(self, data: bytes) -> None:
        self.lib.proto_device_feed(C.byref(self.dev), bytes(data), len(data))
        self._raise()

    @property
    def counters(self) -> dict:
        d = self.dev
        return {"frames_ok": d.frames_ok, "frames_bad": d.frames_bad, "duplicates": d.duplicates,
                "errors_sent": d.errors_sent, "max_payload": d.max_payload}

    def _raise(self) -> None:
        if self._error is not None:
            e, self._error = self._error, None
            raise e

    def _c_write(self, _user, data, n) -> int:
        try:
            self._write(C.string_at(data, n))
            return 0
        except BaseException as e:  # noqa: BLE001 - must not unwind through C
            self._error = e
            return 1

    def _c_invoke(self, _user, inp, in_len, out, out_cap, out_len, cycles) -> int:
        try:
            result, cyc = self._invoke(C.string_at(inp, in_len))
            if len(result) > out_cap:
                return fr.E_TOO_LARGE
            C.memmove(out, result, len(result))
            out_len[0] = len(result)
            cycles[0] = int(cyc)
            return 0
        except BaseException as e:  # noqa: BLE001
            self._error = e
            return 1

    def _c_profile(self, _user, ops, cap, n_ops) -> int:
        try:
            recs = list(self._profile(C.string_at(self.input, C.sizeof(self.input))))
            if len(recs) > cap:
                return fr.E_TOO_LARGE
            for i, (code, cyc) in enumerate(recs):
                ops[i].op_code = code
                ops[i].cycles = int(cyc)
            n_ops[0] = len(recs)
            return 0
        except BaseException as e:  # noqa: BLE001
            self._error = e
            return 1
