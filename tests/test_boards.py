"""Board catalog: every shipped board validates; malformed or inconsistent files are refused by name."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.boards import BUILTIN_BOARDS_DIR, list_boards, load_board, parse_board
from pipeline.errors import BoardError

SHIPPED = sorted(BUILTIN_BOARDS_DIR.glob("*.yaml"))
REQUIRED_IDS = {
    "nucleo-f746zg", "nucleo-h743zi2", "nucleo-f412zg", "nucleo-l4r5zi", "nucleo-u575zi-q",
    "stm32f769i-disco", "arduino-nano-33-ble-sense", "rpi-pico", "rpi-pico2", "sparkfun-edge",
    "qemu-mps2-an386", "qemu-mps2-an500"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_board_validates(path):
    board = parse_board(path)
    assert board.id == path.stem
    assert 0 < board.usable_sram_bytes <= board.sram_bytes
    assert 0 < board.usable_flash_bytes < board.flash_bytes
    assert board.arena_bank_bytes >= board.usable_sram_bytes or len(board.sram_banks) == 1
    assert board.sources


def test_catalog_has_the_required_boards():
    ids = {b.id for b in list_boards()}
    assert REQUIRED_IDS <= ids
    assert len(ids) >= 12


def test_datasheet_figures_of_a_few_boards():
    f746 = load_board("nucleo-f746zg")
    assert (f746.core, f746.clock_hz, f746.sram_bytes, f746.flash_bytes) == ("cortex-m7", 216_000_000, 320 * 1024, 1 << 20)
    h743 = load_board("nucleo-h743zi2")
    assert h743.arena_bank == "AXI_SRAM" and h743.arena_bank_bytes == 512 * 1024
    assert h743.usable_sram_bytes == 512 * 1024  # the arena can only use the AXI bank
    pico = load_board("rpi-pico")
    assert pico.core == "cortex-m0plus" and pico.fpu == "none" and not pico.has_dwt_cyccnt
    assert load_board("qemu-mps2-an386").qemu_machine == "mps2-an386"


def _good() -> dict:
    return yaml.safe_load((BUILTIN_BOARDS_DIR / "nucleo-f412zg.yaml").read_text())


def _write(tmp_path: Path, data, name: str = "myboard") -> Path:
    if isinstance(data, dict):
        data = {**data, "id": data.get("id", name)} if "id" in data else data
    p = tmp_path / f"{name}.yaml"
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return p


def _mutated(**changes) -> dict:
    d = _good()
    d["id"] = "myboard"
    for k, v in changes.items():
        if v is _DELETE:
            d.pop(k)
        else:
            d[k] = v
    return d


_DELETE = object()

MALFORMED = [
    # (case id, board data, text the error must contain)
    ("missing-field", _mutated(clock_hz=_DELETE), "clock_hz"),
    ("wrong-type", _mutated(sram_bytes="256K"), "sram_bytes"),
    ("reserved-sram-too-big", _mutated(reserved_sram_bytes=262144), "reserved_sram_bytes"),
    ("reserved-flash-too-big", _mutated(reserved_flash_bytes=2 << 20), "reserved_flash_bytes"),
    ("unknown-core", _mutated(core="cortex-m99"), "core"),
    ("unknown-field", _mutated(sram_kb=256), "sram_kb"),
    ("banks-do-not-add-up", _mutated(sram_banks=[{"name": "SRAM", "address": 0x20000000, "size_bytes": 1000}]),
     "sram_banks"),
    ("arena-bank-unknown", _mutated(arena_bank="CCM"), "arena_bank"),
    ("m0plus-with-fpu", _mutated(core="cortex-m0plus", fpu="fpv4-sp-d16"), "fpu"),
    ("vid-without-pid", _mutated(serial={"baud": 115200, "usb_vid": "0483"}), "serial.usb_pid"),
    ("negative-clock", _mutated(clock_hz=-5), "clock_hz"),
    ("bad-runner", _mutated(flash_runner={"tool": "jlink-magic", "args": []}), "flash_runner.tool"),
    ("power-without-source", _mutated(active_power_source=_DELETE), "active_power_source"),
]


@pytest.mark.parametrize("case,data,culprit", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_board_names_file_and_field(tmp_path, case, data, culprit):
    path = _write(tmp_path, data)
    with pytest.raises(BoardError) as e:
        parse_board(path)
    msg = str(e.value)
    assert str(path) in msg, msg
    assert culprit in msg, msg


def test_not_yaml_mapping(tmp_path):
    p = tmp_path / "myboard.yaml"
    p.write_text("- just\n- a list\n")
    with pytest.raises(BoardError, match="myboard.yaml"):
        parse_board(p)


def test_broken_yaml(tmp_path):
    p = tmp_path / "myboard.yaml"
    p.write_text("id: [unclosed\n")
    with pytest.raises(BoardError, match="not valid YAML"):
        parse_board(p)


def test_id_must_match_file_name(tmp_path):
    p = _write(tmp_path, _mutated(id="other"), name="myboard")
    with pytest.raises(BoardError, match="'id'"):
        parse_board(p)


def test_user_board_dir_adds_boards_and_refuses_duplicates(tmp_path, monkeypatch):
    _write(tmp_path, _mutated(name="My board"), name="myboard")
    monkeypatch.setenv("OFA_MCU_BOARDS_DIR", str(tmp_path))
    assert load_board("myboard").name == "My board"
    dup = _good()  # same id as the shipped nucleo-f412zg
    (tmp_path / "nucleo-f412zg.yaml").write_text(yaml.safe_dump(dup))
    with pytest.raises(BoardError) as e:
        list_boards()
    assert "duplicates board 'nucleo-f412zg'" in str(e.value) and str(tmp_path) in str(e.value)


def test_unknown_board_suggests_close_ids():
    with pytest.raises(BoardError) as e:
        load_board("nucleo-f746")
    assert "nucleo-f746zg" in e.value.hint


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True, env=env)


def test_cli_boards_table_and_json():
    r = _cli("boards")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["id", "core", "MHz"]
    assert len(lines) - 1 >= 12
    r = _cli("boards", "--json")
    data = json.loads(r.stdout)
    assert {b["id"] for b in data} >= REQUIRED_IDS
    assert all(b["usable_sram_bytes"] == b["sram_bytes"] - b["reserved_sram_bytes"] or b["id"] == "nucleo-h743zi2"
               for b in data)
    r = _cli("boards", "show", "rpi-pico", "--json")
    assert json.loads(r.stdout)["core"] == "cortex-m0plus"


def test_cli_errors_are_one_line_with_exit_code(tmp_path):
    r = _cli("boards", "show", "no-such-board")
    assert r.returncode == 3
    assert r.stderr.startswith("error: unknown board 'no-such-board'")
    assert "Traceback" not in r.stderr
    bad = tmp_path / "b"
    bad.mkdir()
    _write(bad, _mutated(core="cortex-m99"))
    r = _cli("--boards-dir", str(bad), "boards")
    assert r.returncode == 3 and "myboard.yaml" in r.stderr and "core" in r.stderr
    r = _cli("--verbose", "--boards-dir", str(bad), "boards")
    assert "Traceback" in r.stderr
