"""Board catalog: every shipped board validates; malformed or inconsistent files are refused by name."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.boards import (BUILTIN_BOARDS_DIR, MAX_FILE_BYTES, core_info, list_boards, load_board,
                             parse_board, parse_core, parse_soc, soc_info)
from pipeline.errors import BoardError

SHIPPED = sorted(BUILTIN_BOARDS_DIR.glob("*.yaml"))
SHIPPED_SOCS = sorted((BUILTIN_BOARDS_DIR / "socs").glob("*.yaml"))
SHIPPED_CORES = sorted((BUILTIN_BOARDS_DIR / "cores").glob("*.yaml"))
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
    assert board.sources and board.soc.sources and board.core_info.sources
    assert board.clock_hz <= board.max_clock_hz


@pytest.mark.parametrize("path", SHIPPED_SOCS, ids=lambda p: p.stem)
def test_every_shipped_soc_validates(path):
    soc = parse_soc(path)
    assert soc.id == path.stem and soc.sources
    assert core_info(soc.core).id == soc.core
    assert soc.fpu in core_info(soc.core).fpu_options


@pytest.mark.parametrize("path", SHIPPED_CORES, ids=lambda p: p.stem)
def test_every_shipped_core_validates(path):
    core = parse_core(path)
    assert core.id == path.stem and core.sources
    assert core.cmsis_nn_kernels == ("mve" if core.mve else "dsp" if core.dsp else "none")


def test_the_layers_cover_the_qemu_cores():
    """Cortex-M33 and M55 (Helium) cores and their QEMU SoCs exist for the emulated boards to reference."""
    assert core_info("cortex-m55").mve and core_info("cortex-m55").cmsis_nn_kernels == "mve"
    assert core_info("cortex-m33").dsp and not core_info("cortex-m33").mve
    an505, an547 = soc_info("mps2-an505"), soc_info("mps3-an547")
    assert (an505.core, an505.qemu_machine, an505.emulated) == ("cortex-m33", "mps2-an505", True)
    assert (an547.core, an547.qemu_machine, an547.emulated) == ("cortex-m55", "mps3-an547", True)


def test_catalog_has_the_required_boards():
    ids = {b.id for b in list_boards()}
    assert REQUIRED_IDS <= ids
    assert len(ids) >= 12


def test_datasheet_figures_of_a_few_boards():
    f746 = load_board("nucleo-f746zg")
    assert (f746.core, f746.clock_hz, f746.sram_bytes, f746.flash_bytes) == ("cortex-m7", 216_000_000, 320 * 1024, 1 << 20)
    assert f746.mcu == "STM32F746ZG" and f746.soc.id == "stm32f746zg" and f746.clock.pll_n == 216
    h743 = load_board("nucleo-h743zi2")
    assert h743.arena_bank == "AXI_SRAM" and h743.arena_bank_bytes == 512 * 1024
    assert h743.usable_sram_bytes == 512 * 1024  # the arena can only use the AXI bank
    assert (h743.clock_hz, h743.max_clock_hz) == (64_000_000, 480_000_000)  # the firmware's HSI, the rating
    pico = load_board("rpi-pico")
    assert pico.core == "cortex-m0plus" and pico.fpu == "none" and not pico.has_dwt_cyccnt
    assert pico.flash_bytes == 2 << 20 and pico.flash_address == 0x10000000  # external flash: the board states it
    an386 = load_board("qemu-mps2-an386")
    assert an386.qemu_machine == "mps2-an386" and an386.emulated
    assert (an386.sram_bytes, an386.flash_bytes) == (256 * 1024, 1 << 20)  # the budget, not the 4 MB SSRAM
    assert load_board("sparkfun-edge").flash_address == 0xC000


def test_power_is_computed_at_the_configured_clock():
    """Energy uses the same clock as the firmware: run current per MHz x clock_hz x supply."""
    for b in list_boards():
        if b.active_power_mw is None:
            continue
        raw = yaml.safe_load(Path(b.path).read_text())["power"]
        assert b.active_power_mw == pytest.approx(raw["run_ua_per_mhz"] * b.clock_hz / 1e6 * raw["supply_v"] / 1e3,
                                                  abs=0.01)


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
_SERIAL = {"baud": 115200, "uart": "USART3", "tx_pin": "PD8", "rx_pin": "PD9"}

MALFORMED = [
    # (case id, board data, text the error must contain)
    ("missing-field", _mutated(clock_hz=_DELETE), "clock_hz"),
    ("wrong-type", _mutated(reserved_sram_bytes="16K"), "reserved_sram_bytes"),
    ("reserved-sram-too-big", _mutated(reserved_sram_bytes=262144), "reserved_sram_bytes"),
    ("reserved-flash-too-big", _mutated(reserved_flash_bytes=2 << 20), "reserved_flash_bytes"),
    ("unknown-soc", _mutated(soc="stm32f999"), "soc"),
    ("unknown-field", _mutated(sram_kb=256), "sram_kb"),
    ("chip-fact-in-board", _mutated(core="cortex-m4"), "core"),
    ("on-chip-flash-size-in-board", _mutated(flash_bytes=1 << 20), "flash_bytes"),
    ("arena-bank-unknown", _mutated(arena_bank="CCM"), "arena_bank"),
    ("vid-without-pid", _mutated(serial={**_SERIAL, "usb_vid": "0483"}), "serial.usb_pid"),
    ("negative-clock", _mutated(clock_hz=-5), "clock_hz"),
    ("clock-above-soc-max", _mutated(clock_hz=200_000_000), "clock_hz"),
    ("clock-pll-cannot-reach", _mutated(clock_hz=100_500_000), "clock_hz"),
    ("bad-runner", _mutated(flash_runner={"tool": "jlink-magic", "args": []}), "flash_runner.tool"),
    ("power-without-source", _mutated(power={"run_ua_per_mhz": 100, "supply_v": 3.3}), "power.source"),
    ("uart-not-on-soc", _mutated(serial={**_SERIAL, "uart": "USART9"}), "serial.uart"),
    ("uart-pins-not-an-option", _mutated(serial={**_SERIAL, "tx_pin": "PB10", "rx_pin": "PB11"}), "serial.tx_pin"),
    ("uart-missing", _mutated(serial={"baud": 115200}), "serial.uart"),
    ("flash-address-outside", _mutated(flash_address=0x20000000), "flash_address"),
    ("budget-above-chip", _mutated(budget={"sram_bytes": 1 << 20}), "budget.sram_bytes"),
    # hostile sizes and addresses (issue 14): refused by the schema's upper bounds
    ("flash-2-pow-63", _mutated(soc="rp2040", flash_bytes=2 ** 63, serial={"baud": 115200}), "flash_bytes"),
    ("flash-address-64-bit", _mutated(flash_address=0x1_0000_0000), "flash_address"),
    ("reserve-2-pow-40", _mutated(reserved_flash_bytes=2 ** 40), "reserved_flash_bytes"),
    ("clock-2-pow-63", _mutated(clock_hz=2 ** 63), "clock_hz"),
    ("huge-args-list", _mutated(flash_runner={"tool": "openocd", "args": ["x"] * 1000}), "flash_runner.args"),
]


@pytest.mark.parametrize("case,data,culprit", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_board_names_file_and_field(tmp_path, case, data, culprit):
    path = _write(tmp_path, data)
    with pytest.raises(BoardError) as e:
        parse_board(path)
    msg = str(e.value)
    assert str(path) in msg, msg
    assert culprit in msg, msg
    assert "\n" not in msg


def test_fixed_clock_board_must_state_the_firmware_clock(tmp_path):
    """The firmware for an H7 runs on the 64 MHz HSI: a board claiming 480 MHz is refused, naming the SoC."""
    d = yaml.safe_load((BUILTIN_BOARDS_DIR / "nucleo-h743zi2.yaml").read_text())
    d["id"], d["clock_hz"] = "myboard", 480_000_000
    with pytest.raises(BoardError) as e:
        parse_board(_write(tmp_path, d))
    assert "clock_hz" in str(e.value) and "64000000" in str(e.value) and "stm32h743zi.yaml" in str(e.value)


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
    assert all(b["usable_sram_bytes"] == b["sram_bytes"] - b["reserved_sram_bytes"]
               or b["id"] in ("nucleo-h743zi2", "qemu-mps3-an547")  # arena in one of several banks
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


# ------------------------------------------------------------------------------ layering in user folders

def _soc_copy(soc_id: str) -> dict:
    return yaml.safe_load((BUILTIN_BOARDS_DIR / "socs" / f"{soc_id}.yaml").read_text())


def test_a_board_of_a_known_soc_is_one_small_file(tmp_path, monkeypatch):
    (tmp_path / "my-f412.yaml").write_text(
        "id: my-f412\nname: My F412 carrier\nvendor: Me\nsoc: stm32f412zg\nclock_hz: 84000000\n"
        "reserved_sram_bytes: 8192\nreserved_flash_bytes: 16384\n"
        "flash_runner: {tool: openocd, args: [-f, board/st_nucleo_f4.cfg]}\n"
        "serial: {baud: 115200, uart: USART3, tx_pin: PD8, rx_pin: PD9}\nsources: [\"my schematic\"]\n")
    monkeypatch.setenv("OFA_MCU_BOARDS_DIR", str(tmp_path))
    b = load_board("my-f412")
    assert (b.mcu, b.core, b.clock_hz, b.clock.pll_n, b.sram_bytes) == ("STM32F412ZG", "cortex-m4", 84_000_000, 84, 256 << 10)


def test_a_new_soc_is_one_more_file_in_a_socs_folder(tmp_path):
    soc = _soc_copy("stm32f412zg")
    soc.update(id="stm32f411re", name="STM32F411RE", sram_banks=[{"name": "SRAM", "address": 0x20000000,
                                                                   "size_bytes": 131072}])
    soc["flash"]["size_bytes"] = 512 << 10
    (tmp_path / "socs").mkdir()
    (tmp_path / "socs" / "stm32f411re.yaml").write_text(yaml.safe_dump(soc))
    board = _mutated(soc="stm32f411re", name="Nucleo F411")
    board["id"] = "my-f411"
    _write(tmp_path, board, name="my-f411")
    b = load_board("my-f411", boards_dir=tmp_path)
    assert (b.mcu, b.sram_bytes, b.flash_bytes) == ("STM32F411RE", 128 << 10, 512 << 10)
    assert b.soc.path == str(tmp_path / "socs" / "stm32f411re.yaml")


def test_a_user_soc_cannot_shadow_a_builtin_one(tmp_path):
    (tmp_path / "socs").mkdir()
    (tmp_path / "socs" / "stm32f412zg.yaml").write_text(yaml.safe_dump(_soc_copy("stm32f412zg")))
    r = _cli("--boards-dir", str(tmp_path), "boards")
    assert r.returncode == 3 and "duplicates 'stm32f412zg'" in r.stderr and "Traceback" not in r.stderr


# --------------------------------------------------------------------- hostile files (issue 14)

ALIAS_BOMB = ("a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
              + "".join(f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("bcdefgh", "cdefghi")))


def _hostile(kind: str, tmp_path: Path) -> tuple[Path, Path]:
    """(boards dir, culprit path) for one hostile-file case."""
    d = tmp_path / "boards"
    d.mkdir()
    case, layer = kind.split("@")
    folder = d if layer == "board" else d / ("socs" if layer == "soc" else "cores")
    folder.mkdir(exist_ok=True)
    p = folder / "x.yaml"
    if case == "alias-bomb":
        p.write_text(ALIAS_BOMB)
    elif case == "directory":
        p.mkdir()
    elif case == "not-utf8":
        p.write_bytes(b"id: x\nname: \xff\xfe\xfa\n")
    elif case == "oversized":
        p.write_text("# " + "x" * (MAX_FILE_BYTES + 10) + "\nid: x\n")
    elif case == "one-alias":
        p.write_text("id: &i x\nname: *i\n")
    elif case == "deep-nesting":
        p.write_text("id: " + "[" * 20000 + "]" * 20000 + "\n")
    elif case == "huge-integer":
        p.write_text("id: x\nclock_hz: " + "9" * 5000 + "\n")
    elif case == "integer-key":
        p.write_text("id: x\n1: 2\n")
    elif case == "device-symlink":
        p.symlink_to("/dev/zero")
    elif case == "fifo":
        os.mkfifo(p)
    return d, p


HOSTILE = [f"{c}@{layer}" for c in ("alias-bomb", "directory", "not-utf8", "oversized", "one-alias",
                                     "deep-nesting", "huge-integer", "integer-key", "device-symlink", "fifo")
           for layer in ("board", "soc", "core")]


@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_files_in_a_boards_folder_exit_3_naming_the_file(tmp_path, kind):
    d, culprit = _hostile(kind, tmp_path)
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "--boards-dir", str(d), "boards"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr
    first = r.stderr.splitlines()[0]
    assert first.startswith("error: ") and str(culprit) in first, r.stderr


def test_alias_bomb_is_refused_fast_by_the_parser(tmp_path):
    import time

    d, p = _hostile("alias-bomb@board", tmp_path)
    t0 = time.perf_counter()
    with pytest.raises(BoardError, match="aliases"):
        parse_board(p)
    assert time.perf_counter() - t0 < 1.0


def test_64_bit_addresses_in_a_soc_are_refused(tmp_path):
    soc = _soc_copy("stm32f412zg")
    soc["flash"]["address"] = 0xFFFF_0000_0800_0000
    (tmp_path / "socs").mkdir()
    (tmp_path / "socs" / "stm32f412zg.yaml").write_text(yaml.safe_dump(soc))
    with pytest.raises(BoardError) as e:
        parse_soc(tmp_path / "socs" / "stm32f412zg.yaml")
    assert "flash.address" in str(e.value)
    soc = _soc_copy("stm32f412zg")
    soc["sram_banks"][0]["address"] = 0xFFFF_F000  # 256 KB from here wraps the 32-bit space
    (tmp_path / "socs" / "stm32f412zg.yaml").write_text(yaml.safe_dump(soc))
    with pytest.raises(BoardError, match="sram_banks.0"):
        parse_soc(tmp_path / "socs" / "stm32f412zg.yaml")


def test_a_huge_flash_never_reaches_the_linker_script(tmp_path):
    """2^63 bytes of flash used to link (LENGTH = 9223372036854775808); now codegen exits 3 first."""
    d = tmp_path / "b"
    d.mkdir()
    _write(d, _mutated(soc="rp2040", flash_bytes=2 ** 63, serial={"baud": 115200}))
    r = _cli("--boards-dir", str(d), "boards", "show", "myboard")
    assert r.returncode == 3 and "flash_bytes" in r.stderr and "myboard.yaml" in r.stderr


# ---------------------------------------------------------------- one clock truth (issue 12, point 1)

def _define(text: str, name: str) -> int | None:
    m = re.search(rf"^#define {name} \(?(\d+)u\)?$", text, re.M)
    return int(m.group(1)) if m else None


@pytest.mark.parametrize("board_id", [b.id for b in list_boards()])
def test_firmware_clock_equals_the_board_clock_every_stage_uses(board_id, tmp_path):
    """The clock board.c configures (PLL constants or the fixed source, parsed from the generated code),
    BOARD_CORE_CLOCK_HZ in board.h, and the number search, energy and profile use (Board.clock_hz) agree."""
    sys.path.insert(0, str(Path(__file__).parent))
    from firmware_helpers import golden_model_bytes

    from pipeline.codegen import generate_firmware
    from pipeline.costs.estimate import estimate
    from pipeline.supernet.space import SearchSpace

    board = load_board(board_id)
    model = tmp_path / "model_int8.tflite"
    model.write_bytes(golden_model_bytes())
    fw = generate_firmware(model, board_id, tmp_path / "fw")
    board_h, board_c = (fw / "board.h").read_text(), (fw / "board.c").read_text()
    assert _define(board_h, "BOARD_CORE_CLOCK_HZ") == board.clock_hz
    source = _define(board_c, "CLOCK_SOURCE_HZ")
    if board.family in ("rp2040", "rp2350"):
        assert "set_sys_clock_khz(BOARD_CORE_CLOCK_HZ / 1000u, true)" in board_c and board.clock_hz % 1000 == 0
    elif _define(board_c, "PLL_N") is not None:
        m, n, p = (_define(board_c, k) for k in ("PLL_M", "PLL_N", "PLL_P"))
        assert "RCC_PLLCFGR = PLL_M | (PLL_N << 6) | ((PLL_P / 2u - 1u) << 16)" in board_c
        assert source // m * n // p == board.clock_hz
    else:
        assert source == board.clock_hz, f"board.c runs on {source} Hz, the board file says {board.clock_hz}"
        assert "PLL" not in board_c.split("void board_init", 1)[0].replace("PLL does not", "")
    # search: the cost model turns cycles into ms with this same field (double it, the latency halves)
    import dataclasses

    space = SearchSpace()
    arch = space.smallest()
    slow, fast = estimate(space, arch, board), estimate(space, arch, dataclasses.replace(board, clock_hz=2 * board.clock_hz))
    assert slow.latency_ms == pytest.approx(2 * fast.latency_ms)


# ------------------------------------------------- board facts only in board/SoC/core files (issue 15)

REPO = BUILTIN_BOARDS_DIR.parent
HEX = re.compile(r"0x([0-9A-Fa-f]+)")
CLOCK_INT = re.compile(r"(?<![\w.])(\d{1,3}(?:_\d{3}){2,}|\d{7,})u?\b")
CLOCK_TEXT = re.compile(r"(?<![\w.])\d+(?:\.\d+)? ?(?:MHz|kHz)\b")
# Numbers that are not board facts, each with its reason. Keep this short and honest.
ALLOWED = {
    # Arm architecture: the Private Peripheral Bus (SysTick, SCB, DWT, CoreDebug) is at the same address
    # on every Cortex-M (Armv6-M/v7-M/v8-M ARM, B3.2 System Control Space), and its keys are architectural.
    "ppb": lambda v: 0xE0000000 <= v <= 0xE00FFFFF,
    "dwt-lar-key": lambda v: v == 0xC5ACCE55,       # CoreSight lock access key
    "aircr-vectkey": lambda v: v == 0x05FA0004,     # SCB AIRCR VECTKEY | SYSRESETREQ
    "systick-24-bit": lambda v: v == 0x00FFFFFF,    # SysTick is a 24-bit counter (architecture)
    "all-ones": lambda v: v in (0xFFFF, 0xFFFFFFFF),  # masks and "not connected"
}
# (file, literal) pairs that are protocol or unit constants, not board facts.
ALLOWED_LITERALS = {
    ("firmware_templates/common/protocol.c", "*"): "CRC-32 table (IEEE 802.3 polynomial 0xEDB88320)",
    ("firmware_templates/common/protocol.h", "0xEDB88320"): "CRC-32 polynomial",
    ("firmware_templates/common/board.h.j2", "1000000"): "microseconds per second: the 1 MHz system timer",
    ("firmware_templates/common/board.h.j2", "1 MHz"): "the microsecond system timer of cores without DWT",
    ("firmware_templates/common/README.md.j2", "1 MHz"): "the microsecond system timer of cores without DWT",
    ("firmware_templates/families/rp2040/board.c.j2", "1 MHz"): "pico-sdk time_us_64(): microseconds",
    ("pipeline/serial/sim.py", "100_000_000"): "VIRTUAL_CLOCK_HZ: the simulated board's clock when no board is given",
    ("firmware_templates/common/board.h.j2", "1000000000"): "nanoseconds per second: QEMU's -icount instruction clock",
    ("firmware_templates/families/mps2/board.c.j2", "1000000"): "Hz per MHz: reduces the ticks-to-instructions fraction",
    ("pipeline/validate.py", "20_000_000"): "upper bound of --baud (a sanity cap on user input, no board fact)",
    ("pipeline/validate.py", "1_000_000"): "upper bounds of --samples and --calib (sanity caps, no board facts)",
    ("pipeline/data/audio.py", "16 kHz"): "the audio sample rate of keyword-spotting clips, no board fact",
    ("pipeline/data/dataset.py", "16 kHz"): "the audio sample rate of keyword-spotting clips, no board fact",
    ("pipeline/data/keywords.py", "16 kHz"): "the audio sample rate of keyword-spotting clips, no board fact",
    ("pipeline/serial/eembc.py", "1_000_000"): "microseconds per second: EEMBC runners report a 1 MHz timer",
}


def _python_code_tokens(path: Path):
    """(line, text) of number and string tokens of Python code; comments and docstrings are documentation."""
    import io
    import tokenize

    prev, depth = None, 0
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if tok.type == tokenize.OP and tok.string in "([{":
            depth += 1
        elif tok.type == tokenize.OP and tok.string in ")]}":
            depth -= 1
        docstring = depth == 0 and prev in (None, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.NL)
        if tok.type == tokenize.NUMBER or (tok.type == tokenize.STRING and not docstring):
            yield tok.start[0], tok.string
        if tok.type != tokenize.COMMENT:
            prev = tok.type


def _scan_units():
    for path in sorted((REPO / "firmware_templates").rglob("*")):
        if path.is_file():
            for i, line in enumerate(path.read_text().splitlines(), 1):
                yield path, i, line
    for path in sorted((REPO / "pipeline").rglob("*.py")):
        for i, text in _python_code_tokens(path):
            yield path, i, text


def test_no_board_fact_outside_the_board_soc_and_core_files():
    """Hex addresses and clock frequencies appear only in boards/ (YAML); templates and Python read them
    through Board. A number here either moves into a board/SoC/core file or, if it is not a board fact,
    joins the documented allow-list above."""
    offenders = []
    for path, line_no, text in _scan_units():
        rel = path.relative_to(REPO).as_posix()
        if (rel, "*") in ALLOWED_LITERALS:
            continue
        found = []
        for m in HEX.finditer(text):
            v = int(m.group(1), 16)
            if len(m.group(1).lstrip("0")) >= 5 and not any(ok(v) for ok in ALLOWED.values()):
                found.append(m.group(0))
        found += [m.group(1) for m in CLOCK_INT.finditer(text)]
        found += [m.group(0) for m in CLOCK_TEXT.finditer(text)]
        for lit in found:
            if (rel, lit) not in ALLOWED_LITERALS:
                offenders.append(f"{rel}:{line_no}: {lit}")
    assert not offenders, "board facts outside boards/:\n" + "\n".join(offenders)


def test_the_fact_scanner_finds_planted_facts(tmp_path):
    """The scanner above can fail: a register address or a clock in code or a string is found."""
    p = tmp_path / "planted.py"
    p.write_text('"""Docstring: 0x40004800 at 16 MHz is documentation."""\nUART = 0x40004800\n'
                 'doc = f(\n    "USART3 at 0x40011000, 216 MHz",\n)\nHSI_HZ = 16_000_000  # 0x12345678 comment\n')
    found = [t for _, t in _python_code_tokens(p)]
    assert "0x40004800" in found and any("0x40011000" in t for t in found) and "16_000_000" in found
    assert not any("Docstring" in t or "0x12345678" in t for t in found)
