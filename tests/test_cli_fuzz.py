"""CLI fuzz: every option of every subcommand gets malformed values (numbers: empty, NaN, infinities,
out-of-range, text; paths: empty, a NUL byte, a 5,000-character name, a device, a path below a file; free
text: escape codes, control characters, huge strings, JSON). Each run must end with a documented exit code
of README's table other than 0 and 1, one `error:` line, no traceback and no raw terminal escape code.

Required options not under test get values that point at nothing, and every run happens in an empty
temporary working directory with a 60 s alarm, so no malformed value can start real work unnoticed."""
from __future__ import annotations

import argparse
import re
import signal
from pathlib import Path

import pytest

from pipeline.cli import COMMANDS, _command_module, main

README = Path(__file__).resolve().parents[1] / "README.md"
NUMBER_VALUES = ["", "nan", "-inf", "1e999", "abc", "0x", "-1e9", "99999999999999999999"]
PATH_VALUES = ["", "a\x00b", "n" * 5000, "/dev/zero", "/etc/hostname/below-a-file", "\x1b[2J\x1b[31m/\n"]
TEXT_VALUES = ["", "\x1b[2J\x1b[31m", "a\nb\rc", "x" * 5000, "../../../../etc/passwd", "{\"resolution\": 7.9}",
               "\u202e\u0000", "npz:/dev/zero"]
PATH_OPTS = {"--out", "--model", "--supernet", "--report", "--labels", "--schedule", "--space", "--calibration",
             "--run", "--tflm-dir"}
ZERO_OK = {"--seed", "--sim-seed", "--retries", "--scratch", "--finetune-epochs"}  # options where 0 is a valid value


def _documented_codes() -> set[int]:
    table = README.read_text().split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    return {int(m) for row in re.findall(r"^\|(.*)\|$", table, flags=re.M) for m in re.findall(r"\| *(\d+) *\|", f"|{row}|")}


def _base(tmp: Path) -> dict[str, list[str]]:
    """Arguments that satisfy each subcommand's required options while pointing at nothing usable."""
    nothing = str(tmp / "nothing")
    return {
        "boards": ["show"], "train": ["--out", "/dev/zero"], "search": ["--supernet", nothing, "--board", "nope"],
        "export": ["--supernet", nothing, "--arch", "r0", "--out", str(tmp / "o")],
        "codegen": ["--model", nothing, "--board", "nope", "--out", str(tmp / "o")], "build": [nothing],
        "flash": [nothing], "check": ["--port", nothing, "--model", nothing, "--data", "nosuch:x"],
        "profile": ["--port", nothing, "--model", nothing, "--board", "nope"],
        "board-sim": ["--model", nothing], "deploy": ["--board", "nope", "--supernet", nothing],
        "catalog": ["--supernet", nothing, "--out", str(tmp / "o")], "demo": ["--board", "nope", "--out", "/dev/zero"],
        "inspect": [nothing, "--board", "nope"],
    }


def _options(name: str) -> list[tuple[str, object]]:
    """(longest option string, its argparse type) for every option of the subcommand that takes a value."""
    p = argparse.ArgumentParser()
    _command_module(name).add_arguments(p)
    return [(max(a.option_strings, key=len), a.type) for a in p._actions  # noqa: SLF001
            if a.option_strings and a.nargs != 0 and not isinstance(a, argparse._HelpAction)]  # noqa: SLF001


CASES = [(name, opt, kind) for name in COMMANDS for opt, kind in _options(name)]


def _values(opt: str, kind) -> list[str]:
    if kind in (int, float):
        return NUMBER_VALUES + ([] if opt in ZERO_OK else ["-1"])
    return PATH_VALUES if opt in PATH_OPTS else TEXT_VALUES


def _alarm(signum, frame):
    raise TimeoutError("a malformed value ran for 60 s: it started real work")


@pytest.mark.slow
@pytest.mark.parametrize("name,opt,kind", CASES, ids=[f"{n} {o}" for n, o, _ in CASES])
def test_malformed_option_values(name, opt, kind, tmp_path, capsys, monkeypatch):
    codes = _documented_codes()
    assert {0, 1, 2, 3, 4, 5, 11, 12, 130} <= codes
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)  # a relative path that is somehow accepted lands here, not in the checkout
    base = _base(tmp_path)[name]
    old = signal.signal(signal.SIGALRM, _alarm)
    try:
        for value in _values(opt, kind):
            args = list(base)
            if opt in args:  # replace the required option's harmless value
                args[args.index(opt) + 1] = value
            else:
                args += [opt, value]
            signal.alarm(60)
            try:
                code = main([name, *args])
            except SystemExit as e:  # argparse itself refuses the value
                code = e.code
            finally:
                signal.alarm(0)
            out = capsys.readouterr()
            shown = f"{name} {opt} {value[:40]!r}: exit {code}\n{out.err[-800:]}"
            assert code in codes and code not in (0, 1), shown
            assert "Traceback" not in out.err and "\x1b" not in out.err + out.out, shown
            assert len([ln for ln in out.err.splitlines() if "error:" in ln]) == 1, shown
        assert not any(work.iterdir()), f"{name} {opt}: wrote into the working directory"
    finally:
        signal.signal(signal.SIGALRM, old)
