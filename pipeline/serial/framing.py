"""Host side of the wire-protocol frame codec (docs/PROTOCOL.md); mirrors firmware_templates/common/protocol.h.

Frame: COBS(ver u8 | type u8 | seq u8 | len u16le | payload | crc32 u32le) followed by 0x00.
CRC-32/IEEE 802.3 (zlib.crc32). Tests check these constants against protocol.h and this codec against
the C one, byte for byte.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from ..errors import printable

VERSION = 1
HEADER_SIZE = 5
CRC_SIZE = 4
MODEL_HASH_LEN = 16
CHUNK_HEADER = 4
DEFAULT_MAX_PAYLOAD = 256 + CHUNK_HEADER
MIN_MAX_PAYLOAD = 132
MAX_MAX_PAYLOAD = 65535

# frame types
T_HELLO, T_SET_INPUT, T_INVOKE, T_READ_OUTPUT, T_PROFILE = 0x01, 0x02, 0x03, 0x04, 0x05
T_INFO, T_ACK, T_RESULT, T_OUTPUT, T_PROFILE_PAGE, T_NAK, T_BOOT, T_ERROR = (
    0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x8F)
TYPE_NAMES = {T_HELLO: "HELLO", T_SET_INPUT: "SET_INPUT", T_INVOKE: "INVOKE", T_READ_OUTPUT: "READ_OUTPUT",
              T_PROFILE: "PROFILE", T_INFO: "INFO", T_ACK: "ACK", T_RESULT: "RESULT", T_OUTPUT: "OUTPUT",
              T_PROFILE_PAGE: "PROFILE_PAGE", T_NAK: "NAK", T_BOOT: "BOOT", T_ERROR: "ERROR"}

# error codes (NAK reason / ERROR code)
E_CRC, E_FRAMING, E_OVERFLOW, E_VERSION, E_UNKNOWN_TYPE, E_BAD_LENGTH, E_BAD_OFFSET = 1, 2, 3, 4, 5, 6, 7
E_NO_SESSION, E_INVOKE_FAILED, E_UNSUPPORTED, E_NO_OUTPUT, E_TOO_LARGE = 8, 9, 10, 11, 12
ERROR_NAMES = {0: "OK", E_CRC: "CRC", E_FRAMING: "FRAMING", E_OVERFLOW: "OVERFLOW", E_VERSION: "VERSION",
               E_UNKNOWN_TYPE: "UNKNOWN_TYPE", E_BAD_LENGTH: "BAD_LENGTH", E_BAD_OFFSET: "BAD_OFFSET",
               E_NO_SESSION: "NO_SESSION", E_INVOKE_FAILED: "INVOKE_FAILED", E_UNSUPPORTED: "UNSUPPORTED",
               E_NO_OUTPUT: "NO_OUTPUT", E_TOO_LARGE: "TOO_LARGE"}

DTYPE_FLOAT32, DTYPE_INT32, DTYPE_UINT8, DTYPE_INT16, DTYPE_INT8 = 0, 2, 3, 7, 9
DTYPE_NAMES = {DTYPE_FLOAT32: "float32", DTYPE_INT32: "int32", DTYPE_UINT8: "uint8", DTYPE_INT16: "int16",
               DTYPE_INT8: "int8"}
DTYPE_CODES = {v: k for k, v in DTYPE_NAMES.items()}

FLAG_PROFILE, FLAG_CYCLES_TIMER, FLAG_SIMULATED, FLAG_REFERENCE_KERNELS = 0x01, 0x02, 0x04, 0x08
# Where a figure was measured; every report states one of these.
MEASURED_SIM = "host runtime (virtual board)"
MEASURED_QEMU = "firmware in QEMU"
MEASURED_HARDWARE = "hardware"
# `cycles` are instructions executed in an emulator (QEMU -icount shift=0), not cycles of a real core.
FLAG_INSTRUCTIONS = 0x40

INFO_FIXED = struct.Struct("<BBBH16sBB4HIfiBIfiII")  # 64 bytes, then two length-prefixed strings
assert INFO_FIXED.size == 64


def frame_size(max_payload: int) -> int:
    return HEADER_SIZE + max_payload + CRC_SIZE


def encoded_size(max_payload: int) -> int:
    """Largest wire size (COBS + delimiter) of a frame with `max_payload` bytes; as PROTO_ENCODED_SIZE."""
    f = frame_size(max_payload)
    return f + (f + 253) // 254 + 2


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def cobs_encode(data: bytes) -> bytes:
    out = bytearray([0])
    code_pos, code = 0, 1
    for b in data:
        if b:
            out.append(b)
            code += 1
        if not b or code == 0xFF:
            out[code_pos] = code
            code_pos, code = len(out), 1
            out.append(0)
    out[code_pos] = code
    return bytes(out)


def cobs_decode(data: bytes) -> bytes | None:
    """Decode one COBS block (no delimiter); None if it is not valid COBS."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        i += 1
        if code == 0 or i + code - 1 > n:
            return None
        block = data[i:i + code - 1]
        if 0 in block:
            return None
        out += block
        i += code - 1
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


def encode_frame(ftype: int, seq: int, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_MAX_PAYLOAD}")
    raw = struct.pack("<BBBH", VERSION, ftype, seq & 0xFF, len(payload)) + bytes(payload)
    return cobs_encode(raw + struct.pack("<I", crc32(raw))) + b"\x00"


@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    payload: bytes

    @property
    def name(self) -> str:
        return TYPE_NAMES.get(self.type, f"0x{self.type:02x}")


@dataclass(frozen=True)
class BadFrame:
    """Bytes between delimiters that are not a valid frame (noise, a torn or corrupted frame)."""
    reason: int
    raw: bytes


def decode_frame(block: bytes) -> Frame | BadFrame:
    """Decode the bytes between two 0x00 delimiters."""
    raw = cobs_decode(block)
    if raw is None or len(raw) < HEADER_SIZE + CRC_SIZE:
        return BadFrame(E_FRAMING, block)
    ver, ftype, seq, length = struct.unpack_from("<BBBH", raw)
    if length + HEADER_SIZE + CRC_SIZE != len(raw):
        return BadFrame(E_FRAMING, block)
    if crc32(raw[:-CRC_SIZE]) != struct.unpack_from("<I", raw, len(raw) - CRC_SIZE)[0]:
        return BadFrame(E_CRC, block)
    if ver != VERSION:
        return BadFrame(E_VERSION, block)
    return Frame(ftype, seq, raw[HEADER_SIZE:-CRC_SIZE])


class FrameDecoder:
    """Split a byte stream into frames at 0x00; bytes before the first delimiter are noise like any other."""

    def __init__(self, max_block: int = 1 << 17):
        self._buf = bytearray()
        self._max_block = max_block
        self._overflow = False

    @property
    def pending(self) -> int:
        """Bytes of an unfinished frame held."""
        return len(self._buf)

    def flush(self) -> BadFrame | None:
        """Give up on the unfinished frame (its delimiter was lost): return it as a BadFrame."""
        if not self._buf and not self._overflow:
            return None
        bad = BadFrame(E_FRAMING, bytes(self._buf))
        self._buf.clear()
        self._overflow = False
        return bad

    def feed(self, data: bytes) -> list[Frame | BadFrame]:
        out: list[Frame | BadFrame] = []
        start = 0
        while True:
            z = data.find(0, start)
            if z < 0:
                self._buf += data[start:]
                if len(self._buf) > self._max_block:  # a stream with no delimiters: do not grow forever
                    self._buf.clear()
                    self._overflow = True
                return out
            self._buf += data[start:z]
            if self._overflow:
                out.append(BadFrame(E_OVERFLOW, b""))
            elif self._buf:
                out.append(decode_frame(bytes(self._buf)))
            self._buf.clear()
            self._overflow = False
            start = z + 1


def check_info(info: "DeviceInfo") -> None:
    """Refuse INFO values the protocol does not allow (docs/PROTOCOL.md): raises ValueError naming the field."""
    import math

    if not MIN_MAX_PAYLOAD <= info.max_payload <= MAX_MAX_PAYLOAD:
        raise ValueError(f"max_payload {info.max_payload} is outside the protocol's {MIN_MAX_PAYLOAD}.."
                         f"{MAX_MAX_PAYLOAD}")
    for name in ("input_scale", "output_scale"):
        v = getattr(info, name)
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name} {v!r} is not a positive finite number")
    if info.input_bytes == 0 or info.output_bytes == 0:
        raise ValueError(f"input/output of {info.input_bytes}/{info.output_bytes} bytes")


@dataclass(frozen=True)
class DeviceInfo:
    """What a device says about itself in INFO / BOOT frames."""
    protocol_version: int
    flags: int
    window: int
    max_payload: int
    model_hash: str  # hex of the first 16 bytes of sha256 of the .tflite
    input_dtype: str
    input_shape: tuple[int, ...]
    input_bytes: int
    input_scale: float
    input_zero_point: int
    output_dtype: str
    output_bytes: int
    output_scale: float
    output_zero_point: int
    arena_bytes: int
    cycle_hz: int
    board_id: str
    firmware_version: str

    @property
    def simulated(self) -> bool:
        return bool(self.flags & FLAG_SIMULATED)

    @property
    def profile_supported(self) -> bool:
        return bool(self.flags & FLAG_PROFILE)

    @property
    def cycles_from_timer(self) -> bool:
        return bool(self.flags & FLAG_CYCLES_TIMER)

    @property
    def reference_kernels(self) -> bool:
        return bool(self.flags & FLAG_REFERENCE_KERNELS)

    @property
    def counts_instructions(self) -> bool:
        return bool(self.flags & FLAG_INSTRUCTIONS)

    @property
    def measured_on(self) -> str:
        """Where this device's figures come from: the virtual board, the firmware in QEMU, or hardware."""
        if self.simulated:
            return MEASURED_SIM
        return MEASURED_QEMU if self.counts_instructions else MEASURED_HARDWARE

    @property
    def chunk_bytes(self) -> int:
        return self.max_payload - CHUNK_HEADER

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["input_shape"] = list(self.input_shape)
        d.update(simulated=self.simulated, profile_supported=self.profile_supported,
                 cycles_from_timer=self.cycles_from_timer, reference_kernels=self.reference_kernels,
                 counts_instructions=self.counts_instructions, measured_on=self.measured_on)
        return d

    @classmethod
    def parse(cls, payload: bytes) -> "DeviceInfo":
        if len(payload) < INFO_FIXED.size + 2:
            raise ValueError(f"INFO payload of {len(payload)} bytes is too short")
        (ver, flags, window, max_payload, mhash, in_dt, rank, d0, d1, d2, d3, in_bytes, in_scale, in_zp,
         out_dt, out_bytes, out_scale, out_zp, arena, cycle_hz) = INFO_FIXED.unpack_from(payload)
        pos = INFO_FIXED.size
        strings = []
        for _ in range(2):
            if pos >= len(payload) or pos + 1 + payload[pos] > len(payload):
                raise ValueError("INFO payload strings are truncated")
            n = payload[pos]
            strings.append(printable(payload[pos + 1:pos + 1 + n].decode("utf-8", "replace")))
            pos += 1 + n
        return cls(ver, flags, max(1, window), max_payload, mhash.hex(),
                   DTYPE_NAMES.get(in_dt, f"type{in_dt}"), (d0, d1, d2, d3)[:min(rank, 4)], in_bytes,
                   float(in_scale), in_zp, DTYPE_NAMES.get(out_dt, f"type{out_dt}"), out_bytes,
                   float(out_scale), out_zp, arena, cycle_hz, strings[0], strings[1])

    def pack(self) -> bytes:
        """The INFO payload for these fields (used by tests and host-side fixtures)."""
        dims = list(self.input_shape) + [0] * (4 - len(self.input_shape))
        fixed = INFO_FIXED.pack(self.protocol_version, self.flags, self.window, self.max_payload,
                                bytes.fromhex(self.model_hash), DTYPE_CODES[self.input_dtype],
                                len(self.input_shape), *dims, self.input_bytes, self.input_scale,
                                self.input_zero_point, DTYPE_CODES[self.output_dtype], self.output_bytes,
                                self.output_scale, self.output_zero_point, self.arena_bytes, self.cycle_hz)
        b = self.board_id.encode()[:32]
        f = self.firmware_version.encode()[:32]
        return fixed + bytes([len(b)]) + b + bytes([len(f)]) + f
