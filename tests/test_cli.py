"""The CLI lists every stage with help and examples, and every subcommand documents its options."""
from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.cli import COMMANDS, main

STAGES = ["boards", "train", "search", "export", "codegen", "build", "flash", "check", "profile", "deploy",
          "catalog", "demo"]


def test_help_lists_every_stage_with_an_example(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in STAGES:
        assert f"\n    {name} " in out, name
        assert f"ofa-mcu {name}" in out, name
    assert "exit codes" in out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_subcommand_is_built_and_documents_its_options(name):
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", name, "--help"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "not built yet" not in r.stdout + r.stderr
    assert "example:" in r.stdout


def test_usage_error_exit_code():
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "search", "--board", "nucleo-f412zg"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--supernet" in r.stderr


@pytest.mark.parametrize("args,needle", [
    (["--data", "builtin:digits", "--budget", "ten"], "--budget 'ten'"),      # refused before any training
    (["--supernet", ".", "--budget", "12"], "--budget needs --data"),
])
def test_deploy_budget_is_checked_before_any_work(tmp_path, args, needle):
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "deploy", "--board", "qemu-mps2-an386",
                        "--run", str(tmp_path / "run"), *args], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and needle in r.stderr, r.stderr
    assert not (tmp_path / "run").exists()



@pytest.mark.parametrize("board,extra,needle", [
    ("nosuch", [], "unknown board 'nosuch'"),
    ("qemu-mps2-an386", ["--extra-ops", "FOO"], "unknown TFLite Micro op(s) 'FOO'"),
])
def test_a_refused_codegen_leaves_no_empty_out_folder(tmp_path, board, extra, needle):
    model = tmp_path / "model_int8.tflite"
    model.write_bytes(b"TFL3")  # never read: the board and the op names are refused first
    out = tmp_path / "fw" / "board"
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "codegen", "--model", str(model), "--board", board,
                        "--out", str(out), *extra], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode != 0 and needle in r.stderr, r.stderr
    assert not (tmp_path / "fw").exists()
