"""The package as users install it: a wheel (not editable) in a fresh venv outside the checkout.

Dependencies come from the test environment's site-packages through a path file (nothing is
downloaded), so the check is about what the wheel itself carries: the code, `py.typed`, and the
board and template folders the CLI needs to run from any directory.
"""
from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from firmware_helpers import golden_model_bytes

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(out), str(REPO)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    (whl,) = out.glob("ofa_mcu-*.whl")
    return whl


def test_wheel_carries_boards_templates_and_py_typed(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "pipeline/py.typed" in names
    for board in (REPO / "boards").glob("*.yaml"):
        assert f"pipeline/_resources/boards/{board.name}" in names
    for tpl in (REPO / "firmware_templates").rglob("*"):
        if tpl.is_file():
            assert f"pipeline/_resources/firmware_templates/{tpl.relative_to(REPO / 'firmware_templates')}" in names


@pytest.mark.slow
def test_installed_wheel_runs_boards_and_codegen_from_anywhere(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    site = Path(subprocess.check_output([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    # Dependencies only: a plain path line does not run the test env's own .pth files, so its editable
    # `pipeline` stays invisible and the wheel's copy is the one imported.
    deps = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (site / "zz_deps.pth").write_text("\n".join(deps) + "\n")
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OFA_MCU_BOARDS_DIR")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    cli = env_dir / "bin" / "ofa-mcu"

    where = subprocess.run([str(py), "-c", "import pipeline; print(pipeline.__file__)"], cwd=elsewhere, env=env,
                           capture_output=True, text=True)
    assert where.stdout.strip().startswith(str(site)), where.stdout + where.stderr

    boards = subprocess.run([str(cli), "boards"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert boards.returncode == 0, boards.stderr[-2000:]
    for board in (REPO / "boards").glob("*.yaml"):
        assert board.stem in boards.stdout

    model = elsewhere / "model_int8.tflite"
    model.write_bytes(golden_model_bytes())
    gen = subprocess.run([str(cli), "codegen", "--model", str(model), "--board", "qemu-mps2-an386", "--out", "fw"],
                         cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert gen.returncode == 0, gen.stderr[-2000:]
    for name in ("main.cc", "model_data.cc", "Makefile", "protocol.c"):
        assert (elsewhere / "fw" / name).is_file(), name
    assert "qemu-mps2-an386" in (elsewhere / "fw" / "main.cc").read_text()
