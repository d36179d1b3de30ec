"""Board catalog: one YAML file per board, checked against boards/schema.json at load.

Boards come from the package's `boards/` folder plus any folder given with `--boards-dir` or the
OFA_MCU_BOARDS_DIR environment variable (os.pathsep-separated), so users add boards without touching
the package. A user board with the id of a built-in board is an error, not a silent override.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from .errors import BoardError
from .resources import resource_dir

BOARDS_ENV = "OFA_MCU_BOARDS_DIR"
BUILTIN_BOARDS_DIR = resource_dir("boards")
SCHEMA_PATH = BUILTIN_BOARDS_DIR / "schema.json"

# What the core can do; a board naming a core outside this table is refused by the schema.
CORE_INFO = {
    "cortex-m0plus": {"mcpu": "cortex-m0plus", "has_dwt_cyccnt": False, "dsp": False},
    "cortex-m3": {"mcpu": "cortex-m3", "has_dwt_cyccnt": True, "dsp": False},
    "cortex-m4": {"mcpu": "cortex-m4", "has_dwt_cyccnt": True, "dsp": True},
    "cortex-m7": {"mcpu": "cortex-m7", "has_dwt_cyccnt": True, "dsp": True},
    "cortex-m33": {"mcpu": "cortex-m33", "has_dwt_cyccnt": True, "dsp": True},
    "cortex-m55": {"mcpu": "cortex-m55", "has_dwt_cyccnt": True, "dsp": True},
}


@dataclass(frozen=True)
class SramBank:
    name: str
    address: int
    size_bytes: int


@dataclass(frozen=True)
class FlashRunner:
    tool: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class Board:
    id: str
    name: str
    vendor: str
    mcu: str
    core: str
    fpu: str
    clock_hz: int
    sram_bytes: int
    flash_bytes: int
    flash_address: int
    sram_banks: tuple[SramBank, ...]
    arena_bank: str
    reserved_sram_bytes: int
    reserved_flash_bytes: int
    family: str
    flash_runner: FlashRunner
    serial_baud: int
    usb_vid: str | None
    usb_pid: str | None
    uart: str | None
    qemu_machine: str | None
    emulated: bool
    active_power_mw: float | None
    active_power_source: str | None
    notes: str
    sources: tuple[str, ...]
    path: str = field(compare=False)

    @property
    def arena_bank_bytes(self) -> int:
        return next(b.size_bytes for b in self.sram_banks if b.name == self.arena_bank)

    @property
    def usable_sram_bytes(self) -> int:
        """SRAM left for the tensor arena: the arena's bank, less the reserve when it shares that bank."""
        if len(self.sram_banks) == 1:
            return self.sram_bytes - self.reserved_sram_bytes
        return min(self.arena_bank_bytes, self.sram_bytes - self.reserved_sram_bytes)

    @property
    def usable_flash_bytes(self) -> int:
        return self.flash_bytes - self.reserved_flash_bytes

    @property
    def clock_mhz(self) -> float:
        return self.clock_hz / 1e6

    @property
    def mcpu(self) -> str:
        return CORE_INFO[self.core]["mcpu"]

    @property
    def has_dwt_cyccnt(self) -> bool:
        return CORE_INFO[self.core]["has_dwt_cyccnt"]

    def to_dict(self) -> dict:
        return {
            "id": self.id, "name": self.name, "vendor": self.vendor, "mcu": self.mcu, "core": self.core,
            "fpu": self.fpu, "clock_hz": self.clock_hz, "sram_bytes": self.sram_bytes,
            "flash_bytes": self.flash_bytes, "flash_address": self.flash_address,
            "sram_banks": [vars(b) for b in self.sram_banks], "arena_bank": self.arena_bank,
            "reserved_sram_bytes": self.reserved_sram_bytes, "reserved_flash_bytes": self.reserved_flash_bytes,
            "usable_sram_bytes": self.usable_sram_bytes, "usable_flash_bytes": self.usable_flash_bytes,
            "family": self.family, "flash_runner": {"tool": self.flash_runner.tool,
                                                    "args": list(self.flash_runner.args)},
            "serial": {"baud": self.serial_baud, "usb_vid": self.usb_vid, "usb_pid": self.usb_pid,
                       "uart": self.uart},
            "qemu_machine": self.qemu_machine, "emulated": self.emulated,
            "active_power_mw": self.active_power_mw, "active_power_source": self.active_power_source,
            "notes": self.notes,
            "sources": list(self.sources), "path": self.path,
        }


@lru_cache(maxsize=1)
def _schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def _field_path(error) -> str:
    parts = [str(p) for p in error.absolute_path]
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        parts.append(missing)
    if error.validator == "additionalProperties" and "'" in error.message:
        parts.append(error.message.split("'")[1])
    return ".".join(parts) or "(top level)"


def parse_board(path: str | os.PathLike) -> Board:
    """Load and check one board file; every problem names the file and the field."""
    import jsonschema

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BoardError(f"{path}: board file not found") from None
    except yaml.YAMLError as e:
        raise BoardError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise BoardError(f"{path}: a board file must be a YAML mapping of fields")
    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(raw), key=lambda e: (list(e.absolute_path), e.message))
    if errors:
        e = errors[0]
        field_name = _field_path(e)
        what = {"required": "is missing", "additionalProperties": "is not a known field"}.get(
            e.validator, f"is invalid: {e.message}")
        raise BoardError(f"{path}: field '{field_name}' {what}",
                         hint="see boards/schema.json for the fields, types and allowed values")

    def bad(field_name: str, msg: str):
        raise BoardError(f"{path}: field '{field_name}' {msg}")

    if raw["id"] != path.stem:
        bad("id", f"is '{raw['id']}' but the file is named '{path.name}'; name the file <id>.yaml")
    banks = tuple(SramBank(**b) for b in raw["sram_banks"])
    names = [b.name for b in banks]
    if len(set(names)) != len(names):
        bad("sram_banks", f"has duplicate bank names {names}")
    if sum(b.size_bytes for b in banks) != raw["sram_bytes"]:
        bad("sram_banks", f"sizes add up to {sum(b.size_bytes for b in banks)} bytes, "
                          f"but sram_bytes is {raw['sram_bytes']}")
    if raw["arena_bank"] not in names:
        bad("arena_bank", f"'{raw['arena_bank']}' is not one of the sram_banks {names}")
    if raw["reserved_sram_bytes"] >= raw["sram_bytes"]:
        bad("reserved_sram_bytes", f"({raw['reserved_sram_bytes']}) must be less than sram_bytes "
                                   f"({raw['sram_bytes']})")
    if raw["reserved_flash_bytes"] >= raw["flash_bytes"]:
        bad("reserved_flash_bytes", f"({raw['reserved_flash_bytes']}) must be less than flash_bytes "
                                    f"({raw['flash_bytes']})")
    if raw["core"] == "cortex-m0plus" and raw["fpu"] != "none":
        bad("fpu", f"is '{raw['fpu']}' but a Cortex-M0+ has no FPU")
    emulated = bool(raw.get("emulated", False))
    if raw["flash_runner"]["tool"] == "qemu" and not raw.get("qemu_machine"):
        bad("qemu_machine", "is missing; a board flashed by qemu must name its QEMU machine")
    if emulated != (raw["flash_runner"]["tool"] == "qemu"):
        bad("emulated", "must be true exactly when flash_runner.tool is qemu")
    if ("active_power_mw" in raw) != ("active_power_source" in raw):
        bad("active_power_source" if "active_power_mw" in raw else "active_power_mw",
            "is missing; a power figure needs its source (datasheet and condition), and a source its figure")
    serial = raw["serial"]
    if ("usb_vid" in serial) != ("usb_pid" in serial):
        bad("serial.usb_pid" if "usb_vid" in serial else "serial.usb_vid",
            "is missing; give both usb_vid and usb_pid or neither")
    return Board(
        id=raw["id"], name=raw["name"], vendor=raw["vendor"], mcu=raw["mcu"], core=raw["core"],
        fpu=raw["fpu"], clock_hz=raw["clock_hz"], sram_bytes=raw["sram_bytes"],
        flash_bytes=raw["flash_bytes"], flash_address=raw["flash_address"], sram_banks=banks,
        arena_bank=raw["arena_bank"], reserved_sram_bytes=raw["reserved_sram_bytes"],
        reserved_flash_bytes=raw["reserved_flash_bytes"], family=raw["family"],
        flash_runner=FlashRunner(raw["flash_runner"]["tool"], tuple(raw["flash_runner"]["args"])),
        serial_baud=serial["baud"], usb_vid=serial.get("usb_vid", "").upper() or None,
        usb_pid=serial.get("usb_pid", "").upper() or None, uart=serial.get("uart"),
        qemu_machine=raw.get("qemu_machine"), emulated=emulated,
        active_power_mw=raw.get("active_power_mw"), active_power_source=raw.get("active_power_source"),
        notes=raw.get("notes", ""),
        sources=tuple(raw["sources"]), path=str(path))


def board_dirs(extra: str | os.PathLike | None = None) -> list[Path]:
    dirs = [BUILTIN_BOARDS_DIR]
    env = os.environ.get(BOARDS_ENV, "")
    for d in [*(p for p in env.split(os.pathsep) if p), *([str(extra)] if extra else [])]:
        p = Path(d).expanduser()
        if not p.is_dir():
            raise BoardError(f"boards directory {p} does not exist",
                             hint=f"check --boards-dir or the {BOARDS_ENV} environment variable")
        if p.resolve() not in [x.resolve() for x in dirs]:
            dirs.append(p)
    return dirs


def list_boards(boards_dir: str | os.PathLike | None = None) -> list[Board]:
    """Every board, sorted by id. Any malformed file or duplicate id is an error naming the file."""
    seen: dict[str, Board] = {}
    for d in board_dirs(boards_dir):
        for path in sorted(d.glob("*.yaml")) + sorted(d.glob("*.yml")):
            board = parse_board(path)
            if board.id in seen:
                raise BoardError(f"{path}: field 'id' duplicates board '{board.id}' already defined in "
                                 f"{seen[board.id].path}", hint="give the board a new id (and file name)")
            seen[board.id] = board
    return [seen[k] for k in sorted(seen)]


def load_board(board_id: str, boards_dir: str | os.PathLike | None = None) -> Board:
    boards = {b.id: b for b in list_boards(boards_dir)}
    if board_id not in boards:
        import difflib
        close = difflib.get_close_matches(board_id, list(boards), n=3)
        raise BoardError(f"unknown board '{board_id}'",
                         hint=(f"did you mean {', '.join(close)}? " if close else "")
                         + "`ofa-mcu boards` lists the known boards")
    return boards[board_id]
