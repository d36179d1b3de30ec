"""Bad and hostile input, through the real CLI (`pipeline.cli.main`) and the real host client.

Every case asserts the exit code of README's table, one `error:` line naming the culprit, no traceback,
and that earlier results in the output folder are intact. The table below is kept in docs/RELIABILITY.md
(case, expected exit, message); `test_reliability_doc_lists_every_case` keeps the two in step.
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import serial

sys.path.insert(0, str(Path(__file__).parent))
from firmware_helpers import build_tflite  # noqa: E402
from hostile_device import Behaviour, HostileDevice, info_for  # noqa: E402
from tiny_models import make_tiny_int8_tflite  # noqa: E402

from pipeline.cli import main  # noqa: E402
from pipeline.errors import SerialLinkError  # noqa: E402
from pipeline.serial.client import ProtocolClient  # noqa: E402
from pipeline.tflite.model_info import inspect_tflite  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SENTINEL = "earlier_result.json"
ARCH_OK = {"resolution": 24, "widths": [0.5, 1.0, 1.0], "kernels": [[3], [3], [3]], "expands": [[3], [3], [3]]}


def _arch(**kw) -> str:
    return json.dumps({**ARCH_OK, **kw})


def _png_bomb(path: Path, width: int = 20000, height: int = 20000) -> None:
    """A valid 1-bit grayscale PNG of width x height pixels, a few kB on disk (all zeros compress away)."""
    row = b"\x00" + bytes((width + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def _float_tflite(path: Path) -> Path:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    m = tf.keras.Sequential([tf.keras.Input((8, 8, 1), batch_size=1), tf.keras.layers.Flatten(),
                             tf.keras.layers.Dense(10)])
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(m).convert())
    return path


def _custom_op_tflite(path: Path) -> Path:
    tensors = [{"shape": [1, 8, 8, 1], "scale": 1 / 255, "zp": -128}, {"shape": [1, 10], "scale": 0.1, "zp": 0}]
    path.write_bytes(build_tflite([("CUSTOM:MyOp", [0], [1], {})], tensors, [0], [1]))
    return path


TINY_BOARD = """\
id: tiny-sram
name: "<script>alert(1)</script> | [x](javascript:alert(2))"
vendor: test
soc: mps2-an386
clock_hz: 25000000
budget: {sram_bytes: 17408, flash_bytes: 1048576}
reserved_sram_bytes: 16384
reserved_flash_bytes: 32768
flash_runner:
  tool: qemu
  args: ["-M", "mps2-an386", "-nographic", "-kernel", "{elf}"]
serial: {baud: 115200, uart: CMSDK_UART0}
sources: ["test fixture: a board whose usable SRAM (1 KiB) holds no model"]
"""


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_input")
    model, _ = make_tiny_int8_tflite(d / "model_int8.tflite", resolution=8, num_classes=10)
    model3, _ = make_tiny_int8_tflite(d / "three.tflite", resolution=8, num_classes=3, seed=1)
    (d / "a_file").write_text("not a folder")
    (d / "folder.tflite").mkdir()
    (d / "binary_labels.txt").write_bytes(bytes(range(256)) * 4)
    (d / "long_labels.txt").write_text("\n".join(["x" * 70_000] + [str(i) for i in range(1, 10)]))
    (d / "ok_labels.txt").write_text("\n".join(f"digit {i}" for i in range(10)))
    sn = d / "supernet"
    sn.mkdir()
    (d / "arch_bool.json").write_text(json.dumps({**ARCH_OK, "resolution": True}))
    bomb = d / "bomb_data"
    for cls in ("a", "b"):
        (bomb / cls).mkdir(parents=True)
        _png_bomb(bomb / cls / "small.png", 8, 8)
    _png_bomb(bomb / "a" / "big.png")
    boards = d / "boards"
    boards.mkdir()
    (boards / "tiny-sram.yaml").write_text(TINY_BOARD)
    return {"d": d, "model": model, "model3": model3, "float": _float_tflite(d / "float.tflite"),
            "custom": _custom_op_tflite(d / "custom.tflite"), "sn": sn, "bomb": bomb, "boards": boards}


@dataclass(frozen=True)
class Case:
    id: str
    argv: Callable[[dict, Path], list[str]]  # (ctx, out folder) -> arguments
    exit: int
    culprit: str  # must appear in the `error:` line


def _check(*extra):
    return lambda c, o: ["check", "--port", "sim", "--model", str(c["model"]), "--data", "builtin:digits",
                         "--out", str(o), *extra]


def _export(arch, *extra):
    return lambda c, o: ["export", "--supernet", str(c["sn"]), "--arch", arch, "--out", str(o), *extra]


def _codegen(*extra, model="model", board="qemu-mps2-an386"):
    return lambda c, o: ["codegen", "--model", str(c[model]), "--board", board, "--out", str(o / "fw"), *extra]


CASES = [
    # option values
    Case("check --baud 0", _check("--baud", "0"), 2, "--baud"),
    Case("check --baud -5", _check("--baud", "-5"), 2, "--baud"),
    Case("check --baud abc", _check("--baud", "abc"), 2, "--baud"),
    Case("check --limit 0", _check("--limit", "0"), 2, "--limit"),
    Case("check --limit -3", _check("--limit", "-3"), 2, "--limit"),
    Case("check --gate 2", _check("--gate", "2"), 2, "--gate"),
    Case("check --gate nan", _check("--gate", "nan"), 2, "--gate"),
    Case("check --timeout 0", _check("--timeout", "0"), 2, "--timeout"),
    Case("check --timeout -1", _check("--timeout", "-1"), 2, "--timeout"),
    Case("check --timeout inf", _check("--timeout", "inf"), 2, "--timeout"),
    Case("check --retries -1", _check("--retries", "-1"), 2, "--retries"),
    Case("check --corrupt-rate 1.5", _check("--corrupt-rate", "1.5"), 2, "--corrupt-rate"),
    Case("check --window 0", _check("--window", "0"), 2, "--window"),
    Case("check --reset-after x", _check("--reset-after", "x"), 2, "--reset-after"),
    Case("profile --runs 0", lambda c, o: ["profile", "--port", "sim", "--model", str(c["model"]), "--board",
                                           "qemu-mps2-an386", "--runs", "0", "--out", str(o / "p.json")], 2, "--runs"),
    Case("board-sim --baud 0", lambda c, o: ["board-sim", "--model", str(c["model"]), "--baud", "0"], 2, "--baud"),
    Case("board-sim --duration -1", lambda c, o: ["board-sim", "--model", str(c["model"]), "--duration", "-1"],
         2, "--duration"),
    Case("search --latency-ms -1", lambda c, o: ["search", "--supernet", str(c["sn"]), "--board", "qemu-mps2-an386",
                                                 "--latency-ms", "-1"], 2, "--latency-ms"),
    Case("search --population 1", lambda c, o: ["search", "--supernet", str(c["sn"]), "--board", "qemu-mps2-an386",
                                                "--population", "1"], 2, "--population"),
    Case("search --generations 0", lambda c, o: ["search", "--supernet", str(c["sn"]), "--board",
                                                 "qemu-mps2-an386", "--generations", "0"], 2, "--generations"),
    Case("export --calib 0", _export("r24-w50k3e3-w100k3e3-w100k3e3", "--calib", "0"), 2, "--calib"),
    Case("export --opset 99", _export("r24-w50k3e3-w100k3e3-w100k3e3", "--opset", "99"), 2, "--opset"),
    Case("export --max-drop nan", _export("r24-w50k3e3-w100k3e3-w100k3e3", "--max-drop", "nan"), 2, "--max-drop"),
    Case("train --threads 0", lambda c, o: ["train", "--out", str(o), "--threads", "0"], 2, "--threads"),
    Case("train --batch-size 0", lambda c, o: ["train", "--out", str(o), "--batch-size", "0"], 2, "--batch-size"),
    Case("train --seed -1", lambda c, o: ["train", "--out", str(o), "--seed", "-1"], 2, "--seed"),
    Case("deploy --limit 0", lambda c, o: ["deploy", "--board", "qemu-mps2-an386", "--supernet", str(c["sn"]),
                                           "--run", str(o), "--limit", "0"], 2, "--limit"),
    Case("catalog --samples 0", lambda c, o: ["catalog", "--supernet", str(c["sn"]), "--out", str(o),
                                              "--samples", "0"], 2, "--samples"),
    Case("build -j 0", lambda c, o: ["build", str(o), "-j", "0"], 2, "--jobs"),
    # input files
    Case("--model /dev/zero", lambda c, o: ["check", "--port", "sim", "--model", "/dev/zero", "--data",
                                            "builtin:digits", "--out", str(o)], 2, "/dev/zero"),
    Case("--model a folder", lambda c, o: ["check", "--port", "sim", "--model", str(c["d"] / "folder.tflite"),
                                           "--data", "builtin:digits", "--out", str(o)], 2, "folder.tflite"),
    Case("--model missing", lambda c, o: ["codegen", "--model", str(c["d"] / "nope.tflite"), "--board",
                                          "qemu-mps2-an386", "--out", str(o / "fw")], 2, "nope.tflite"),
    Case("codegen --model /dev/zero", lambda c, o: ["codegen", "--model", "/dev/zero", "--board", "qemu-mps2-an386",
                                                    "--out", str(o / "fw")], 2, "/dev/zero"),
    Case("board-sim --model a folder", lambda c, o: ["board-sim", "--model", str(c["d"])], 2, "--model"),
    Case("codegen binary labels file", lambda c, o: _codegen("--labels", str(c["d"] / "binary_labels.txt"))(c, o),
         2, "binary_labels.txt"),
    Case("codegen labels is a folder", lambda c, o: _codegen("--labels", str(c["d"]))(c, o), 2, "--labels"),
    Case("codegen 70,000-character label", lambda c, o: _codegen("--labels", str(c["d"] / "long_labels.txt"))(c, o),
         2, "label 0"),
    Case("export --supernet a file", lambda c, o: ["export", "--supernet", str(c["d"] / "a_file"), "--arch",
                                                   "r24-w50k3e3", "--out", str(o)], 2, "a_file"),
    Case("train --data folder with a 20000x20000 PNG", lambda c, o: ["train", "--data", f"folder:{c['bomb']}",
                                                               "--out", str(o)], 4, "big.png: image too large"),
    Case("check --data unknown spec", lambda c, o: ["check", "--port", "sim", "--model", str(c["model"]),
                                                    "--data", "nosuch:thing", "--out", str(o)], 4, "nosuch"),
    # arch types
    Case("arch kernel 7.9", _export(_arch(kernels=[[7.9], [3], [3]])), 5, "7.9"),
    Case("arch string resolution", _export(_arch(resolution="24")), 5, "resolution"),
    Case("arch NaN width", _export(_arch(widths=[float("nan"), 1.0, 1.0])), 5, "widths"),
    Case("arch negative width", _export(_arch(widths=[-0.5, 1.0, 1.0])), 5, "widths"),
    Case("arch kernels a string", _export(_arch(kernels="333")), 5, "kernels"),
    Case("arch bool resolution (file)", lambda c, o: _export(str(c["d"] / "arch_bool.json"))(c, o), 5, "resolution"),
    Case("arch id garbage", _export("r24-banana"), 5, "r24-banana"),
    # output paths
    Case("train --out an existing file", lambda c, o: ["train", "--out", str(c["d"] / "a_file")], 2, "a_file"),
    Case("check --out an existing file", lambda c, o: ["check", "--port", "sim", "--model", str(c["model"]), "--data",
                                                       "builtin:digits", "--out", str(c["d"] / "a_file")], 2, "a_file"),
    Case("export --out an existing file", lambda c, o: ["export", "--supernet", str(c["sn"]), "--arch",
                                                        "r24-w50k3e3", "--out", str(c["d"] / "a_file")], 2, "a_file"),
    Case("search --out an existing folder", lambda c, o: ["search", "--supernet", str(c["sn"]), "--board",
                                                          "qemu-mps2-an386", "--out", str(o)], 2, "folder"),
    Case("codegen --out an existing file", lambda c, o: ["codegen", "--model", str(c["model"]), "--board",
                                                         "qemu-mps2-an386", "--out", str(c["d"] / "a_file")],
         2, "a_file"),
    Case("catalog --out below a file", lambda c, o: ["catalog", "--supernet", str(c["sn"]), "--out",
                                                     str(c["d"] / "a_file" / "cat")], 2, "a_file"),
    Case("train --out unwritable (/proc)", lambda c, o: ["train", "--out", "/proc/ofa-mcu-run"], 2, "/proc"),
    Case("train --out empty", lambda c, o: ["train", "--out", ""], 2, "--out"),
    Case("train --out name too long", lambda c, o: ["train", "--out", str(o / ("n" * 5000))], 2, "--out"),
    Case("train --resume on an empty folder", lambda c, o: ["train", "--out", str(o), "--resume"], 2, "--resume"),
    # models the check cannot judge
    Case("check a float model", lambda c, o: ["check", "--port", "sim", "--model", str(c["float"]), "--data",
                                              "builtin:digits", "--out", str(o)], 4, "float32"),
    Case("check 3 outputs vs 10 classes", lambda c, o: ["check", "--port", "sim", "--model", str(c["model3"]),
                                                        "--data", "builtin:digits", "--out", str(o)], 4, "outputs 3 values"),
    Case("check an op TFLM lacks", lambda c, o: ["check", "--port", "sim", "--model", str(c["custom"]), "--data",
                                                 "builtin:digits", "--out", str(o)], 6, "MyOp"),
    Case("board-sim an op TFLM lacks", lambda c, o: ["board-sim", "--model", str(c["custom"]), "--duration", "1"],
         6, "MyOp"),
    # codegen
    Case("codegen: SRAM cannot hold the model", lambda c, o: ["--boards-dir", str(c["boards"]), "codegen", "--model",
                                                              str(c["model"]), "--board", "tiny-sram", "--out",
                                                              str(o / "fw")], 8, "usable SRAM"),
    Case("codegen --app-name not C", _codegen("--app-name", "1; rm -rf /"), 2, "app name"),
    Case("codegen unknown board", _codegen(board="\x1b[2Jnope"), 3, "nope"),
]


def _error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1, f"expected one error line, got:\n{err}"
    return lines[0]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, ctx, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    earlier = {"accuracy": 0.97, "note": "an earlier run's result must survive a refused command"}
    (out / SENTINEL).write_text(json.dumps(earlier))
    before = sorted(p.name for p in out.iterdir())
    try:
        code = main(case.argv(ctx, out))
    except SystemExit as e:  # argparse refuses malformed values itself (exit 2)
        code = e.code
    err = capsys.readouterr().err
    assert code == case.exit, err
    assert "Traceback" not in err and "\x1b" not in err  # no terminal escape codes either
    line = _error_line(err)
    assert case.culprit in line, line
    if os.environ.get("OFA_MCU_RELIABILITY_DUMP"):  # to refresh docs/RELIABILITY.md's table
        msg = line.replace(str(tmp_path), "<tmp>").replace(str(ctx["d"]), "<fixtures>").replace("|", "\\|")
        with open(os.environ["OFA_MCU_RELIABILITY_DUMP"], "a", encoding="utf-8") as f:
            f.write(f"| {case.id} | {case.exit} | `{msg[:220]}` |\n")
    assert json.loads((out / SENTINEL).read_text()) == earlier
    after = sorted(p.name for p in out.iterdir() if not p.name.startswith(".ofa-mcu.lock"))
    assert set(before) <= set(after) and not [n for n in after if n.endswith(".tmp")]
    if case.exit != 0 and case.argv(ctx, out)[0] == "check":
        assert not (out / "check.jsonl").exists()  # refused before the first sample: no header-only log


def test_earlier_model_results_are_kept_per_model(ctx, tmp_path, capsys):
    """Checking a different model into the same --out keeps the first model's log and report."""
    out = tmp_path / "out"
    base = ["check", "--port", "sim", "--data", "builtin:digits", "--out", str(out), "--limit", "3",
            "--baud", "921600", "--no-progress"]
    assert main([*base, "--model", str(ctx["model"])]) in (0, 7)
    first = (out / "check_report.json").read_text()
    other, _ = make_tiny_int8_tflite(tmp_path / "other.tflite", resolution=8, num_classes=10, seed=5)
    assert main([*base, "--model", str(other)]) in (0, 7)
    assert main([*base, "--model", str(ctx["model"]), "--limit", "4"]) in (0, 7)  # back to the first: resumes
    kept = list((out / "checks").glob("*/check_report.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["model_sha256"] == inspect_tflite(other).sha256
    rep = json.loads((out / "check_report.json").read_text())
    assert rep["model_sha256"] == json.loads(first)["model_sha256"] and rep["samples"] == 4
    assert rep["throughput"]["session_samples"] == 1  # three samples came from the earlier log
    assert "Traceback" not in capsys.readouterr().err


def _hold_lock(folder: Path) -> subprocess.Popen:
    code = ("import sys, time\nfrom pipeline._io import folder_lock\n"
            "with folder_lock(sys.argv[1], 'check'):\n    print('held', flush=True)\n    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.parametrize("command", ["check", "deploy"])
def test_second_run_on_a_folder_is_refused(command, ctx, tmp_path, capsys):
    run = tmp_path / "run"
    folder = run if command == "check" else run / "boards" / "qemu-mps2-an386"
    folder.mkdir(parents=True)
    (folder / SENTINEL).write_text("{}")
    proc = _hold_lock(folder)
    try:
        argv = (["check", "--port", "sim", "--model", str(ctx["model"]), "--data", "builtin:digits",
                 "--out", str(run)] if command == "check" else
                ["deploy", "--board", "qemu-mps2-an386", "--supernet", str(ctx["sn"]), "--run", str(run)])
        assert main(argv) == 2
    finally:
        proc.kill()
        proc.wait()
    line = _error_line(capsys.readouterr().err)
    assert "in use by pid" in line and str(proc.pid) in line
    assert sorted(p.name for p in folder.iterdir()) == [".ofa-mcu.lock", SENTINEL]


def test_codegen_refuses_the_users_own_makefile_unless_forced(ctx, tmp_path, capsys):
    fw = tmp_path / "fw"
    fw.mkdir()
    (fw / "Makefile").write_text("all:\n\techo my own build\n")
    argv = ["codegen", "--model", str(ctx["model"]), "--board", "qemu-mps2-an386", "--out", str(fw)]
    assert main(argv) == 2
    line = _error_line(capsys.readouterr().err)
    assert "Makefile" in line and "not generated by ofa-mcu" in line
    assert (fw / "Makefile").read_text() == "all:\n\techo my own build\n"
    assert sorted(p.name for p in fw.iterdir()) == ["Makefile"]
    assert main([*argv, "--force"]) == 0
    assert "my own build" not in (fw / "Makefile").read_text()
    (fw / "notes.txt").write_text("mine")
    assert main(argv) == 0  # regenerating over its own files needs no --force; other files stay
    assert (fw / "notes.txt").read_text() == "mine"


def test_report_markdown_escapes_board_names(ctx, monkeypatch):
    from pipeline.boards import load_board
    from pipeline.report.deploy_report import _markdown

    monkeypatch.setenv("OFA_MCU_BOARDS_DIR", str(ctx["boards"]))
    board = load_board("tiny-sram")
    md = _markdown({"arch": "r24-w50k3e3", "supernet": "runs/x/supernet", "stages": {"search": {"line": "<b>x</b>"}},
                    "skipped": {"flash": "no <img src=x onerror=alert(3)>"}, "plots": {},
                    "firmware": "fw`<script>`"}, board)
    assert "<script>" not in md and "<img" not in md and "<b>" not in md
    assert "&lt;script&gt;alert(1)&lt;/script&gt; \\| \\[x\\](javascript:alert(2))" in md


# -- a hostile device: values a correct firmware never sends -------------------------------------------

def _client(dev: HostileDevice, timeout: float = 0.2, retries: int = 2) -> ProtocolClient:
    return ProtocolClient(serial.Serial(dev.port_path, 115200), timeout_s=timeout, retries=retries)


@pytest.mark.parametrize("field,value,culprit", [
    ("max_payload", 0, "max_payload 0"),
    ("max_payload", 5, "max_payload 5"),
    ("max_payload", 131, "max_payload 131"),
    ("output_scale", float("nan"), "output_scale nan"),
    ("input_scale", float("inf"), "input_scale inf"),
    ("output_scale", -1.0, "output_scale -1"),
    ("output_bytes", 0, "output of"),
])
def test_device_info_outside_the_protocol_is_refused(ctx, field, value, culprit):
    model = inspect_tflite(ctx["model"])
    with HostileDevice(Behaviour(info_for(model, **{field: value}))) as dev:
        client = _client(dev)
        try:
            with pytest.raises(SerialLinkError, match="protocol does not allow") as e:
                client.hello()
            assert culprit in str(e.value)
        finally:
            client.close()


def test_truncated_info_is_refused(ctx):
    model = inspect_tflite(ctx["model"])
    with HostileDevice(Behaviour(info_for(model), info_payload=b"\x01\x00\x01")) as dev:
        client = _client(dev)
        try:
            with pytest.raises(SerialLinkError, match="too short"):
                client.hello()
        finally:
            client.close()


def test_escape_codes_in_the_board_id_are_escaped(ctx):
    model = inspect_tflite(ctx["model"])
    evil = "\x1b[2J\x1b[31mpwned\r\n\x07"
    with HostileDevice(Behaviour(info_for(model, board_id=evil))) as dev:
        client = _client(dev)
        try:
            info = client.hello()
        finally:
            client.close()
    assert info.board_id == "\\x1b[2J\\x1b[31mpwned\\r\\n\\x07"
    assert all(c.isprintable() for c in info.board_id) and "\x1b" not in json.dumps(info.to_dict())


@pytest.mark.parametrize("behaviour,message", [("huge_output", "4294967295-byte output"),
                                                ("short_result", "RESULT of 5 bytes")])
def test_device_sizes_are_capped_by_the_model(ctx, tmp_path, capsys, behaviour, message):
    """Through the CLI: exit 10, one line, and no sample recorded from the bogus answer."""
    model = inspect_tflite(ctx["model"])
    with HostileDevice(Behaviour(info_for(model), invoke=behaviour)) as dev:
        t0 = time.monotonic()
        code = main(["check", "--port", dev.port_path, "--model", str(ctx["model"]), "--data", "builtin:digits",
                     "--out", str(tmp_path), "--limit", "2", "--timeout", "0.2", "--retries", "2", "--no-progress"])
        elapsed = time.monotonic() - t0
    assert code == 10 and elapsed < 20
    line = _error_line(capsys.readouterr().err)
    assert message in line
    samples = [json.loads(x) for x in (tmp_path / "check.jsonl").read_text().splitlines()[1:]]
    assert samples == []


def test_invoke_acknowledged_and_never_answered_is_bounded_by_timeout(ctx):
    """--timeout bounds every wait: the whole INVOKE costs about timeout x (retries + 1), not 124 s."""
    model = inspect_tflite(ctx["model"])
    timeout, retries = 0.3, 3
    with HostileDevice(Behaviour(info_for(model), invoke="ack_then_silent")) as dev:
        client = _client(dev, timeout=timeout, retries=retries)
        try:
            client.send_input(bytes(model.input.nbytes))
            t0 = time.monotonic()
            with pytest.raises(SerialLinkError, match="no RESULT reply to INVOKE"):
                client.invoke()
            elapsed = time.monotonic() - t0
        finally:
            client.close()
    assert timeout * (retries + 1) * 0.9 <= elapsed <= timeout * (retries + 1) + 1.0, elapsed


def test_model_files_are_read_as_regular_files_with_a_cap(tmp_path):
    from pipeline._io import MAX_MODEL_BYTES
    from pipeline.errors import ArtifactError

    big = tmp_path / "huge.tflite"
    with open(big, "wb") as f:  # sparse: no disk space used
        f.truncate(MAX_MODEL_BYTES + 1)
    for path, msg in ((big, "more than"), (Path("/dev/zero"), "not a regular file"), (tmp_path, "is a folder")):
        t0 = time.monotonic()
        with pytest.raises(ArtifactError, match=msg):
            inspect_tflite(path)
        assert time.monotonic() - t0 < 2


def test_reliability_doc_lists_every_case():
    doc = (ROOT / "docs" / "RELIABILITY.md").read_text()
    missing = [c.id for c in CASES if f"| {c.id} | {c.exit} |" not in doc]
    assert not missing, f"docs/RELIABILITY.md lacks rows for: {missing}"
