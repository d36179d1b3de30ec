"""With a TensorFlow Lite Micro tree (TFLM_DIR): build the real generated firmware (CMSIS-NN kernels) for
QEMU's Cortex-M4, run it, and measure it with the serial checker: on-device outputs must equal the host
TFLite Micro runtime's exactly. Skipped only when TFLM_DIR is absent; the first build of the TFLM library
takes several minutes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from firmware_helpers import ARM_GCC, QEMU, start_qemu, stop_qemu  # noqa: E402
from tiny_models import make_tiny_int8_tflite  # noqa: E402

from pipeline.boards import list_boards  # noqa: E402
from pipeline.codegen.qemu import invoke_once  # noqa: E402

TFLM_DIR = os.environ.get("TFLM_DIR")
pytestmark = [pytest.mark.tflm_tree, pytest.mark.qemu, pytest.mark.slow,
              pytest.mark.skipif(not TFLM_DIR, reason="TFLM_DIR (a TensorFlow Lite Micro tree) is not set"),
              pytest.mark.skipif(not (ARM_GCC and QEMU), reason="needs arm-none-eabi-gcc and qemu-system-arm")]


def test_real_model_in_qemu_matches_host_tflm(tmp_path):
    import serial

    from pipeline.codegen import generate_firmware
    from pipeline.serial import check

    model, _ = make_tiny_int8_tflite(tmp_path / "model_int8.tflite")  # 8x8x1: builtin:digits natively
    fw = generate_firmware(model, "qemu-mps2-an386", tmp_path / "fw")
    r = subprocess.run(["make", "-C", str(fw), f"TFLM_DIR={TFLM_DIR}", "-j2"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "flash:" in r.stdout and "RAM:" in r.stdout  # `make` ends with `make size`
    proc, pty = start_qemu(fw / "app.elf", "mps2-an386")
    try:
        port = serial.Serial(pty, baudrate=115200, timeout=0.05)
        proc.stdin.write("cont\n")
        proc.stdin.flush()
        report = check(port, model, "builtin:digits", out_dir=tmp_path / "check", board="qemu-mps2-an386",
                       limit=60, timeout_s=2.0, progress=False, log=lambda *a, **k: None)
    finally:
        stop_qemu(proc)
    assert report["agreement"]["exact_logits"] == 1.0, report["agreement"]
    assert report["agreement"]["argmax"] == 1.0


@pytest.mark.parametrize("board", [b.id for b in list_boards()])
def test_main_cc_compiles_for_every_core(board, tmp_path):
    """main.cc and op_resolver.h against the TFLM headers (no library needed), with each core's flags."""
    from firmware_helpers import cross_compile, golden_model_bytes

    from pipeline.codegen import generate_firmware

    model = tmp_path / "model_int8.tflite"
    model.write_bytes(golden_model_bytes())
    fw = generate_firmware(model, board, tmp_path / "fw")
    dl = Path(TFLM_DIR) / "tensorflow/lite/micro/tools/make/downloads"
    flags = ["-DTF_LITE_STATIC_MEMORY", "-DCMSIS_NN", "-DKERNELS_OPTIMIZED_FOR_SPEED", "-funsigned-char",
             "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics", "-Wno-unused-parameter",
             "-I", TFLM_DIR, "-I", str(dl / "flatbuffers/include"), "-I", str(dl / "gemmlowp")]
    cross_compile(fw, "main.cc", tmp_path / "main.o", flags)


def test_arena_margin_is_needed_and_enough_on_cortex_m(tmp_path):
    """The 64-bit host minimum alone is too small on a Cortex-M4 with CMSIS-NN (its scratch buffers are not
    in the reference-kernel measurement); the generated size, with the margin rule, runs."""
    from firmware_helpers import make_scratch_heavy_tflite

    from pipeline.codegen import generate_firmware
    from pipeline.export import measure_arena

    model = make_scratch_heavy_tflite(tmp_path / "model_int8.tflite")
    host64 = measure_arena(model).min_arena_bytes
    fw = generate_firmware(model, "qemu-mps2-an386", tmp_path / "fw",
                           report={"arena": {"min_arena_bytes": host64}})

    def build(arena: int | None) -> Path:
        for stale in (fw / "build" / "main.o", fw / "app.elf"):
            stale.unlink(missing_ok=True)
        r = subprocess.run(["make", "-C", str(fw), f"TFLM_DIR={TFLM_DIR}", "app.elf"]
                           + ([f"ARENA_BYTES={arena}"] if arena else []), capture_output=True, text=True)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        return fw / "app.elf"

    assert invoke_once(build(None)), "the generated arena is too small on the target"
    assert not invoke_once(build(host64)), "expected the bare 64-bit minimum to fail with CMSIS-NN scratch"
