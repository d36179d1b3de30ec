"""QEMU protocol self-test: the generated mps2 start-up, UART and linker script plus the real protocol.c,
with a deterministic stand-in for inference, run in qemu-system-arm and driven by the host's
ProtocolClient over the emulated UART (a pseudo-terminal): HELLO, a full input transfer, INVOKE, PROFILE.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from firmware_helpers import (ARM_GCC, QEMU, expected_output, link_selftest, start_qemu,  # noqa: E402
                              stop_qemu)
from tiny_models import make_tiny_int8_tflite  # noqa: E402

from pipeline.boards import list_boards  # noqa: E402

pytestmark = [pytest.mark.qemu,
              pytest.mark.skipif(not (ARM_GCC and QEMU), reason="needs arm-none-eabi-gcc and qemu-system-arm")]

QEMU_BOARDS = [b for b in list_boards() if b.qemu_machine]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    # 28x28x3: 2,352 input bytes, so the transfer takes ten 256-byte SET_INPUT chunks.
    path, _ = make_tiny_int8_tflite(tmp_path_factory.mktemp("qemu_model") / "m.tflite", resolution=28,
                                    channels=3, num_classes=10, seed=3)
    return path


@pytest.mark.parametrize("board", QEMU_BOARDS, ids=[b.id for b in QEMU_BOARDS])
def test_protocol_selftest_in_qemu(model, board, tmp_path):
    import serial

    from pipeline._io import sha256_file
    from pipeline.codegen import generate_firmware
    from pipeline.serial.client import ProtocolClient

    fw = generate_firmware(model, board, tmp_path / "fw")
    elf = link_selftest(fw, tmp_path)
    proc, pty = start_qemu(elf, board.qemu_machine)
    try:
        port = serial.Serial(pty, baudrate=115200, timeout=0.05)
        proc.stdin.write("cont\n")  # the pty is open: nothing the firmware prints is lost
        proc.stdin.flush()
        client = ProtocolClient(port, timeout_s=2.0, retries=5, invoke_timeout_s=20.0)
        try:
            info = client.hello()
            assert info.board_id == board.id
            assert info.model_hash == sha256_file(model)[:32]
            assert info.input_bytes == 28 * 28 * 3 and info.input_shape == (1, 28, 28, 3)
            assert info.output_bytes == 10
            # QEMU -icount: the firmware counts instructions (1e9 per virtual second), and says so
            assert info.cycle_hz == 1_000_000_000 and info.counts_instructions
            assert info.measured_on == "firmware in QEMU"
            rng = np.random.default_rng(7)
            for _ in range(2):  # a second sample proves the input buffer is fully overwritten
                data = rng.integers(0, 256, size=info.input_bytes, dtype=np.uint8).tobytes()
                client.send_input(data)
                result = client.invoke()
                assert result.output == expected_output(data, info.output_bytes)
                assert result.cycles > 0
            ops = client.profile()
            settings = (fw / "model_settings.h").read_text()
            codes = [int(c) for c in re.findall(r"^\s+(\d+),\s+/\*", settings.split("kOpCodes")[1].split("};")[0],
                                                re.M)]
            assert [o.op_code for o in ops] == codes
            assert [o.cycles for o in ops] == [1000 * (i + 1) for i in range(len(codes))]
            assert client.stats.naks == 0 and client.stats.bad_frames == 0
        finally:
            client.close()
    finally:
        stop_qemu(proc)


def _boot_selftest(model, board, tmp_path):
    import serial

    from pipeline.codegen import generate_firmware

    fw = generate_firmware(model, board, tmp_path / "fw")
    elf = link_selftest(fw, tmp_path)
    proc, pty = start_qemu(elf, board.qemu_machine)
    port = serial.Serial(pty, baudrate=115200, timeout=0.05)
    proc.stdin.write("cont\n")
    proc.stdin.flush()
    return proc, port


def test_profile_refuses_qemu_instructions_as_cycles_unless_told_how_to_convert(model, tmp_path):
    """Firmware in QEMU counts instructions: `profile` will not write them as a cycle calibration, except with
    an explicit cycles-per-instruction factor, which it applies and records."""
    from pipeline.errors import UsageError
    from pipeline.serial import profile

    board = next(b for b in QEMU_BOARDS if b.id == "qemu-mps2-an386")
    proc, port = _boot_selftest(model, board, tmp_path)
    try:
        with pytest.raises(UsageError, match="instructions"):
            profile(port, model, board, out=tmp_path / "p.json", runs=1, timeout_s=2.0, log=lambda _m: None)
        assert not (tmp_path / "p.json").exists()
        cal = profile(port, model, board, out=tmp_path / "p.json", runs=1, timeout_s=2.0,
                      cycles_per_instruction=1.5, log=lambda _m: None)
    finally:
        port.close()
        stop_qemu(proc)
    assert cal["measured_on"] == "firmware in QEMU" and cal["cycles_per_instruction"] == 1.5
    assert [o["instructions"] for o in cal["ops"]] == [1000 * (i + 1) for i in range(len(cal["ops"]))]
    assert [o["cycles"] for o in cal["ops"]] == [1500 * (i + 1) for i in range(len(cal["ops"]))]
    assert cal["cycle_hz"] == board.clock_hz
