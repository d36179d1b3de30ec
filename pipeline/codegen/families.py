"""Per-family facts the board files do not carry: where flash starts on the chip, how the firmware is
built, and for each UART the registers and pins the board wires to its USB serial port.

Board facts (addresses, sizes, clock, UART instance, runner) come from boards/*.yaml; this table only adds
chip-level constants from the reference manuals, each with its source. An unknown combination is a
BoardError naming it, never a silent default.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..boards import Board
from ..errors import BoardError

# Start of on-chip (or XIP) flash per family: a board's flash_address above it is a bootloader's share.
FLASH_BASE = {"stm32": 0x08000000, "nrf52": 0x00000000, "apollo3": 0x00000000, "rp2040": 0x10000000,
              "rp2350": 0x10000000, "mps2": 0x00000000}

# Families built with the Raspberry Pi pico-sdk (CMake): its boot stage (RP2040 boot2 with a CRC, RP2350
# IMAGE_DEF block), crt0, linker script and USB CDC stack are needed to boot and to talk over USB.
PICO_SDK_FAMILIES = {"rp2040", "rp2350"}


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


# (series, UART) -> wiring of the ST-LINK virtual COM port on ST's Nucleo-144 and Discovery boards.
_STM32_UARTS = {
    ("F4", "USART3"): Stm32Uart("F4", "USART3", 0x40004800, "v1", False, 0x40023840, 18, 0x40020C00,
                                0x40023830, 3, 8, 9, 7, "USART3: PD8 = TX, PD9 = RX (AF7), ST-LINK VCP",
                                "RM0402 (STM32F412) memory map and RCC; UM1974 Nucleo-144 VCP on PD8/PD9"),
    ("F7", "USART3"): Stm32Uart("F7", "USART3", 0x40004800, "v2", False, 0x40023840, 18, 0x40020C00,
                                0x40023830, 3, 8, 9, 7, "USART3: PD8 = TX, PD9 = RX (AF7), ST-LINK VCP",
                                "RM0385 (STM32F75x) memory map and RCC; UM1974 Nucleo-144 VCP on PD8/PD9"),
    ("F7", "USART1"): Stm32Uart("F7", "USART1", 0x40011000, "v2", False, 0x40023844, 4, 0x40020000,
                                0x40023830, 0, 9, 10, 7, "USART1: PA9 = TX, PA10 = RX (AF7), ST-LINK VCP",
                                "RM0410 (STM32F76x) memory map and RCC; UM2033 32F769IDISCOVERY VCP on PA9/PA10"),
    ("H7", "USART3"): Stm32Uart("H7", "USART3", 0x40004800, "v2", False, 0x580244E8, 18, 0x58020C00,
                                0x580244E0, 3, 8, 9, 7, "USART3: PD8 = TX, PD9 = RX (AF7), ST-LINK VCP",
                                "RM0433 (STM32H743) memory map and RCC; UM2407 Nucleo-144 VCP on PD8/PD9"),
    ("L4", "LPUART1"): Stm32Uart("L4", "LPUART1", 0x40008000, "v2", True, 0x4002105C, 0, 0x48001800,
                                 0x4002104C, 6, 7, 8, 8, "LPUART1: PG7 = TX, PG8 = RX (AF8), ST-LINK VCP",
                                 "RM0432 (STM32L4+) memory map and RCC; UM2179 Nucleo-144 VCP on PG7/PG8"),
    ("U5", "USART1"): Stm32Uart("U5", "USART1", 0x40013800, "v2", False, 0x46020CA4, 14, 0x42020000,
                                0x46020C8C, 0, 9, 10, 7, "USART1: PA9 = TX, PA10 = RX (AF7), ST-LINK VCP",
                                "RM0456 (STM32U575) memory map and RCC; UM2861 Nucleo-144 VCP on PA9/PA10"),
}

# Clock the STM32 firmware actually runs at. F4/F7: PLL from HSI to the board's clock_hz. H7/L4/U5:
# their fast clocks need voltage scaling / boost / EPOD sequences that are easy to get wrong without the
# vendor HAL, so the firmware stays on the 64 MHz (H7) or 16 MHz (L4, U5) HSI and says so; cycle counts
# stay comparable (fewer flash wait states make them slightly optimistic).
_STM32_HSI_HZ = {"H7": 64_000_000, "L4": 16_000_000, "U5": 16_000_000}


def stm32_series(board: Board) -> str:
    mcu = board.mcu.upper()
    for series in ("F4", "F7", "H7", "L4", "U5"):
        if mcu.startswith("STM32" + series):
            return series
    raise BoardError(f"{board.path}: mcu '{board.mcu}' is not an STM32 series this generator supports "
                     f"(F4, F7, H7, L4, U5)", hint="add its UART and clock facts to pipeline/codegen/families.py")


def stm32_uart(board: Board) -> Stm32Uart:
    series = stm32_series(board)
    key = (series, board.uart or "")
    if key not in _STM32_UARTS:
        known = ", ".join(f"{s}/{u}" for s, u in sorted(_STM32_UARTS))
        raise BoardError(f"{board.path}: field 'serial.uart' is '{board.uart}', which has no pin/register "
                         f"entry for STM32{series} (known: {known})",
                         hint="add the UART to pipeline/codegen/families.py with its pins from the board manual")
    return _STM32_UARTS[key]


def core_clock_hz(board: Board) -> int:
    """The clock the generated firmware configures (may be below the board's maximum, see above)."""
    if board.family == "stm32":
        return _STM32_HSI_HZ.get(stm32_series(board), board.clock_hz)
    return board.clock_hz


def flash_region(board: Board) -> tuple[int, int]:
    """(origin, length) of the flash the application may use: from flash_address to the end of flash."""
    # QEMU's FPGA machines have no flash: code goes wherever the machine boots (0x0, or 0x10000000 on AN505).
    base = board.flash_address if board.family == "mps2" else FLASH_BASE[board.family]
    skipped = board.flash_address - base
    if skipped < 0 or skipped >= board.flash_bytes:
        raise BoardError(f"{board.path}: field 'flash_address' 0x{board.flash_address:X} is outside the "
                         f"{board.family} flash (base 0x{base:X}, {board.flash_bytes} bytes)")
    return board.flash_address, board.flash_bytes - skipped


def ram_region(board: Board) -> tuple[int, int]:
    """(origin, length) of the SRAM bank that holds the arena; .data, .bss and the stack go there too."""
    bank = next(b for b in board.sram_banks if b.name == board.arena_bank)
    return bank.address, bank.size_bytes
