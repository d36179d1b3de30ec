"""Checks of parsed command-line values, run by the CLI before any subcommand (one table, not checks
scattered over every stage): numbers in range and finite, input files regular and readable, output paths
creatable. Each failure is a UsageError (exit 2) naming the option, the value and the allowed range.

The table is keyed by the argparse destination, so a new option with a known name (`--timeout`,
`--limit`, ...) is checked without touching this module; `OUT_FILE` lists the subcommands whose `--out`
is a file rather than a folder.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

from . import artifacts
from .errors import UsageError

# dest -> (kind, low, high, low inclusive?): kind "int" or "float"; None = unbounded
NUMBERS: dict[str, tuple[str, float | None, float | None, bool]] = {
    "baud": ("int", 1, 20_000_000, True),
    "limit": ("int", 1, None, True),
    "gate": ("float", 0.0, 1.0, True),
    "timeout": ("float", 0.0, 3600.0, False),
    "retries": ("int", 0, 1000, True),
    "threads": ("int", 1, 1024, True),
    "batch_size": ("int", 1, 1 << 20, True),
    "bn_shards": ("int", 1, 4096, True),
    "samples": ("int", 1, 1_000_000, True),
    "population": ("int", 2, 100_000, True),
    "generations": ("int", 1, 100_000, True),
    "max_candidates": ("int", 1, 1000, True),
    "scratch": ("int", 0, 1000, True),
    "finetune_epochs": ("int", 0, 10_000, True),
    "runs": ("int", 1, 10_000, True),
    "calib": ("int", 1, 1_000_000, True),
    "max_drop": ("float", 0.0, 100.0, True),
    "tolerance": ("float", 0.0, 100.0, True),
    "opset": ("int", 13, 17, True),
    "latency_ms": ("float", 0.0, None, False),
    "sram_kb": ("float", 0.0, None, False),
    "flash_kb": ("float", 0.0, None, False),
    "window": ("int", 1, 32, True),
    "drop_rate": ("float", 0.0, 1.0, True),
    "corrupt_rate": ("float", 0.0, 1.0, True),
    "delay_ms": ("float", 0.0, 60_000.0, True),
    "turnaround_ms": ("float", 0.0, 60_000.0, True),
    "duration": ("float", 0.0, None, False),
    "jobs": ("int", 1, 1024, True),
    "seed": ("int", 0, 2**32 - 1, True),
    "sim_seed": ("int", 0, 2**32 - 1, True),
}
OPEN_HIGH = {"drop_rate", "corrupt_rate"}  # probabilities of faults: 1.0 would lose every byte

# dest -> what the file is; checked only when given
IN_FILES = {"model": "model", "report": "export report", "labels": "labels file", "schedule": "schedule file",
            "space": "search space file", "calibration": "calibration file"}
IN_DIRS = {"supernet": "supernet directory"}
OUT_FILE = {"search", "profile"}  # subcommands whose --out names a file, not a folder


def _option(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def check_number(dest: str, value) -> None:
    kind, low, high, low_inclusive = NUMBERS[dest]
    opt = _option(dest)
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"{opt} must be a finite number, got {value}")
    below = low is not None and (value < low if low_inclusive else value <= low)
    above = high is not None and (value >= high if dest in OPEN_HIGH else value > high)
    if below or above:
        def fmt(v) -> str:
            return str(int(v)) if kind == "int" else f"{v:g}"
        lo = "" if low is None else (f">= {fmt(low)}" if low_inclusive else f"> {fmt(low)}")
        hi = "" if high is None else (f"< {fmt(high)}" if dest in OPEN_HIGH else f"<= {fmt(high)}")
        raise UsageError(f"{opt} must be {' and '.join(p for p in (lo, hi) if p)}, got {fmt(value)}")


def check_input_file(opt: str, path: str, what: str) -> None:
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{opt} {path}: {what} not found", hint="check the path")
    if p.is_dir():
        raise UsageError(f"{opt} {path}: is a folder, not a {what}", hint="pass the file itself")
    if not p.is_file():
        raise UsageError(f"{opt} {path}: not a regular file (a device, FIFO or socket), so not a {what}",
                         hint="pass a file on disk")
    if not os.access(p, os.R_OK):
        raise UsageError(f"{opt} {path}: the {what} is not readable (permissions)", hint="check its permissions")


def check_input_dir(opt: str, path: str, what: str) -> None:
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{opt} {path}: {what} not found", hint="check the path")
    if not p.is_dir():
        raise UsageError(f"{opt} {path}: is a file, not a {what}", hint="pass the folder")


def _existing_ancestor(p: Path) -> Path:
    p = p.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _short(path) -> str:
    text = str(path)
    return text if len(text) <= 160 else text[:80] + f"...({len(text)} characters)..." + text[-40:]


def check_output(opt: str, path: str, *, is_file: bool) -> None:
    try:
        _check_output(opt, path, is_file=is_file)
    except OSError as e:  # a name too long, a loop of symlinks: the path itself is unusable
        raise UsageError(f"{opt} {_short(path)}: unusable path ({e.strerror or e})",
                         hint="choose a shorter, plain path") from None


def _check_output(opt: str, path: str, *, is_file: bool) -> None:
    """The output folder (or file) can be written: not an existing file where a folder is wanted (or
    the reverse), and a file can really be created there (as root, permission bits say nothing, so this
    tries, in the folder or its nearest existing ancestor: a refused command leaves no empty folder)."""
    import tempfile

    if not str(path).strip():
        raise UsageError(f"{opt} is empty", hint="name a folder, e.g. --out runs/NAME")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in str(path)):  # escape codes, newlines: not in a file name
        raise UsageError(f"{opt} {_short(path)!r} holds control characters", hint="choose a plain path")
    p = Path(path)
    if is_file and p.is_dir():
        raise UsageError(f"{opt} {path}: is a folder; this option names a file", hint="e.g. --out result.json")
    if not is_file and p.exists() and not p.is_dir():
        raise UsageError(f"{opt} {path}: exists and is a file, not a folder",
                         hint="choose a folder name (it is created if missing)")
    folder = p.parent if is_file else p
    base = _existing_ancestor(folder)
    if not base.is_dir():
        raise UsageError(f"{opt} {path}: {base} is a file, so nothing can be created below it",
                         hint="choose another path")
    try:
        with tempfile.TemporaryFile(dir=folder if folder.is_dir() else base):
            pass
    except OSError as e:
        raise UsageError(f"{opt} {_short(path)}: cannot write there ({e.strerror or e})",
                         hint="choose a writable location") from None


def check_args(command: str, args) -> None:
    """Raise UsageError for the first bad value in `args` (an argparse Namespace of `command`)."""
    values = vars(args)
    for dest, value in values.items():
        if value is None or isinstance(value, bool):
            continue
        if isinstance(value, str) and "\x00" in value:  # no path or name may hold one (the OS refuses it)
            raise UsageError(f"{_option(dest)} holds a NUL character", hint="remove it")
        if dest in NUMBERS and isinstance(value, (int, float)):
            check_number(dest, value)
        elif dest in IN_FILES and isinstance(value, str):
            check_input_file(_option(dest), value, IN_FILES[dest])
        elif dest in IN_DIRS and isinstance(value, str):
            check_input_dir(_option(dest), value, IN_DIRS[dest])
    out = values.get("out")
    if isinstance(out, str):
        check_output("--out", out, is_file=command in OUT_FILE)
    if command == "train" and values.get("resume"):
        _check_resume(Path(values["out"]))


def _check_resume(out: Path) -> None:
    from .train.loop import CHECKPOINT

    sn = out / "supernet"
    if not (sn / "checkpoints" / CHECKPOINT).is_file() and not artifacts.exists("train summary", sn):
        raise UsageError(f"--resume: {out} holds no interrupted training run to continue",
                         hint="drop --resume to start a new run there, or pass the --out of the interrupted run")
