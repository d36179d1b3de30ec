"""`ofa-mcu build` and `ofa-mcu flash`: run the generated Makefile, after checking what it needs.

Missing programs and trees are ToolMissingError naming the program and how to get it, before make
prints something less direct; a failing make is a FirmwareBuildError carrying the tail of its output.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .. import artifacts
from ..errors import ArtifactError, OfaMcuError, ToolMissingError


class FirmwareBuildError(OfaMcuError):
    """`make` failed in a generated firmware folder (compiler or linker error, firmware too large)."""
    exit_code = 9
    default_hint = "the lines above are make's; `make -C <dir>` reproduces them"


def _manifest(fw_dir: Path) -> dict:
    path = artifacts.path("firmware manifest", fw_dir)
    if not path.exists():
        raise ArtifactError(f"{fw_dir} is not a generated firmware folder (no {path.name})",
                            hint="create one with `ofa-mcu codegen --model M.tflite --board ID --out DIR`")
    return artifacts.read("firmware manifest", path)


def _require(program: str, how: str) -> str:
    found = shutil.which(program)
    if not found:
        raise ToolMissingError(f"{program} is not installed (not on PATH)", hint=how)
    return found


def _run_make(fw_dir: Path, target: list[str], variables: dict[str, str], *, echo=print) -> int:
    make = _require("make", "sudo apt-get install make")
    cmd = [make, "-C", str(fw_dir), *target, *(f"{k}={v}" for k, v in variables.items())]
    # TFLite Micro's Makefile runs `python3` (with numpy and Pillow) while parsing: this interpreter has both.
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    echo(proc.stdout.rstrip("\n"))
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-5:])
        raise FirmwareBuildError(f"`make {' '.join(target) or 'all'}` failed in {fw_dir} (exit {proc.returncode}):"
                                 f"\n{tail}")
    return 0


def remembered_tflm_dir(fw_dir: Path) -> str | None:
    """The TFLite Micro tree the folder's first build used (`tflm_dir.mk`, written by its Makefile)."""
    path = Path(fw_dir) / "tflm_dir.mk"
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        if line.startswith("TFLM_DIR ?= "):
            return line.split("?=", 1)[1].strip() or None
    return None


def tflm_dir_or_raise(fw_dir: Path, tflm_dir: str | None) -> Path:
    manifest = _manifest(fw_dir)
    tflm = tflm_dir or os.environ.get("TFLM_DIR") or remembered_tflm_dir(fw_dir)
    commit = manifest.get("tflm_commit", "<commit>")
    how = (f"git clone https://github.com/tensorflow/tflite-micro.git && git -C tflite-micro checkout {commit}, "
           f"then pass --tflm-dir tflite-micro or set TFLM_DIR (`make -C {fw_dir} tflm` prints the same)")
    if not tflm:
        raise ToolMissingError("no TensorFlow Lite Micro tree: TFLM_DIR is not set", hint=how)
    path = Path(tflm).expanduser().resolve()
    if not (path / "tensorflow/lite/micro/micro_interpreter.h").exists():
        raise ToolMissingError(f"{path} is not a TensorFlow Lite Micro tree", hint=how)
    return path


def build(fw_dir: str | os.PathLike, *, tflm_dir: str | None = None, reference_kernels: bool = False,
          jobs: int | None = None, echo=print) -> Path:
    """Build app.elf in a generated folder; return its path. `jobs` reaches TFLite Micro's own make too
    (the Makefile calls it through the jobserver); the library is built once per core into a shared cache."""
    fw = Path(fw_dir)
    manifest = _manifest(fw)
    _require("arm-none-eabi-gcc", "sudo apt-get install --no-install-recommends gcc-arm-none-eabi "
                                  "libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib")
    tflm = tflm_dir_or_raise(fw, tflm_dir)
    if manifest.get("pico_sdk"):
        _require("cmake", "sudo apt-get install cmake")
        if not os.environ.get("PICO_SDK_PATH"):
            raise ToolMissingError("PICO_SDK_PATH is not set (the RP2040/RP2350 build uses the pico-sdk)",
                                   hint="git clone https://github.com/raspberrypi/pico-sdk && git -C pico-sdk "
                                        "submodule update --init; export PICO_SDK_PATH=$PWD/pico-sdk")
    variables = {"TFLM_DIR": str(tflm)}
    if reference_kernels:
        variables["OPTIMIZED_KERNEL_DIR"] = ""
    target = [f"-j{jobs}"] if jobs else []
    _run_make(fw, target, variables, echo=echo)
    return fw / "app.elf"


def flash(fw_dir: str | os.PathLike, *, port: str | None = None) -> None:
    """Program the board with the runner from its board file (`make flash`)."""
    fw = Path(fw_dir)
    manifest = _manifest(fw)
    runner = manifest["flash_runner"]
    if not (fw / "app.elf").exists():
        raise ArtifactError(f"{fw}/app.elf does not exist", hint=f"build it first: ofa-mcu build {fw}")
    _require(runner["program"], runner["install"])
    if runner.get("needs_port") and not port:
        raise ToolMissingError(f"{runner['program']} needs the board's serial port",
                               hint="pass --port /dev/ttyACM0 (or the port the board enumerates as)")
    _run_make(fw, ["flash"], {"PORT": port} if port else {})
