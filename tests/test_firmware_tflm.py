"""With a TensorFlow Lite Micro tree (TFLM_DIR): build the real generated firmware (CMSIS-NN kernels) for every
emulated core, run it in QEMU and check it over its UART with the serial checker (`--port qemu`): its outputs
must equal the host TFLite Micro runtime's exactly. Also: the README's check command as written, the shared
library cache and the remembered tree, and the tensor arena against the true minimum on the target.
Skipped only when TFLM_DIR is absent; the first build of each core's TFLM library takes several minutes
(then it comes from the cache, ~/.cache/ofa-mcu/tflm)."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from firmware_helpers import ARM_GCC, QEMU  # noqa: E402
from tiny_models import make_tiny_int8_tflite  # noqa: E402

from pipeline.boards import list_boards  # noqa: E402

TFLM_DIR = os.environ.get("TFLM_DIR")
pytestmark = [pytest.mark.tflm_tree, pytest.mark.qemu, pytest.mark.slow,
              pytest.mark.skipif(not TFLM_DIR, reason="TFLM_DIR (a TensorFlow Lite Micro tree) is not set"),
              pytest.mark.skipif(not (ARM_GCC and QEMU), reason="needs arm-none-eabi-gcc and qemu-system-arm")]

EMULATED = [b for b in list_boards() if b.qemu_machine]
CLI = Path(sys.executable).with_name("ofa-mcu")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path, _ = make_tiny_int8_tflite(tmp_path_factory.mktemp("tflm_model") / "model_int8.tflite")  # 8x8x1 digits
    return path


@pytest.mark.parametrize("board", EMULATED, ids=[b.id for b in EMULATED])
def test_real_firmware_in_qemu_matches_host(model, board, tmp_path):
    from pipeline.codegen import generate_firmware
    from pipeline.serial import check

    from pipeline.codegen.qemu_board import open_qemu_port

    fw = generate_firmware(model, board, tmp_path / "fw")
    port = open_qemu_port(board, fw / "model_int8.tflite", 115200, tflm_dir=TFLM_DIR, log=lambda _m: None)
    try:
        report = check(port, fw / "model_int8.tflite", "builtin:digits", out_dir=tmp_path / "check", board=board,
                       limit=60, timeout_s=2.0, progress=False, log=lambda *a, **k: None)
    finally:
        port.close()
    assert report["measured_on"] == "firmware in QEMU"
    assert report["emulator"]["machine"] == board.qemu_machine
    assert Path(report["emulator"]["elf"]) == fw / "app.elf"
    assert report["agreement"]["exact_logits"] == 1.0, report["agreement"]
    assert report["agreement"]["argmax"] == 1.0
    # QEMU counts instructions: reported as such, never as cycles or milliseconds
    assert report["latency"]["instructions"]["median"] > 0
    assert report["latency"]["cycles"] == {} and report["latency"]["ms"] == {}
    assert "instructions" in report["summary"] and "firmware in QEMU" in report["summary"]


def _readme_command(fw: Path, prefix: str) -> list[str]:
    block = re.search(r"```sh\n(.*?)```", (fw / "README.md").read_text().split("## 4.")[1], re.S).group(1)
    line = next(x for x in block.splitlines() if x.startswith(prefix))
    return shlex.split(line)


def test_readme_commands_work_as_written(model, tmp_path):
    """Build as README.md section 2 says (TFLM_DIR once), then `make size` and the section 4 check command run
    from the folder with no TFLM_DIR in the environment: the tree is remembered, the model copy is found."""
    from pipeline.codegen import generate_firmware

    fw = generate_firmware(model, "qemu-mps2-an386", tmp_path / "fw")
    env = {k: v for k, v in os.environ.items() if k != "TFLM_DIR"}
    env["PATH"] = os.pathsep.join([str(CLI.parent), env.get("PATH", "")])
    r = subprocess.run(["make", "-j2", f"TFLM_DIR={TFLM_DIR}"], cwd=fw, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "flash:" in r.stdout and "RAM:" in r.stdout  # `make` ends with `make size`
    assert (fw / "tflm_dir.mk").read_text().strip() == f"TFLM_DIR ?= {Path(TFLM_DIR).resolve()}"
    r = subprocess.run(["make", "size"], cwd=fw, env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "flash:" in r.stdout, r.stdout + r.stderr
    cmd = _readme_command(fw, "ofa-mcu check")
    assert cmd[:3] == ["ofa-mcu", "check", "--port"] and "--model" in cmd
    r = subprocess.run([str(CLI), *cmd[1:], "--limit", "20", "--no-progress", "--out", str(tmp_path / "chk")],
                       cwd=fw, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "firmware in QEMU" in r.stdout and "PASS" in r.stdout


def test_second_folder_on_the_same_core_reuses_the_cached_library(model, tmp_path):
    """Two boards with the same core, FPU and kernels share one TFLite Micro library in the cache: building
    the second folder compiles only its own files (the library is not touched)."""
    from pipeline.codegen import generate_firmware

    def build(board: str) -> tuple[Path, str]:
        fw = generate_firmware(model, board, tmp_path / board)
        r = subprocess.run(["make", "-j2", f"TFLM_DIR={TFLM_DIR}"], cwd=fw, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        lib = subprocess.run(["make", "-s", "--no-print-directory", "print-tflm-lib"], cwd=fw,
                             capture_output=True, text=True).stdout.strip()
        return fw, lib

    _, lib_a = build("qemu-mps2-an386")
    before = Path(lib_a).stat().st_mtime_ns
    fw_b, lib_b = build("nucleo-l4r5zi")  # another Cortex-M4F board: same library
    assert lib_a == lib_b and Path(lib_b).exists()
    assert Path(lib_b).stat().st_mtime_ns == before, "the second folder rebuilt the cached library"
    assert (fw_b / "app.elf").exists()
    # `make -j` reaches TFLite Micro's own make through the jobserver (no "-j1" fallback)
    r = subprocess.run(["make", "-j2", "tflm"], cwd=fw_b, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "jobserver unavailable" not in r.stdout + r.stderr


ARENA_BOARDS = ["qemu-mps2-an386", "qemu-mps2-an500"]


@pytest.mark.parametrize("board", ARENA_BOARDS)
@pytest.mark.parametrize("variant", ["digits8", "rgb16"])
def test_reserved_arena_is_the_target_minimum_plus_slack(variant, board, tmp_path):
    """The arena the firmware reserves runs on the target, and is at most the fixed slack above the true
    minimum there (found by bisection in QEMU to 16 B)."""
    from pipeline._io import read_json
    from pipeline.codegen import generate_firmware
    from pipeline.codegen.qemu import min_arena_on_target

    kw = {"digits8": {}, "rgb16": {"resolution": 16, "channels": 3, "num_classes": 10, "seed": 5}}[variant]
    model, _ = make_tiny_int8_tflite(tmp_path / "model_int8.tflite", **kw)
    b = next(x for x in EMULATED if x.id == board)
    fw = generate_firmware(model, b, tmp_path / "fw")
    reserved = read_json(fw / "firmware.json")["arena_bytes"]
    minimum, _ = min_arena_on_target(fw, b.qemu_machine, TFLM_DIR, reserved)
    assert minimum <= reserved
    slack = pytest.importorskip("pipeline.costs.arena", reason="the predicted-minimum arena rule (pipeline.costs"
                                ".arena) is not in this tree").FIRMWARE_SLACK_BYTES
    assert slack <= max(256, reserved // 100)
    # The whole spare over the true minimum (the slack, the prediction's excess, rounding to 16 B) is small.
    assert reserved - minimum <= max(256, reserved // 100), (reserved, minimum)


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


def test_readme_lists_every_download_and_tool_tflm_uses(tmp_path):
    """Every folder TFLite Micro's make put in its downloads/ (after the builds above) is in the generated
    README's table, and the apt line has every program its download scripts call."""
    from firmware_helpers import golden_model_bytes

    from pipeline.codegen import generate_firmware

    model = tmp_path / "model_int8.tflite"
    model.write_bytes(golden_model_bytes())
    readme = (generate_firmware(model, "qemu-mps2-an386", tmp_path / "fw") / "README.md").read_text()
    make_dir = Path(TFLM_DIR) / "tensorflow/lite/micro/tools/make"
    downloads = make_dir / "downloads"
    present = sorted(p.name for p in downloads.iterdir() if p.is_dir())
    present += [f"cmsis/{p.name}" for p in (downloads / "cmsis").glob("Cortex_DFP")]
    assert {"flatbuffers", "gemmlowp", "ruy", "kissfft", "pigweed", "cmsis", "cmsis_nn"} <= set(present)
    for name in present:
        assert f"| `{name}` |" in readme, f"downloads/{name} is not in the README's table"
    apt = next(line for line in readme.splitlines() if line.startswith("sudo apt-get install"))
    scripts = " ".join(p.read_text() for p in [*make_dir.glob("*download*.sh"), *make_dir.glob("ext_libs/cmsis*.sh")])
    for program, package in [("wget", "wget"), ("curl", "curl"), ("unzip", "unzip"), ("patch -p1", "patch"),
                             ("git ", "git"), ("python3", "python3-numpy"), ("https://", "ca-certificates")]:
        if program in scripts or program == "python3":
            assert f" {package}" in apt, f"{program} is used by TFLM's downloads; {package} is not on the apt line"
