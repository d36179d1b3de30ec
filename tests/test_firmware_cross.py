"""Cross-compilation of every generated file that does not need TensorFlow Lite Micro (protocol, board
support, start-up, model data), for every board's core, with -Wall -Wextra -Werror; the bare-metal ones
are also linked with their generated linker script. And the Makefile's own checks (`make tflm`, `make
flash`, `make sim`) fail with messages that say what to do."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from firmware_helpers import ARM_GCC, cross_compile, golden_model_bytes, link_selftest  # noqa: E402

from pipeline.boards import list_boards  # noqa: E402
from pipeline.codegen import generate_firmware  # noqa: E402

needs_arm_gcc = pytest.mark.skipif(ARM_GCC is None, reason="needs arm-none-eabi-gcc (CI installs it)")
BOARDS = list_boards()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("cross") / "model_int8.tflite"
    path.write_bytes(golden_model_bytes())
    return path


@needs_arm_gcc
@pytest.mark.parametrize("board", BOARDS, ids=[b.id for b in BOARDS])
def test_non_tflm_sources_cross_compile_and_link(model, board, tmp_path):
    fw = generate_firmware(model, board, tmp_path / "fw")
    sources = ["protocol.c", "model_data.cc"]
    if board.family in ("rp2040", "rp2350"):
        # board.c is written against the pico-sdk (boot stage, USB CDC); compiled when the SDK is there.
        if os.environ.get("PICO_SDK_PATH"):
            sources.append("board.c")
    else:
        sources += ["board.c", "startup.c"]
    for src in sources:
        cross_compile(fw, src, tmp_path / (src + ".o"))
    if board.family not in ("rp2040", "rp2350"):
        elf = link_selftest(fw, tmp_path)
        size = subprocess.run([shutil.which("arm-none-eabi-size") or "arm-none-eabi-size", "-A", str(elf)],
                              capture_output=True, text=True, check=True).stdout
        vectors = next(line for line in size.splitlines() if line.startswith(".isr_vector"))
        assert int(vectors.split()[2]) == board.flash_address, "vector table must sit at the flash start"


def _make(fw: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e.pop("TFLM_DIR", None)
    e.update(env or {})
    return subprocess.run(["make", "-C", str(fw), *args], capture_output=True, text=True, env=e)


@needs_arm_gcc  # the Makefile checks its compiler before it looks for the TFLM tree
@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_tflm_says_how_to_get_the_tree(model, tmp_path):
    fw = generate_firmware(model, "nucleo-f746zg", tmp_path / "fw")
    from pipeline.codegen.ops import TFLM_COMMIT

    for target in ("tflm", "all"):
        r = _make(fw, target)
        assert r.returncode != 0
        out = r.stdout + r.stderr
        assert "git clone https://github.com/tensorflow/tflite-micro.git" in out
        assert f"checkout {TFLM_COMMIT}" in out


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_flash_and_sim_explain_missing_pieces(model, tmp_path):
    fw = generate_firmware(model, "arduino-nano-33-ble-sense", tmp_path / "fw")
    for name in ("app.elf", "app.hex", "app.bin"):
        (fw / name).write_bytes(b"")  # flash checks its runner before touching the image
    r = _make(fw, "flash", env={"PATH": "/usr/bin:/bin"} if shutil.which("bossac") is None else None)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert ("bossac not found" in out and "bossa-cli" in out) or "PORT=" in out
    r = _make(fw, "sim")
    assert r.returncode != 0 and "no QEMU machine" in r.stdout + r.stderr


def test_cli_build_and_flash_raise_typed_errors(model, tmp_path, monkeypatch):
    from pipeline.cli import main

    monkeypatch.delenv("TFLM_DIR", raising=False)
    fw = tmp_path / "fw"
    assert main(["codegen", "--model", str(model), "--board", "qemu-mps2-an386", "--out", str(fw)]) == 0
    assert main(["build", str(fw)]) in (9,)               # ToolMissingError: no TFLM tree (or no compiler)
    assert main(["flash", str(fw)]) == 11                 # ArtifactError: app.elf not built
    assert main(["build", str(tmp_path)]) == 11           # not a generated folder


def _compiles(fw: Path, *args: str) -> set[str]:
    """The sources `make -n` would compile for these targets and variables."""
    r = _make(fw, "-n", *args)
    assert r.returncode == 0, r.stdout + r.stderr
    return {w for w in r.stdout.split() if w.endswith((".c", ".cc")) and "/" not in w}


@needs_arm_gcc
def test_objects_recompile_when_their_flags_change(model, tmp_path):
    """build/flags.stamp holds the compile flags: switching PROTOCOL (or kernels, build type) makes every
    object out of date, switching back does again (no stale object from the other flag set), and
    ARENA_BYTES touches only arena.cc's own stamp."""
    fw = generate_firmware(model, "qemu-mps2-an386", tmp_path / "fw")
    objs = ["build/protocol.o", "build/board.o"]
    assert _make(fw, *objs).returncode == 0
    assert _compiles(fw, *objs) == set()
    for flags in (["PROTOCOL=EEMBC"], ["OPTIMIZED_KERNEL_DIR="], ["TFLM_BUILD_TYPE=release"]):
        assert _compiles(fw, *objs, *flags) == {"protocol.c", "board.c"}, flags
        assert _make(fw, *objs, *flags).returncode == 0
        assert _compiles(fw, *objs, *flags) == set(), flags
        assert _compiles(fw, *objs) == {"protocol.c", "board.c"}, flags  # back to the default flags
        assert _make(fw, *objs).returncode == 0
    before = (fw / "build/flags.stamp").read_text()
    assert _compiles(fw, *objs, "ARENA_BYTES=4096") == set()  # the arena size is arena.cc's alone
    assert (fw / "build/flags.stamp").read_text() == before
    assert (fw / "build/arena.stamp").read_text().strip() == "ARENA_BYTES=4096"
    r = _make(fw, "-n", "build/arena.o", "ARENA_BYTES=4096")
    assert "-DOFA_ARENA_BYTES=4096u" in r.stdout and "arena.cc" in r.stdout, r.stdout + r.stderr
