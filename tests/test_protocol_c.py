"""protocol.c on its own: sanitizer-built C unit tests, cross-compilation for every Cortex-M core, the
Python host codec against the C one (ctypes), and a short fuzz run (the long one is tools/fuzz_protocol.py)."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from pipeline.serial import framing as fr
from pipeline.serial import native

ROOT = Path(__file__).resolve().parents[1]
COMMON = ROOT / "firmware_templates" / "common"
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
CORES = ["cortex-m0plus", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55"]


def _header_values() -> dict[str, int]:
    text = (COMMON / "protocol.h").read_text()
    vals = {k: int(v, 0) for k, v in re.findall(r"#define (PROTO_\w+) (0x[0-9A-Fa-f]+|\d+)u?\b", text)}
    for body in re.findall(r"enum \{(.*?)\}", text, re.S):
        body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
        vals.update({k: int(v, 0) for k, v in re.findall(r"(PROTO_\w+) = (0x[0-9A-Fa-f]+|\d+)", body)})
    return vals


def test_python_constants_match_protocol_h():
    h = _header_values()
    assert h["PROTO_VERSION"] == fr.VERSION
    assert h["PROTO_MODEL_HASH_LEN"] == fr.MODEL_HASH_LEN
    assert h["PROTO_MIN_MAX_PAYLOAD"] == fr.MIN_MAX_PAYLOAD
    for name in ("HELLO", "SET_INPUT", "INVOKE", "READ_OUTPUT", "PROFILE", "INFO", "ACK", "RESULT", "OUTPUT",
                 "PROFILE_PAGE", "NAK", "BOOT", "ERROR"):
        assert h[f"PROTO_T_{name}"] == getattr(fr, f"T_{name}"), name
    for code, name in fr.ERROR_NAMES.items():
        if code:
            assert h[f"PROTO_E_{name}"] == code, name
    for name in ("PROFILE", "CYCLES_TIMER", "SIMULATED", "REFERENCE_KERNELS"):
        assert h[f"PROTO_FLAG_{name}"] == getattr(fr, f"FLAG_{name}")
    native.load_library()  # raises if the ctypes struct mirrors disagree with sizeof in C
    for size in (fr.MIN_MAX_PAYLOAD, fr.DEFAULT_MAX_PAYLOAD, 1000):  # worst case: no zero bytes to reuse
        assert fr.encoded_size(size) >= len(fr.encode_frame(1, 1, b"\x01" * size))


def test_c_unit_tests_under_sanitizers(tmp_path):
    cc = native.find_cc()
    exe = tmp_path / "protocol_unit"
    subprocess.run([cc, *STRICT, "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                    "-I", str(COMMON), str(ROOT / "tests" / "c" / "protocol_unit.c"), str(COMMON / "protocol.c"),
                    "-o", str(exe)], check=True, capture_output=True, text=True)
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    checks, failed = map(int, re.search(r"(\d+) checks, (\d+) failed", r.stdout).groups())
    assert failed == 0 and checks > 300


@pytest.mark.parametrize("core", CORES)
def test_cross_compiles_for_cortex_m(core, tmp_path):
    gcc = shutil.which("arm-none-eabi-gcc")
    if gcc is None:
        pytest.skip("arm-none-eabi-gcc not installed (apt-get install gcc-arm-none-eabi)")
    obj = tmp_path / "protocol.o"
    r = subprocess.run([gcc, f"-mcpu={core}", "-mthumb", *STRICT, "-Os", "-c", str(COMMON / "protocol.c"),
                        "-o", str(obj)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    size = subprocess.run(["arm-none-eabi-size", str(obj)], capture_output=True, text=True).stdout
    text, data, bss = map(int, size.splitlines()[1].split()[:3])
    assert data == 0 and bss == 0  # every buffer comes from the caller
    assert text < 4096


def test_header_compiles_as_cxx(tmp_path):
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    src = tmp_path / "t.cc"
    src.write_text('#include "protocol.h"\nint main() { proto_device d; (void)d; return 0; }\n')
    subprocess.run([cxx, "-std=c++11", "-Wall", "-Wextra", "-Werror", "-I", str(COMMON), "-fsyntax-only",
                    str(src)], check=True)


def test_host_codec_matches_firmware_codec():
    rng = np.random.default_rng(0)
    assert native.c_crc32(b"123456789") == 0xCBF43926 == zlib.crc32(b"123456789")
    sizes = [0, 1, 2, 253, 254, 255, 256, 508, 509, 1000]
    for n in sizes + list(rng.integers(0, 700, size=100)):
        for fill in ("random", "zeros", "nonzero"):
            data = {"random": lambda: rng.integers(0, 256, size=n, dtype=np.uint8),
                    "zeros": lambda: np.zeros(n, np.uint8),
                    "nonzero": lambda: rng.integers(1, 256, size=n, dtype=np.uint8)}[fill]().tobytes()
            assert native.c_crc32(data) == fr.crc32(data)
            enc = fr.cobs_encode(data)
            assert native.c_cobs_encode(data) == enc and 0 not in enc
            assert fr.cobs_decode(enc) == data == native.c_cobs_decode(enc)
            t, s = int(rng.integers(0, 256)), int(rng.integers(0, 256))
            wire = fr.encode_frame(t, s, data)
            assert native.c_encode_frame(t, s, data) == wire
            assert native.c_decode_frame(wire[:-1]) == (0, t, s, data)


def test_damaged_frames_are_rejected_alike():
    wire = bytearray(fr.encode_frame(fr.T_SET_INPUT, 9, bytes(range(200)))[:-1])
    for i in range(len(wire)):
        for bit in range(8):
            b = bytearray(wire)
            b[i] ^= 1 << bit
            block = bytes(b).split(b"\x00")[0]
            py = fr.decode_frame(block) if block else None
            rc = native.c_decode_frame(block)[0] if block else 2
            assert not isinstance(py, fr.Frame) and rc != 0  # CRC-32 catches every single-bit error


def test_short_fuzz_run_is_clean():
    sys.path.insert(0, str(ROOT / "tools"))
    import fuzz_protocol

    san = fuzz_protocol.run_sanitized(20_000, jobs=1, seed=12345)
    assert san["crashes"] == 0, san["crash_reports"]
    assert san["frames"] == 20_000 and san["detail"]["invokes"] > 0 and san["detail"]["replies"] > 0
    diff = fuzz_protocol.run_differential(5_000, seed=3)
    assert diff["agree"] == diff["blocks"], diff["mismatches"]
    assert 0 < diff["accepted"] < diff["blocks"]
