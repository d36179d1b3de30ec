"""Board catalog in three layers, as Zephyr does: core -> SoC -> board, each a YAML file checked against
its JSON schema at load.

* `boards/cores/<core>.yaml`: what an Arm Cortex-M core can do (DSP, FPU options, MVE, DWT cycle counter,
  which CMSIS-NN kernels apply, compiler and TFLite Micro target names).
* `boards/socs/<soc>.yaml`: one chip: its core and FPU, memory banks, flash base, clock tree limits, the UART
  peripherals (registers, RCC bits, pin options) and the register addresses the firmware templates use.
* `boards/<board>.yaml`: one board: which SoC, the clock its firmware configures, which UART and pins go to
  the USB serial, runner, VID:PID, reserves, power.

`Board` merges the three; codegen and the cost models read facts only through it. Boards (and SoCs and
cores, in `socs/` and `cores/` subfolders) come from the package's `boards/` folder plus any folder given
with `--boards-dir` or the OFA_MCU_BOARDS_DIR environment variable (os.pathsep-separated). A user file
with the id of a built-in one is an error, not a silent override.

Every file is read defensively: a regular file, at most MAX_FILE_BYTES, UTF-8, YAML without aliases (an
alias bomb is refused, not expanded). Any problem is a BoardError naming the file and the field.
"""
from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from .errors import BoardError
from .resources import resource_dir

BOARDS_ENV = "OFA_MCU_BOARDS_DIR"
BUILTIN_BOARDS_DIR = resource_dir("boards")
SCHEMA_PATH = BUILTIN_BOARDS_DIR / "schema.json"
SOCS_SUBDIR = "socs"
CORES_SUBDIR = "cores"
MAX_FILE_BYTES = 256 * 1024        # the largest shipped file is ~4 KB
ADDRESS_SPACE = 1 << 32            # Cortex-M: 32-bit addresses


# ---------------------------------------------------------------------------------------- the layers

@dataclass(frozen=True)
class Core:
    id: str
    name: str
    architecture: str
    mcpu: str
    dsp: bool
    mve: bool
    fpu_options: tuple[str, ...]
    dwt_cyccnt: bool
    dwt_unlock: bool                 # Cortex-M7: DWT_LAR must be unlocked before CYCCNT counts
    cmsis_nn_kernels: str            # none | dsp | mve
    tflm_target_arch_soft: str
    tflm_target_arch_hard: str | None
    sources: tuple[str, ...]
    path: str = field(compare=False)
    gcc_mfpu: str | None = None      # -mfpu when the FPU is on, if not the FPU's name
    gcc_extra_flags: tuple[str, ...] = ()  # for the app and the TFLM library (toolchain work-arounds)


@dataclass(frozen=True)
class SramBank:
    name: str
    address: int
    size_bytes: int


@dataclass(frozen=True)
class PllLimits:
    m: int
    p: int
    q: int
    n_min: int
    n_max: int
    vco_min_hz: int
    vco_max_hz: int


@dataclass(frozen=True)
class UartPins:
    tx: str
    rx: str
    af: int | None = None


@dataclass(frozen=True)
class SocUart:
    name: str
    base: int
    registers: str | None            # STM32: v1 (SR/DR) or v2 (ISR/RDR/TDR)
    lpuart: bool
    bus: str | None                  # STM32: the APB bus that clocks it
    clock_hz: int | None             # a fixed UART clock (Apollo3)
    rcc_enable: tuple[int, int] | None   # (register address, bit)
    pins: tuple[UartPins, ...] | str | None   # options, "any" (nRF PSEL) or None (no pins to set)
    baud_registers: tuple[tuple[int, int], ...]   # (baud, register value), nRF


@dataclass(frozen=True)
class Soc:
    id: str
    name: str
    vendor: str
    core: str
    fpu: str
    family: str
    series: str | None
    emulated: bool
    qemu_machine: str | None
    max_clock_hz: int
    flash_address: int
    flash_bytes: int | None          # None: external flash, the board states its size
    sram_banks: tuple[SramBank, ...]
    clock_mode: str                  # fixed | pll | sdk
    clock_source: str
    clock_source_hz: int
    pll: PllLimits | None
    flash_wait_states: int | None
    apb_dividers: tuple[tuple[str, int], ...]
    apb_max_hz: tuple[tuple[str, int], ...]
    registers: tuple[tuple[str, int], ...]
    gpio: tuple[int, int, int] | None   # (base, stride, RCC enable register)
    uarts: tuple[SocUart, ...]
    sources: tuple[str, ...]
    path: str = field(compare=False)

    def register(self, name: str) -> int:
        return dict(self.registers)[name]

    def uart(self, name: str) -> SocUart | None:
        return next((u for u in self.uarts if u.name == name), None)


@dataclass(frozen=True)
class ClockPlan:
    """How the firmware reaches Board.clock_hz (checked at load, so templates only render it)."""
    mode: str                        # fixed | pll | sdk
    source: str
    source_hz: int
    pll_m: int = 0
    pll_n: int = 0
    pll_p: int = 0
    pll_q: int = 0
    flash_wait_states: int = 0
    apb_dividers: tuple[tuple[str, int], ...] = ()

    def apb_hz(self, bus: str, core_hz: int) -> int:
        return core_hz // dict(self.apb_dividers).get(bus, 1)


@dataclass(frozen=True)
class FlashRunner:
    tool: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class Board:
    id: str
    name: str
    vendor: str
    mcu: str                         # the SoC's name
    core: str
    fpu: str
    clock_hz: int                    # the clock the firmware configures; search, energy and profile use it
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
    soc: Soc | None = field(default=None, compare=False)
    core_info: Core | None = field(default=None, compare=False)
    clock: ClockPlan | None = field(default=None, compare=False)
    uart_pins: UartPins | None = field(default=None, compare=False)
    serial_wiring: str = field(default="", compare=False)

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
    def max_clock_hz(self) -> int:
        """The SoC's rating; the firmware runs at clock_hz, which may be lower (see the SoC file's clock)."""
        return self.soc.max_clock_hz if self.soc else self.clock_hz

    @property
    def mcpu(self) -> str:
        return self.core_info.mcpu if self.core_info else core_info(self.core).mcpu

    @property
    def has_dwt_cyccnt(self) -> bool:
        return (self.core_info or core_info(self.core)).dwt_cyccnt

    @property
    def cmsis_nn_kernels(self) -> str:
        return (self.core_info or core_info(self.core)).cmsis_nn_kernels

    def to_dict(self) -> dict:
        return {
            "id": self.id, "name": self.name, "vendor": self.vendor, "mcu": self.mcu,
            "soc": self.soc.id if self.soc else None, "core": self.core,
            "fpu": self.fpu, "clock_hz": self.clock_hz, "max_clock_hz": self.max_clock_hz,
            "clock_source": self.clock.source if self.clock else None,
            "sram_bytes": self.sram_bytes,
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


# ------------------------------------------------------------------------------------ safe reading

class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases (`*name`, and so `<<` merges): an alias bomb cannot expand."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.events.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(None, None, "YAML aliases (*name) are not allowed in board files",
                                              mark)
        return super().compose_node(parent, index)


def _read_yaml(path: Path, what: str) -> dict:
    """A YAML mapping from a regular, small, UTF-8 file; anything else is a BoardError naming the file."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise BoardError(f"{path}: {what} file not found") from None
    except OSError as e:
        raise BoardError(f"{path}: cannot read the {what} file ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise BoardError(f"{path}: is not a regular file (a {what} file must be a .yaml file, not a directory "
                         f"or device)", hint="remove or rename it")
    if st.st_size > MAX_FILE_BYTES:
        raise BoardError(f"{path}: {what} file is {st.st_size} bytes; at most {MAX_FILE_BYTES} are accepted",
                         hint="a board, SoC or core file is a few KB of YAML")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BoardError(f"{path}: {what} file is not UTF-8 text (byte {e.start})",
                         hint="save it as UTF-8") from None
    except OSError as e:
        raise BoardError(f"{path}: cannot read the {what} file ({e.strerror})") from None
    try:
        raw = yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        raise BoardError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    except RecursionError:
        raise BoardError(f"{path}: YAML nested too deeply") from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise BoardError(f"{path}: not a usable YAML value ({_short(str(e), 100)})") from None
    if not isinstance(raw, dict):
        raise BoardError(f"{path}: a {what} file must be a YAML mapping of fields")
    _check_keys(raw, path, "")
    return raw


def _check_keys(node, path: Path, where: str) -> None:
    """Every mapping key is a string: `1: x` or `true: x` would slip past the schema's name patterns."""
    if isinstance(node, dict):
        for k, v in node.items():
            if not isinstance(k, str):
                raise BoardError(f"{path}: field '{where + str(k)}' is named by a {type(k).__name__} value, not "
                                 f"text", hint="quote the name or fix the indentation")
            _check_keys(v, path, f"{where}{k}.")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _check_keys(v, path, f"{where}{i}.")


@lru_cache(maxsize=8)
def _schema(path: str) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _field_path(error) -> str:
    parts = [str(p) for p in error.absolute_path]
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        parts.append(missing)
    if error.validator == "additionalProperties" and "'" in error.message:
        parts.append(error.message.split("'")[1])
    return ".".join(parts) or "(top level)"


def _validate(raw: dict, schema_path: Path, path: Path) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(_schema(str(schema_path)))
    errors = sorted(validator.iter_errors(raw), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    if errors:
        e = errors[0]
        what = {"required": "is missing", "additionalProperties": "is not a known field"}.get(
            e.validator, f"is invalid: {_short(e.message)}")
        raise BoardError(f"{path}: field '{_field_path(e)}' {what}",
                         hint=f"see {_shown(schema_path)} for the fields, types and allowed values")


def _shown(schema_path: Path) -> str:
    try:
        return str(schema_path.relative_to(BUILTIN_BOARDS_DIR.parent))
    except ValueError:
        return str(schema_path)


def _short(msg: str, limit: int = 160) -> str:
    msg = " ".join(msg.split())
    return msg if len(msg) <= limit else msg[:limit] + "..."


def _cached_key(path: Path) -> tuple[str, int, int]:
    try:
        st = path.stat()
        return str(path), st.st_mtime_ns, st.st_size
    except OSError:
        return str(path), 0, -1


# ------------------------------------------------------------------------------------------- cores

def parse_core(path: str | os.PathLike) -> Core:
    path = Path(path)
    return _parse_core_cached(*_cached_key(path))


@lru_cache(maxsize=64)
def _parse_core_cached(path_str: str, _mtime: int, _size: int) -> Core:
    path = Path(path_str)
    raw = _read_yaml(path, "core")
    _validate(raw, BUILTIN_BOARDS_DIR / CORES_SUBDIR / "schema.json", path)
    if raw["id"] != path.stem:
        raise BoardError(f"{path}: field 'id' is '{raw['id']}' but the file is named '{path.name}'")
    arch = raw["tflm_target_arch"]
    if any(f != "none" for f in raw["fpu_options"]) and "hard" not in arch:
        raise BoardError(f"{path}: field 'tflm_target_arch.hard' is missing; the core has an FPU option")
    return Core(id=raw["id"], name=raw["name"], architecture=raw["architecture"], mcpu=raw["mcpu"],
                dsp=raw["dsp"], mve=raw["mve"], fpu_options=tuple(raw["fpu_options"]),
                dwt_cyccnt=raw["dwt_cyccnt"], dwt_unlock=raw["dwt_unlock"],
                cmsis_nn_kernels=raw["cmsis_nn_kernels"], tflm_target_arch_soft=arch["soft"],
                tflm_target_arch_hard=arch.get("hard"), sources=tuple(raw["sources"]), path=str(path),
                gcc_mfpu=raw.get("gcc_mfpu"), gcc_extra_flags=tuple(raw.get("gcc_extra_flags", ())))


def core_info(core_id: str, boards_dir: str | os.PathLike | None = None) -> Core:
    """The facts of one core (boards/cores/<id>.yaml)."""
    cores = _layer(CORES_SUBDIR, parse_core, boards_dir)
    if core_id not in cores:
        raise BoardError(f"unknown core '{core_id}'", hint=f"known cores: {', '.join(sorted(cores))}")
    return cores[core_id]


@lru_cache(maxsize=32)
def cmsis_nn_kernels(core_id: str) -> str:
    """Which CMSIS-NN code path a core runs ("none", "dsp" or "mve"); cached for the cost models' hot loops."""
    return core_info(core_id).cmsis_nn_kernels


# -------------------------------------------------------------------------------------------- SoCs

def parse_soc(path: str | os.PathLike) -> Soc:
    path = Path(path)
    return _parse_soc_cached(*_cached_key(path))


@lru_cache(maxsize=128)
def _parse_soc_cached(path_str: str, _mtime: int, _size: int) -> Soc:
    path = Path(path_str)
    raw = _read_yaml(path, "SoC")
    _validate(raw, BUILTIN_BOARDS_DIR / SOCS_SUBDIR / "schema.json", path)

    def bad(field_name: str, msg: str):
        raise BoardError(f"{path}: field '{field_name}' {msg}")

    if raw["id"] != path.stem:
        bad("id", f"is '{raw['id']}' but the file is named '{path.name}'; name the file <id>.yaml")
    banks = tuple(SramBank(**b) for b in raw["sram_banks"])
    names = [b.name for b in banks]
    if len(set(names)) != len(names):
        bad("sram_banks", f"has duplicate bank names {names}")
    for i, b in enumerate(banks):
        if b.address + b.size_bytes > ADDRESS_SPACE:
            bad(f"sram_banks.{i}", f"({b.name}) ends at 0x{b.address + b.size_bytes:X}, beyond the 32-bit "
                                   f"address space of a Cortex-M")
    flash = raw["flash"]
    external = bool(flash.get("external", False))
    if external == ("size_bytes" in flash):
        bad("flash", "needs size_bytes for on-chip flash, and none when external is true (the board states it)")
    if not external and flash["address"] + flash["size_bytes"] > ADDRESS_SPACE:
        bad("flash.size_bytes", "runs beyond the 32-bit address space of a Cortex-M")
    emulated = bool(raw.get("emulated", False))
    if emulated != bool(raw.get("qemu_machine")):
        bad("qemu_machine", "must be given exactly when emulated is true")
    if (raw["family"] == "stm32") != ("series" in raw):
        bad("series", "is required for an stm32 SoC, and only there")
    clock = raw["clock"]
    mode = clock["mode"]
    if (mode == "pll") != ("pll" in clock):
        bad("clock.pll", "is required when clock.mode is pll, and only then")
    if mode == "pll" and "flash_wait_states" not in clock:
        bad("clock.flash_wait_states", "is missing; the PLL set-up programs the flash wait states")
    if mode == "fixed" and clock["source_hz"] > raw["max_clock_hz"]:
        bad("clock.source_hz", f"({clock['source_hz']}) exceeds max_clock_hz ({raw['max_clock_hz']})")
    pll = PllLimits(**clock["pll"]) if "pll" in clock else None
    uarts = []
    for name, u in raw["uarts"].items():
        pins = u.get("pins")
        if isinstance(pins, list):
            pins = tuple(UartPins(p["tx"], p["rx"], p.get("af")) for p in pins)
        if raw["family"] == "stm32":
            for key in ("registers", "bus", "rcc_enable", "pins"):
                if key not in u:
                    bad(f"uarts.{name}.{key}", "is missing; an STM32 UART needs registers, bus, rcc_enable and pins")
            if "gpio" not in raw:
                bad("gpio", "is missing; an STM32 UART's pins need the GPIO port base and RCC enable register")
            if u["bus"] not in clock.get("apb_dividers", {}):
                bad(f"uarts.{name}.bus", f"'{u['bus']}' has no divider in clock.apb_dividers")
        rcc = u.get("rcc_enable")
        uarts.append(SocUart(
            name=name, base=u["base"], registers=u.get("registers"), lpuart=bool(u.get("lpuart", False)),
            bus=u.get("bus"), clock_hz=u.get("clock_hz"),
            rcc_enable=(rcc["register"], rcc["bit"]) if rcc else None, pins=pins,
            baud_registers=tuple((b["baud"], b["value"]) for b in u.get("baud_registers", []))))
    gpio = raw.get("gpio")
    return Soc(
        id=raw["id"], name=raw["name"], vendor=raw["vendor"], core=raw["core"], fpu=raw["fpu"],
        family=raw["family"], series=raw.get("series"), emulated=emulated, qemu_machine=raw.get("qemu_machine"),
        max_clock_hz=raw["max_clock_hz"], flash_address=flash["address"], flash_bytes=flash.get("size_bytes"),
        sram_banks=banks, clock_mode=mode, clock_source=clock["source"], clock_source_hz=clock["source_hz"],
        pll=pll, flash_wait_states=clock.get("flash_wait_states"),
        apb_dividers=tuple(sorted(clock.get("apb_dividers", {}).items())),
        apb_max_hz=tuple(sorted(clock.get("apb_max_hz", {}).items())),
        registers=tuple(sorted(raw["registers"].items())),
        gpio=(gpio["base"], gpio["stride_bytes"], gpio["rcc_enable_register"]) if gpio else None,
        uarts=tuple(uarts), sources=tuple(raw["sources"]), path=str(path))


def soc_info(soc_id: str, boards_dir: str | os.PathLike | None = None) -> Soc:
    socs = _layer(SOCS_SUBDIR, parse_soc, boards_dir)
    if soc_id not in socs:
        raise BoardError(f"unknown SoC '{soc_id}'", hint=f"known SoCs: {', '.join(sorted(socs))}")
    return socs[soc_id]


# ------------------------------------------------------------------------------------------- clock

def clock_plan(soc: Soc, clock_hz: int, where: str) -> ClockPlan:
    """How the firmware reaches `clock_hz` on `soc`, or a BoardError saying why it cannot."""
    def bad(msg: str):
        raise BoardError(f"{where}: field 'clock_hz' {msg}",
                         hint="state the clock the generated firmware really configures (see the SoC file's clock)")

    if clock_hz > soc.max_clock_hz:
        bad(f"({clock_hz} Hz) exceeds the {soc.name} maximum of {soc.max_clock_hz} Hz")
    base = dict(mode=soc.clock_mode, source=soc.clock_source, source_hz=soc.clock_source_hz,
                apb_dividers=soc.apb_dividers)
    if soc.clock_mode == "fixed":
        if clock_hz != soc.clock_source_hz:
            bad(f"is {clock_hz} Hz, but the firmware for {soc.name} runs at the {soc.clock_source_hz} Hz "
                f"{soc.clock_source} ({soc.path}: clock.mode fixed)")
        plan = ClockPlan(**base)
    elif soc.clock_mode == "sdk":
        if clock_hz % 1000:
            bad(f"({clock_hz} Hz) must be a whole number of kHz for the SDK's set_sys_clock_khz()")
        plan = ClockPlan(**base)
    else:
        pll = soc.pll
        n, rem = divmod(clock_hz * pll.p * pll.m, soc.clock_source_hz)
        vco = soc.clock_source_hz // pll.m * n
        if rem or not pll.n_min <= n <= pll.n_max:
            bad(f"({clock_hz} Hz) is not {soc.clock_source} {soc.clock_source_hz} Hz / {pll.m} * N / {pll.p} "
                f"for an integer N in [{pll.n_min}, {pll.n_max}]")
        if not pll.vco_min_hz <= vco <= pll.vco_max_hz:
            bad(f"({clock_hz} Hz) needs a PLL VCO of {vco} Hz, outside [{pll.vco_min_hz}, {pll.vco_max_hz}]")
        plan = ClockPlan(**base, pll_m=pll.m, pll_n=n, pll_p=pll.p, pll_q=pll.q,
                         flash_wait_states=soc.flash_wait_states or 0)
    for bus, limit in soc.apb_max_hz:
        if plan.apb_hz(bus, clock_hz) > limit:
            bad(f"({clock_hz} Hz) gives {bus.upper()} {plan.apb_hz(bus, clock_hz)} Hz, above its {limit} Hz limit")
    return plan


# ------------------------------------------------------------------------------------------ boards

def parse_board(path: str | os.PathLike, boards_dir: str | os.PathLike | None = None) -> Board:
    """Load and check one board file against its SoC and core; every problem names the file and the field."""
    path = Path(path)
    raw = _read_yaml(path, "board")
    _validate(raw, SCHEMA_PATH, path)

    def bad(field_name: str, msg: str, hint: str | None = None):
        raise BoardError(f"{path}: field '{field_name}' {msg}", hint=hint)

    if raw["id"] != path.stem:
        bad("id", f"is '{raw['id']}' but the file is named '{path.name}'; name the file <id>.yaml")
    extra = [d for d in ([boards_dir] if boards_dir else [])]
    extra += [str(path.parent)] if path.parent.resolve() != BUILTIN_BOARDS_DIR.resolve() else []
    socs = _layer(SOCS_SUBDIR, parse_soc, *extra)
    if raw["soc"] not in socs:
        bad("soc", f"'{raw['soc']}' is not a known SoC", hint=f"known SoCs: {', '.join(sorted(socs))}; add "
            f"boards/socs/{raw['soc']}.yaml (or a socs/ folder next to your board files)")
    soc = socs[raw["soc"]]
    cores = _layer(CORES_SUBDIR, parse_core, *extra)
    if soc.core not in cores:
        raise BoardError(f"{soc.path}: field 'core' '{soc.core}' has no core file",
                         hint=f"known cores: {', '.join(sorted(cores))}")
    core = cores[soc.core]
    if soc.fpu not in core.fpu_options:
        raise BoardError(f"{soc.path}: field 'fpu' is '{soc.fpu}' but a {core.name} offers {list(core.fpu_options)}")

    # Memory: the SoC's map, narrowed by the board (external flash size, a budget, a bootloader's share).
    if soc.flash_bytes is None:
        if "flash_bytes" not in raw:
            bad("flash_bytes", f"is missing; the {soc.name} has external flash, so the board states its size")
        flash_bytes = raw["flash_bytes"]
    else:
        if "flash_bytes" in raw:
            bad("flash_bytes", f"is given, but the {soc.name} flash size comes from {soc.path}; "
                               "use budget.flash_bytes to use less")
        flash_bytes = soc.flash_bytes
    if soc.flash_address + flash_bytes > ADDRESS_SPACE:
        bad("flash_bytes", "runs beyond the 32-bit address space of a Cortex-M")
    banks = soc.sram_banks
    arena_bank = raw.get("arena_bank")
    if arena_bank is None:
        if len(banks) > 1:
            bad("arena_bank", f"is missing; the {soc.name} has several SRAM banks {[b.name for b in banks]}")
        arena_bank = banks[0].name
    if arena_bank not in [b.name for b in banks]:
        bad("arena_bank", f"'{arena_bank}' is not one of the sram_banks {[b.name for b in banks]} of {soc.path}")
    budget = raw.get("budget", {})
    if "flash_bytes" in budget:
        if budget["flash_bytes"] > flash_bytes:
            bad("budget.flash_bytes", f"({budget['flash_bytes']}) exceeds the flash ({flash_bytes})")
        flash_bytes = budget["flash_bytes"]
    if "sram_bytes" in budget:
        bank = next(b for b in banks if b.name == arena_bank)
        if budget["sram_bytes"] > bank.size_bytes:
            bad("budget.sram_bytes", f"({budget['sram_bytes']}) exceeds bank {bank.name} ({bank.size_bytes})")
        banks = (SramBank(bank.name, bank.address, budget["sram_bytes"]),)
    sram_bytes = sum(b.size_bytes for b in banks)
    flash_address = raw.get("flash_address", soc.flash_address)
    if not soc.flash_address <= flash_address < soc.flash_address + flash_bytes:
        bad("flash_address", f"0x{flash_address:X} is outside the {soc.name} flash (base 0x{soc.flash_address:X}, "
                             f"{flash_bytes} bytes)")
    if raw["reserved_sram_bytes"] >= sram_bytes:
        bad("reserved_sram_bytes", f"({raw['reserved_sram_bytes']}) must be less than sram_bytes ({sram_bytes})")
    if raw["reserved_flash_bytes"] >= flash_bytes:
        bad("reserved_flash_bytes", f"({raw['reserved_flash_bytes']}) must be less than flash_bytes ({flash_bytes})")

    clock = clock_plan(soc, raw["clock_hz"], str(path))

    if soc.emulated != (raw["flash_runner"]["tool"] == "qemu"):
        bad("flash_runner.tool", f"must be qemu exactly when the SoC is emulated ({soc.path})")

    # Serial: the SoC's UART the board wires to its host port, and which pins.
    serial = raw["serial"]
    if ("usb_vid" in serial) != ("usb_pid" in serial):
        bad("serial.usb_pid" if "usb_vid" in serial else "serial.usb_vid",
            "is missing; give both usb_vid and usb_pid or neither")
    uart_name = serial.get("uart")
    pins = None
    if uart_name is None:
        if soc.uarts:
            bad("serial.uart", f"is missing; name the {soc.name} UART wired to the host "
                               f"({', '.join(u.name for u in soc.uarts)})")
    else:
        uart = soc.uart(uart_name)
        if uart is None:
            bad("serial.uart", f"'{uart_name}' is not a UART of {soc.path} "
                               f"(known: {', '.join(u.name for u in soc.uarts) or 'none'})",
                hint="add the UART (base, registers, pins) to the SoC file")
        tx, rx = serial.get("tx_pin"), serial.get("rx_pin")
        if uart.pins is None:
            if tx or rx:
                bad("serial.tx_pin", f"is given, but {uart_name} of {soc.name} has no pins to set")
        else:
            if not (tx and rx):
                bad("serial.tx_pin" if not tx else "serial.rx_pin", f"is missing; {uart_name} needs both pins")
            if uart.pins == "any":
                pins = UartPins(tx, rx)
            else:
                pins = next((p for p in uart.pins if (p.tx, p.rx) == (tx, rx)), None)
                if pins is None:
                    bad("serial.tx_pin", f"{tx}/{rx} is not a pin option of {uart_name} in {soc.path} "
                                         f"({', '.join(f'{p.tx}/{p.rx}' for p in uart.pins)})")
    power = raw.get("power")
    active_mw = round(power["run_ua_per_mhz"] * raw["clock_hz"] / 1e6 * power["supply_v"] / 1e3, 2) if power else None
    return Board(
        id=raw["id"], name=raw["name"], vendor=raw["vendor"], mcu=soc.name, core=soc.core,
        fpu=soc.fpu, clock_hz=raw["clock_hz"], sram_bytes=sram_bytes,
        flash_bytes=flash_bytes, flash_address=flash_address, sram_banks=banks,
        arena_bank=arena_bank, reserved_sram_bytes=raw["reserved_sram_bytes"],
        reserved_flash_bytes=raw["reserved_flash_bytes"], family=soc.family,
        flash_runner=FlashRunner(raw["flash_runner"]["tool"], tuple(raw["flash_runner"]["args"])),
        serial_baud=serial["baud"], usb_vid=serial.get("usb_vid", "").upper() or None,
        usb_pid=serial.get("usb_pid", "").upper() or None, uart=uart_name,
        qemu_machine=soc.qemu_machine, emulated=soc.emulated,
        active_power_mw=active_mw, active_power_source=power["source"] if power else None,
        notes=raw.get("notes", ""),
        sources=tuple(raw["sources"]), path=str(path),
        soc=soc, core_info=core, clock=clock, uart_pins=pins, serial_wiring=serial.get("wiring", ""))


# ------------------------------------------------------------------------------------------ folders

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


def _yaml_files(d: Path) -> list[Path]:
    return sorted(d.glob("*.yaml")) + sorted(d.glob("*.yml"))


def _layer(subdir: str, parse, *extra: str | os.PathLike | None) -> dict[str, Any]:
    """Every core or SoC file of every boards folder, by id; a duplicate id is an error naming both files."""
    dirs = board_dirs(None)
    for e in extra:
        for d in board_dirs(e):
            if d.resolve() not in [x.resolve() for x in dirs]:
                dirs.append(d)
    seen: dict[str, Any] = {}
    for d in dirs:
        sub = d / subdir
        if not sub.is_dir():
            continue
        for path in _yaml_files(sub):
            item = parse(path)
            if item.id in seen and Path(seen[item.id].path).resolve() != path.resolve():
                raise BoardError(f"{path}: field 'id' duplicates '{item.id}' already defined in "
                                 f"{seen[item.id].path}", hint="give it a new id (and file name)")
            seen[item.id] = item
    return seen


def list_boards(boards_dir: str | os.PathLike | None = None) -> list[Board]:
    """Every board, sorted by id. Any malformed file or duplicate id is an error naming the file."""
    seen: dict[str, Board] = {}
    for d in board_dirs(boards_dir):
        for path in _yaml_files(d):
            board = parse_board(path, boards_dir)
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
