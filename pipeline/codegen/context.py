"""The typed template context: exactly what the templates receive, built from the model, board and report.

Templates see one `FirmwareContext` as `ctx` plus the filters of render.py; nothing else (the Jinja
environment is StrictUndefined, so a misspelt field is an error, not an empty string).
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

from ..boards import Board
from ..contract import InputContract
from ..costs.flash import DEFAULT_BUILD_TYPE
from ..errors import ArtifactError, BoardError
from ..tflite.model_info import ModelInfo, TensorInfo
from .arena import ArenaPlan
from .cstring import make_word
from .families import (PICO_SDK_FAMILIES, ClockContext, Stm32Uart, UartContext, clock_context, core_clock_hz,
                       flash_region, ram_region, stm32_series, stm32_uart, uart_context, uart_doc)
from .ops import OpRegistration


def generator_version() -> str:
    try:
        return f"ofa-mcu {metadata.version('ofa-mcu')}"
    except metadata.PackageNotFoundError:
        return "ofa-mcu (source tree)"


_TYPES = {"int8": ("kTfLiteInt8", "PROTO_DTYPE_INT8", "int8_t"),
          "int16": ("kTfLiteInt16", "PROTO_DTYPE_INT16", "int16_t")}


@dataclass(frozen=True)
class TensorContext:
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int
    bytes: int

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def dims4(self) -> tuple[int, ...]:
        """The shape padded with zeros to the protocol's four dimensions."""
        return tuple(self.shape) + (0,) * (4 - len(self.shape))

    @property
    def tflite_type(self) -> str:
        return _TYPES[self.dtype][0]

    @property
    def proto_dtype(self) -> str:
        return _TYPES[self.dtype][1]

    @property
    def c_type(self) -> str:
        return _TYPES[self.dtype][2]


@dataclass(frozen=True)
class CoreFlags:
    mcpu: str
    fpu: str                 # "none" or the -mfpu value
    float_abi: str           # hard | soft
    tflm_target_arch: str    # TARGET_ARCH of TFLite Micro's cortex_m_generic target
    has_dwt: bool
    arch_flags: str          # the compiler flags, ready for the Makefile
    dwt_unlock: bool = False  # Cortex-M7: unlock DWT_LAR before enabling CYCCNT (core file)
    extra_flags: str = ""     # the core file's gcc_extra_flags: the app and the TFLM library both get them


@dataclass(frozen=True)
class BoardContext:
    id: str
    name: str
    mcu: str
    vendor: str
    core: str
    family: str
    series: str              # STM32 series (F4 ...) or ""
    clock_hz: int            # the clock the firmware configures (board file); every stage uses it
    core_clock_hz: int       # the same number (kept for the templates that name it so)
    max_clock_hz: int        # the SoC's rating, for the docs
    flash_origin: int
    flash_length: int
    ram_origin: int
    ram_length: int
    ram_bank: str
    usable_sram_bytes: int
    usable_flash_bytes: int
    stack_bytes: int
    baud: int
    uart: str
    uart_doc: str            # pins and wiring, for the README
    usb_id: str              # "0483:374B" or ""
    runner_tool: str
    runner_args: tuple[str, ...]
    runner_program: str      # the executable `make flash` runs
    runner_install: str      # how to install it
    runner_needs_port: bool  # the command takes the serial port (PORT=...)
    flash_command: str       # the recipe line, quoted for make and the shell
    qemu_machine: str
    emulated: bool
    pico_sdk: bool
    notes: str
    stm32: Stm32Uart | None
    clock: ClockContext      # how board.c reaches clock_hz (SoC clock tree)
    host_uart: UartContext | None
    regs: dict               # register name -> address, from the SoC file


@dataclass(frozen=True)
class FirmwareContext:
    generator: str           # "ofa-mcu 0.1.0"
    app_name: str            # C identifier-safe
    model_sha256: str
    model_hash_bytes: tuple[int, ...]      # first 16 bytes, for the protocol's HELLO
    model_bytes: int
    model_data_lines: tuple[str, ...]      # "0x1c, 0x00, ..." lines of the array body
    input: TensorContext
    output: TensorContext
    input_lut: tuple[int, ...]
    pixel_scale: float
    pixel_offset: float
    labels: tuple[str, ...]
    num_classes: int
    ops: tuple[OpRegistration, ...]        # distinct ops: the resolver's N is len(ops)
    op_count: int                          # op nodes over all subgraphs (profiler slots)
    op_codes: tuple[int, ...]              # BuiltinOperator of each main-subgraph op, in execution order
    op_names: tuple[str, ...]
    arena: ArenaPlan
    board: BoardContext
    core: CoreFlags
    tflm_commit: str
    report_used: bool
    tflm_build_type: str = DEFAULT_BUILD_TYPE  # the Makefile's default TFLM_BUILD_TYPE: what flash is budgeted for
    data_spec: str = ""                    # the dataset the model was exported with (export report), or ""
    input_kind: str = "image"              # image: uint8 pixels through input_lut; tensor: values as sent
    input_features: tuple[tuple[str, str], ...] = ()  # audio frontend settings from the export report


def _tensor(t: TensorInfo) -> TensorContext:
    return TensorContext(tuple(int(d) for d in t.shape), t.dtype.lower(), float(t.scale), int(t.zero_point),
                         t.nbytes)


def core_flags(board: Board) -> CoreFlags:
    core = board.core_info  # boards/cores/<core>.yaml
    hard = board.fpu != "none"
    fpu = (core.gcc_mfpu or board.fpu) if hard else "none"
    flags = [f"-mcpu={core.mcpu}", "-mthumb"]
    # Cortex-M55: -mfpu=auto keeps the CPU's MVE (Helium) extension that an explicit FPU name would drop;
    # CMSIS-NN picks its MVE kernels from __ARM_FEATURE_MVE. TFLM's make does the same without FPU=.
    fpu = "auto" if core.mve and hard else board.fpu
    if hard:
        flags += [f"-mfpu={fpu}", "-mfloat-abi=hard"]
    else:
        flags += ["-mfloat-abi=soft"]
    flags += core.gcc_extra_flags
    arch = core.tflm_target_arch_hard if hard else core.tflm_target_arch_soft
    return CoreFlags(core.mcpu, fpu, "hard" if hard else "soft", arch, core.dwt_cyccnt, " ".join(flags),
                     dwt_unlock=core.dwt_unlock, extra_flags=" ".join(core.gcc_extra_flags))


# Flash runner -> (program, how to install it).
RUNNERS = {
    "openocd": ("openocd", "Install it: sudo apt-get install openocd"),
    "pyocd": ("pyocd", "Install it: pip install pyocd"),
    "st-flash": ("st-flash", "Install it: sudo apt-get install stlink-tools"),
    "picotool": ("picotool", "Install it: sudo apt-get install picotool (Debian 13, Ubuntu 24.04) or build "
                             "https://github.com/raspberrypi/picotool"),
    "nrfjprog": ("nrfjprog", "Install Nordic's nRF Command Line Tools (nordicsemi.com)"),
    "bossac": ("bossac", "Install it: sudo apt-get install bossa-cli (or use the bossac of the Arduino mbed core)"),
    "ambiq-uart": ("ambiq_bin2board.py", "Put tools/apollo3_scripts of SparkFun's AmbiqSuite SDK on your PATH"),
    "qemu": ("qemu-system-arm", "Install it: sudo apt-get install --no-install-recommends qemu-system-arm"),
}
_PLACEHOLDERS = {"{elf}": "app.elf", "{hex}": "app.hex", "{bin}": "app.bin", "{port}": "$(PORT)"}


def flash_command(board: Board) -> tuple[str, bool]:
    """The runner's command line for the Makefile, and whether it needs PORT."""
    program = RUNNERS[board.flash_runner.tool][0]
    words = [make_word(program)]
    needs_port = False
    for arg in board.flash_runner.args:
        word = make_word(arg)
        for key, value in _PLACEHOLDERS.items():
            needs_port |= key == "{port}" and key in word
            word = word.replace(key, value)
        words.append(word)
    return " ".join(words), needs_port


def board_context(board: Board) -> BoardContext:
    if board.family not in ("stm32", "nrf52", "apollo3", "rp2040", "rp2350", "mps2"):
        raise BoardError(f"{board.path}: family '{board.family}' has no firmware templates")
    flash_origin, flash_length = flash_region(board)
    ram_origin, ram_length = ram_region(board)
    stm = stm32_uart(board) if board.family == "stm32" else None
    # Stack: a quarter of the reserve, at least 4 KB and at most 16 KB (TFLM's deepest call chain with
    # CMSIS-NN kernels stays well under 4 KB; the protocol uses < 1 KB).
    stack = max(4096, min(16384, board.reserved_sram_bytes // 4)) // 8 * 8
    command = flash_command(board)
    return BoardContext(
        id=board.id, name=board.name, mcu=board.mcu, vendor=board.vendor, core=board.core,
        family=board.family, series=stm32_series(board) if board.family == "stm32" else "",
        clock_hz=board.clock_hz, core_clock_hz=core_clock_hz(board), max_clock_hz=board.max_clock_hz,
        flash_origin=flash_origin,
        flash_length=flash_length, ram_origin=ram_origin, ram_length=ram_length, ram_bank=board.arena_bank,
        usable_sram_bytes=board.usable_sram_bytes, usable_flash_bytes=board.usable_flash_bytes,
        stack_bytes=stack, baud=board.serial_baud, uart=board.uart or "", uart_doc=uart_doc(board),
        usb_id=f"{board.usb_vid}:{board.usb_pid}" if board.usb_vid else "",
        runner_tool=board.flash_runner.tool, runner_args=tuple(board.flash_runner.args),
        runner_program=RUNNERS[board.flash_runner.tool][0], runner_install=RUNNERS[board.flash_runner.tool][1],
        runner_needs_port=command[1], flash_command=command[0],
        qemu_machine=board.qemu_machine or "", emulated=board.emulated,
        pico_sdk=board.family in PICO_SDK_FAMILIES, notes=board.notes, stm32=stm,
        clock=clock_context(board), host_uart=uart_context(board), regs=dict(board.soc.registers))


def model_data_lines(data: bytes, per_line: int = 12) -> tuple[str, ...]:
    return tuple(", ".join(f"0x{b:02x}" for b in data[i:i + per_line]) + ","
                 for i in range(0, len(data), per_line))


SERVED_DTYPES = ("INT8", "INT16")


def check_served_tensors(model: ModelInfo, where: str) -> None:
    """The firmware serves one int8/int16 input of rank <= 4 (the protocol's HELLO) and an int8/int16 output."""
    for role, t in (("input", model.input), ("output", model.output)):
        if t.dtype not in SERVED_DTYPES:
            raise ArtifactError(f"{where}: the model {role} is {t.dtype.lower()} {tuple(t.shape)}; the firmware "
                                f"serves int8 or int16 inputs and outputs",
                                hint="convert with full-integer quantization (int8, or 16x8 for int16 "
                                     "activations) and integer input/output types")
    if not 1 <= len(model.input.shape) <= 4:
        raise ArtifactError(f"{where}: the model input has rank {len(model.input.shape)}; the protocol carries "
                            f"1 to 4 dimensions", hint="reshape the input to at most 4 dimensions before export")


def check_contract(contract: InputContract, model: ModelInfo) -> None:
    """The export's input contract must describe this model's input tensor."""
    shape = model.input.shape
    if len(shape) != 4 or tuple(shape[1:]) != (contract.height, contract.width, contract.channels):
        raise ArtifactError(f"the input contract is for {contract.height}x{contract.width}x{contract.channels} "
                            f"but the model input is {tuple(shape)}",
                            hint="the export report belongs to another model: pass the matching --report")
    if model.input.dtype != "INT8":
        raise ArtifactError(f"the model input is {model.input.dtype.lower()}; the firmware expects a full-int8 model",
                            hint="export with int8 input and output (ofa-mcu export does)")
    if abs(contract.input_scale - model.input.scale) > 1e-6 * max(1.0, abs(model.input.scale)) or \
            contract.input_zero_point != model.input.zero_point:
        raise ArtifactError(
            f"the input contract's quantization (scale {contract.input_scale}, zero point "
            f"{contract.input_zero_point}) differs from the model's ({model.input.scale}, {model.input.zero_point})",
            hint="the export report belongs to another model: pass the matching --report")
