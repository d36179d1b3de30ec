"""What the family templates receive from the board/SoC/core files: the UART wiring, the clock set-up and
the memory regions. No chip fact lives here: every address, pin and frequency comes from
boards/socs/<soc>.yaml or the board file (through `Board`); this module only shapes them for the
templates and refuses a combination a template cannot render, with a BoardError naming the file.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..boards import Board
from ..errors import BoardError

# Families built with the Raspberry Pi pico-sdk (CMake): its boot stage (RP2040 boot2 with a CRC, RP2350
# IMAGE_DEF block), crt0, linker script and USB CDC stack are needed to boot and to talk over USB.
PICO_SDK_FAMILIES = {"rp2040", "rp2350"}

# Register names each family template uses from the SoC file's `registers` (per STM32 series: its
# clock sequence differs).
REQUIRED_REGISTERS = {
    ("stm32", "F4"): ("RCC_CR", "RCC_PLLCFGR", "RCC_CFGR", "RCC_APB1ENR", "PWR_CR", "FLASH_ACR"),
    ("stm32", "F7"): ("RCC_CR", "RCC_PLLCFGR", "RCC_CFGR", "RCC_APB1ENR", "PWR_CR", "PWR_CSR", "FLASH_ACR"),
    ("stm32", "H7"): (),
    ("stm32", "L4"): ("RCC_CR", "RCC_CFGR", "RCC_APB1ENR1", "PWR_CR2"),
    ("stm32", "U5"): ("RCC_CR", "RCC_CFGR1"),
    ("nrf52", None): ("CLOCK_BASE",),
    ("apollo3", None): ("PWRCTRL_DEVPWREN", "PWRCTRL_DEVPWRSTATUS", "GPIO_BASE"),
}
# Clock modes each STM32 series template implements.
STM32_CLOCK_MODES = {"F4": "pll", "F7": "pll", "H7": "fixed", "L4": "fixed", "U5": "fixed"}


@dataclass(frozen=True)
class Stm32Uart:
    series: str          # F4, F7, H7, L4, U5
    name: str            # USART3 ...
    base: int
    regs: str            # "v1" (SR/DR: F4) or "v2" (ISR/RDR/TDR: F7, H7, L4, U5)
    lpuart: bool         # BRR = 256 * f / baud
    rcc_bus_reg: int     # address of the RCC enable register for the UART
    rcc_bus_bit: int
    gpio_base: int
    rcc_gpio_reg: int
    rcc_gpio_bit: int
    tx_pin: int
    rx_pin: int
    af: int
    pins_doc: str        # what an engineer reads in the README
    source: str
    clock_hz: int = 0    # the UART kernel clock: its APB bus at the configured core clock


@dataclass(frozen=True)
class UartContext:
    """The host UART of any family, for the templates."""
    name: str
    base: int
    clock_hz: int                            # 0 when the template does not need it
    tx_pin: str
    rx_pin: str
    baud_registers: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class ClockContext:
    mode: str            # fixed | pll | sdk
    source: str          # HSI, HFXO ...
    source_hz: int
    pll_m: int
    pll_n: int
    pll_p: int
    pll_q: int
    flash_wait_states: int
    ppre1: int           # STM32 F4/F7 RCC_CFGR PPRE1/PPRE2 codes for the APB dividers
    ppre2: int


def _soc(board: Board):
    if board.soc is None:
        raise BoardError(f"{board.path}: has no SoC (load boards with pipeline.boards)")
    return board.soc


def stm32_series(board: Board) -> str:
    soc = _soc(board)
    if soc.family != "stm32" or soc.series is None:
        raise BoardError(f"{soc.path}: is not an STM32 SoC with a series")
    return soc.series


def _require_registers(board: Board) -> None:
    soc = _soc(board)
    key = (soc.family, soc.series)
    have = dict(soc.registers)
    for name in REQUIRED_REGISTERS.get(key, ()):
        if name not in have:
            raise BoardError(f"{soc.path}: field 'registers.{name}' is missing; the {soc.family} "
                             f"{soc.series or ''} firmware template uses it".replace("  ", " "))


def _stm32_pin(pin: str, where: str) -> tuple[str, int]:
    if len(pin) < 3 or pin[0] != "P" or not pin[1].isalpha() or not pin[2:].isdigit() or int(pin[2:]) > 15:
        raise BoardError(f"{where}: STM32 pin '{pin}' is not of the form P<port><0-15> (e.g. PD8)")
    return pin[1].upper(), int(pin[2:])


def stm32_uart(board: Board) -> Stm32Uart:
    soc = _soc(board)
    series = stm32_series(board)
    _require_registers(board)
    uart = soc.uart(board.uart or "")
    if uart is None or board.uart_pins is None:
        raise BoardError(f"{board.path}: field 'serial.uart' must name a UART of {soc.path} with its pins")
    tx_port, tx = _stm32_pin(board.uart_pins.tx, board.path)
    rx_port, rx = _stm32_pin(board.uart_pins.rx, board.path)
    if tx_port != rx_port:
        raise BoardError(f"{soc.path}: UART {uart.name} pins {board.uart_pins.tx}/{board.uart_pins.rx} are on two "
                         f"GPIO ports; the template configures one")
    gpio_base, stride, gpio_rcc = soc.gpio
    port = ord(tx_port) - ord("A")
    af = board.uart_pins.af if board.uart_pins.af is not None else 0
    return Stm32Uart(
        series=series, name=uart.name, base=uart.base, regs=uart.registers, lpuart=uart.lpuart,
        rcc_bus_reg=uart.rcc_enable[0], rcc_bus_bit=uart.rcc_enable[1],
        gpio_base=gpio_base + port * stride, rcc_gpio_reg=gpio_rcc, rcc_gpio_bit=port,
        tx_pin=tx, rx_pin=rx, af=af,
        pins_doc=f"{uart.name}: {board.uart_pins.tx} = TX, {board.uart_pins.rx} = RX (AF{af})"
                 + (f", {board.serial_wiring}" if board.serial_wiring else ""),
        source="; ".join(soc.sources + board.sources),
        clock_hz=board.clock.apb_hz(uart.bus, board.clock_hz))


_PPRE = {1: 0, 2: 4, 4: 5, 8: 6, 16: 7}


def clock_context(board: Board) -> ClockContext:
    """The clock set-up the family template renders; it reaches exactly board.clock_hz (checked at load)."""
    soc = _soc(board)
    plan = board.clock
    if soc.family == "stm32" and STM32_CLOCK_MODES[soc.series] != plan.mode:
        raise BoardError(f"{soc.path}: field 'clock.mode' is '{plan.mode}' but the STM32{soc.series} template "
                         f"implements '{STM32_CLOCK_MODES[soc.series]}'")
    div = dict(plan.apb_dividers)
    return ClockContext(mode=plan.mode, source=plan.source, source_hz=plan.source_hz, pll_m=plan.pll_m,
                        pll_n=plan.pll_n, pll_p=plan.pll_p, pll_q=plan.pll_q,
                        flash_wait_states=plan.flash_wait_states,
                        ppre1=_PPRE[div.get("apb1", 1)], ppre2=_PPRE[div.get("apb2", 1)])


def uart_context(board: Board) -> UartContext | None:
    soc = _soc(board)
    _require_registers(board)
    uart = soc.uart(board.uart or "")
    if uart is None:
        return None
    pins = board.uart_pins
    if uart.baud_registers and board.serial_baud not in dict(uart.baud_registers):
        raise BoardError(f"{board.path}: field 'serial.baud' is {board.serial_baud}, which has no BAUDRATE register "
                         f"value in {soc.path} (known: {', '.join(str(b) for b, _ in uart.baud_registers)})")
    return UartContext(name=uart.name, base=uart.base, clock_hz=uart.clock_hz or 0,
                       tx_pin=pins.tx if pins else "", rx_pin=pins.rx if pins else "",
                       baud_registers=uart.baud_registers)


def uart_doc(board: Board) -> str:
    """Pins and wiring of the host serial port, for the README and the board.h comment."""
    soc = _soc(board)
    if board.family == "stm32":
        return stm32_uart(board).pins_doc
    uart = soc.uart(board.uart or "")
    if uart is None:
        return board.serial_wiring
    where = f"{uart.name} at 0x{uart.base:08X}"
    if board.uart_pins:
        where = f"{uart.name} on {board.uart_pins.tx} = TX, {board.uart_pins.rx} = RX"
    return where + (f", {board.serial_wiring}" if board.serial_wiring else "")


def register(board: Board, name: str) -> int:
    return _soc(board).register(name)


def core_clock_hz(board: Board) -> int:
    """The clock the generated firmware configures: the board file's clock_hz (one number for all stages)."""
    return board.clock_hz


def flash_region(board: Board) -> tuple[int, int]:
    """(origin, length) of the flash the application may use: from flash_address to the end of flash."""
    base = _soc(board).flash_address
    skipped = board.flash_address - base
    if skipped < 0 or skipped >= board.flash_bytes:
        raise BoardError(f"{board.path}: field 'flash_address' 0x{board.flash_address:X} is outside the "
                         f"{board.mcu} flash (base 0x{base:X}, {board.flash_bytes} bytes)")
    return board.flash_address, board.flash_bytes - skipped


def ram_region(board: Board) -> tuple[int, int]:
    """(origin, length) of the SRAM bank that holds the arena; .data, .bss and the stack go there too."""
    bank = next(b for b in board.sram_banks if b.name == board.arena_bank)
    return bank.address, bank.size_bytes
