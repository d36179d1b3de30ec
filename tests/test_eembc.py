"""The MLPerf Tiny runner's EEMBC text protocol: the firmware's eembc.h (through ctypes) on the virtual
board, driven with exactly the commands mlcommons/tiny's runner sends and parsed with its regexes; then
`ofa-mcu check --protocol eembc`; with a TFLM tree, the real firmware in QEMU built with PROTOCOL=BOTH."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import serial

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import make_tiny_tensor_tflite  # noqa: E402

from pipeline.serial import check  # noqa: E402
from pipeline.serial.client import ProtocolClient  # noqa: E402
from pipeline.serial.eembc import DB_CHUNK_BYTES, EembcClient, EembcError  # noqa: E402
from pipeline.serial.reference import TflmRunner  # noqa: E402
from pipeline.serial.sim import SimOptions, VirtualBoard  # noqa: E402
from pipeline.tflite.model_info import inspect_tflite  # noqa: E402

BAUD = 921600
QUIET = dict(progress=False, log=lambda *a, **k: None)
# The runner's own patterns (benchmark/runner/device_under_test.py and script.py in mlcommons/tiny).
RUNNER_NAME = re.compile(r"^m-(name)-dut-\[([^]]+)]$")
RUNNER_PROFILE = re.compile(r"^m-(model|profile)-\[([^]]+)]$")
RUNNER_RESULTS = re.compile(r"^m-results-\[([^]]+)\]$")
RUNNER_LAP = re.compile(r"^m-lap-us-([0-9]+)$")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("eembc")
    return {"kws": make_tiny_tensor_tflite(d / "kws" / "model_int8.tflite", "kws"),
            "ad": make_tiny_tensor_tflite(d / "ad" / "model_int8.tflite", "ad"),
            "kws16": make_tiny_tensor_tflite(d / "kws16" / "model.tflite", "kws", dtype="int16")}


def _board(model, protocol="eembc", **kw):
    return VirtualBoard(model, SimOptions(baud=BAUD, protocol=protocol, turnaround_ms=0.0, **kw))


def test_runner_transcript_on_the_virtual_board(models):
    model, _ = models["kws"]
    info = inspect_tflite(model)
    runner = TflmRunner(model)
    x = np.random.default_rng(0).integers(-128, 128, size=info.input.nbytes, dtype=np.int8).tobytes()
    with _board(model) as vb:
        c = EembcClient(serial.Serial(vb.port_path, BAUD), model=info)
        try:
            c.hello()
            name = c.command("name")
            assert RUNNER_NAME.match(name[0]) and "ofa-mcu" in name[0]
            prof = c.command("profile")
            assert [RUNNER_PROFILE.match(ln).group(1) for ln in prof[:2]] == ["profile", "model"]
            assert c.command(f"db load {len(x)}") == [f"m-[Expecting {len(x)} bytes]"]
            replies = [c.command("db " + x[i:i + DB_CHUNK_BYTES].hex()) for i in range(0, len(x), DB_CHUNK_BYTES)]
            assert replies[-1] == ["m-load-done"] and all(r == [] for r in replies[:-1])
            lines = c.command("infer 1 0")
            assert lines[:3] == ["m-warmup-start-0", "m-warmup-done", "m-infer-start-1"]
            laps = [int(RUNNER_LAP.match(ln).group(1)) for ln in lines if RUNNER_LAP.match(ln)]
            assert len(laps) == 2 and laps[1] > laps[0]  # simulated microseconds of one inference
            results = [float(v) for ln in lines if (m := RUNNER_RESULTS.match(ln)) for v in m.group(1).split(",")]
            host = np.frombuffer(runner.run(x), np.int8)
            expected = (host.astype(np.float64) - info.output.zero_point) * info.output.scale
            assert np.allclose(results, expected, atol=0.0005 + 1e-9)
            assert f"m-output-[{host.tobytes().hex()}]" in lines  # the raw output, for exact comparison
            assert c.command("results")[0].startswith("m-results-[")
            with pytest.raises(EembcError, match="Unknown command: frobnicate"):
                c.command("frobnicate")
            with pytest.raises(EembcError, match="differs from the model input"):
                c.command("db load 7")
        finally:
            c.close()


def test_infer_before_a_full_load_is_refused(models):
    model, _ = models["kws"]
    with _board(model) as vb:
        c = EembcClient(serial.Serial(vb.port_path, BAUD), model=inspect_tflite(model))
        try:
            c.hello()
            c.command("db load 490")
            c.command("db " + "00" * 10)
            with pytest.raises(EembcError, match="Input db has 10 bytes, expected 490"):
                c.command("infer 1 0")
        finally:
            c.close()


@pytest.mark.parametrize("name", ["kws", "ad", "kws16"])
def test_check_over_eembc_equals_the_host(models, name, tmp_path):
    model, calib = models[name]
    info = inspect_tflite(model)
    # 6 samples of a 12-class model: class_names gives the class count the labels alone do not show
    y = {"y": np.arange(6), "class_names": np.array([f"k{i}" for i in range(12)])} if name != "ad" else {}
    np.savez(tmp_path / "d.npz", x=calib[:6], **y)
    rep = check("sim", model, f"npz:{tmp_path / 'd.npz'}", out_dir=tmp_path / "chk", protocol="eembc", gate=1.0,
                sim_options=SimOptions(baud=BAUD, turnaround_ms=0.0), **QUIET)
    assert rep["protocol"] == "eembc" and rep["samples"] == 6 and rep["gate"]["passed"]
    assert rep["agreement"]["exact_logits"] == 1.0
    assert rep["link"]["requests"]["infer"] == 6
    assert rep["latency"]["cycles"]["median"] > 0 and info.output.dtype in ("INT8", "INT16")


def test_both_protocols_on_one_board_detected_by_the_first_byte(models):
    model, _ = models["kws"]
    info = inspect_tflite(model)
    x = bytes(info.input.nbytes)
    expected = TflmRunner(model).run(x)
    with _board(model, protocol="both") as vb:
        client = ProtocolClient(serial.Serial(vb.port_path, BAUD), timeout_s=0.3)
        try:
            assert client.hello().model_hash == info.hash16
            client.send_input(x)
            assert client.invoke().output == expected
        finally:
            client.close()
        assert vb.device.mode == "binary"
    with _board(model, protocol="both") as vb:
        c = EembcClient(serial.Serial(vb.port_path, BAUD), model=info)
        try:
            assert c.hello().model_hash == info.hash16
            c.load(x)
            assert c.infer(1, 0).output == expected
        finally:
            c.close()
        assert vb.device.mode == "eembc"


TFLM_DIR = os.environ.get("TFLM_DIR")


@pytest.mark.tflm_tree
@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.skipif(not TFLM_DIR, reason="TFLM_DIR (a TensorFlow Lite Micro tree) is not set")
def test_firmware_in_qemu_speaks_both_protocols(models, tmp_path):
    from firmware_helpers import ARM_GCC, QEMU, start_qemu, stop_qemu

    from pipeline.codegen import generate_firmware

    if not (ARM_GCC and QEMU):
        pytest.skip("needs arm-none-eabi-gcc and qemu-system-arm")
    model, calib = models["kws"]
    fw = generate_firmware(model, "qemu-mps2-an386", tmp_path / "fw")
    r = subprocess.run(["make", "-C", str(fw), f"TFLM_DIR={TFLM_DIR}", "PROTOCOL=BOTH", "-j2"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    np.savez(tmp_path / "d.npz", x=calib[:8], y=np.arange(8), class_names=np.array([f"k{i}" for i in range(12)]))
    reports = {}
    for protocol in ("eembc", "binary"):
        proc, pty = start_qemu(fw / "app.elf", "mps2-an386")
        try:
            port = serial.Serial(pty, baudrate=115200, timeout=0.05)
            proc.stdin.write("cont\n")
            proc.stdin.flush()
            reports[protocol] = check(port, model, f"npz:{tmp_path / 'd.npz'}", out_dir=tmp_path / protocol,
                                      board="qemu-mps2-an386", protocol=protocol, timeout_s=2.0, gate=1.0,
                                      **QUIET)
        finally:
            stop_qemu(proc)
    for rep in reports.values():
        assert rep["agreement"]["exact_logits"] == 1.0 and rep["samples"] == 8
    assert reports["eembc"]["protocol"] == "eembc"
