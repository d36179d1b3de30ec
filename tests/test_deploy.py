"""`ofa-mcu deploy`: the chain runs for a board, and an interrupted deploy resumes without redoing
finished stages; a changed input re-runs exactly the stages downstream of it."""
from __future__ import annotations

import json
import shutil

import pytest
import yaml

from pipeline.boards import BUILTIN_BOARDS_DIR
from pipeline.deploy import DeployOptions, deploy

pytestmark = pytest.mark.slow


def _opts(tmp_path, supernet, **kw):
    return DeployOptions(board="qemu-mps2-an386", run_dir=tmp_path / "run", supernet=supernet, port="sim",
                         check_limit=24, predictor_samples=24, max_candidates=3, quiet=True, **kw)


def test_interrupted_deploy_resumes_without_redoing_finished_stages(tmp_path, trained_supernet_dir,
                                                                    monkeypatch):
    import pipeline.serial as serial

    real_check = serial.check
    calls = {"export": 0, "check": 0}

    import pipeline.export as export
    real_export = export.export_subnet

    def counting_export(*a, **k):
        calls["export"] += 1
        return real_export(*a, **k)

    monkeypatch.setattr(export, "export_subnet", counting_export)

    def interrupted_check(*a, **k):
        calls["check"] += 1
        raise KeyboardInterrupt  # the user pressed Ctrl-C during the board check

    monkeypatch.setattr(serial, "check", interrupted_check)
    with pytest.raises(KeyboardInterrupt):
        deploy(_opts(tmp_path, trained_supernet_dir))
    board_dir = tmp_path / "run" / "boards" / "qemu-mps2-an386"
    stages = json.loads((board_dir / "stages.json").read_text())
    assert set(stages) == {"search", "codegen"}  # finished stages recorded, the interrupted one not
    exports_before = calls["export"]
    assert exports_before >= 1
    model_mtime = (board_dir / "model_int8.tflite").stat().st_mtime_ns

    def counting_check(*a, **k):
        calls["check"] += 1
        return real_check(*a, **k)

    monkeypatch.setattr(serial, "check", counting_check)
    report = deploy(_opts(tmp_path, trained_supernet_dir))
    assert calls["export"] == exports_before  # search + export not redone
    assert (board_dir / "model_int8.tflite").stat().st_mtime_ns == model_mtime
    assert calls["check"] == 2
    check = report["check"]
    assert check["samples"] == 24 and check["agreement"]["argmax"] == 1.0
    assert check["agreement"]["exact_logits"] == 1.0
    for name in ("report.md", "report.json", "pareto.png", "layers.png", "arena.png"):
        assert (board_dir / name).stat().st_size > 0, name
    assert "agreement with host int8" in (board_dir / "report.md").read_text()

    # Nothing changed: a third run redoes nothing.
    deploy(_opts(tmp_path, trained_supernet_dir))
    assert calls["export"] == exports_before and calls["check"] == 2

    # A changed board file (tighter reserve) invalidates the search and everything after it.
    user_boards = tmp_path / "boards"
    user_boards.mkdir()
    data = yaml.safe_load((BUILTIN_BOARDS_DIR / "qemu-mps2-an386.yaml").read_text())
    data["id"] = "my-an386"
    data["reserved_sram_bytes"] = 20000
    (user_boards / "my-an386.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setenv("OFA_MCU_BOARDS_DIR", str(user_boards))
    shutil.copytree(board_dir, tmp_path / "run" / "boards" / "my-an386")
    opts = _opts(tmp_path, trained_supernet_dir)
    opts.board = "my-an386"
    deploy(opts)
    assert calls["check"] == 3
