"""`--port qemu`: the real generated firmware, built and started in qemu-system-arm, as a serial port.

Unlike `--port sim` (the host's own TFLite Micro runtime behind a pty: it checks the host side and the
protocol, never the firmware), this compiles the generated firmware against a TFLite Micro tree with the
cross-compiler and runs it on the emulated board: what answers on the pty is the firmware's own UART.
Its counts are instructions (QEMU -icount), flagged as such by the firmware.
"""
from __future__ import annotations

import os
from pathlib import Path

import serial

from .. import artifacts
from ..boards import Board
from ..errors import ArtifactError, UsageError


class QemuSerial(serial.Serial):
    """The pty of a QEMU board; closing it also stops QEMU."""

    qemu = None
    elf: Path | None = None
    machine: str = ""

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.qemu is not None:
                from .qemu import stop_qemu
                stop_qemu(self.qemu)
                self.qemu = None

    def describe(self) -> dict:
        return {"kind": "firmware in QEMU", "machine": self.machine, "elf": str(self.elf)}


def _generated_for(fw: Path, model: Path, board: Board) -> bool:
    manifest = artifacts.path("firmware manifest", fw)
    if not manifest.exists():
        return False
    from .._io import sha256_file
    try:
        m = artifacts.read("firmware manifest", manifest)
    except ArtifactError:
        return False
    return m.get("board") == board.id and m.get("model_sha256") == sha256_file(model)


def firmware_dir_for(model: Path, board: Board, firmware: str | os.PathLike | None) -> Path:
    """The folder to build: `firmware` if given, else the folder the model sits in or the model's `firmware/`
    when generated for this model and board, else `firmware-<board>/` beside the model (generated now)."""
    if firmware is not None:
        return Path(firmware)
    if _generated_for(model.parent, model, board):  # the model copy inside a firmware folder
        return model.parent
    default = model.parent / "firmware"
    return default if _generated_for(default, model, board) else model.parent / f"firmware-{board.id}"


def open_qemu_port(board: Board | None, model: str | os.PathLike | None, baud: int, *,
                   firmware: str | os.PathLike | None = None, tflm_dir: str | None = None,
                   log=print) -> QemuSerial:
    """Generate (if needed) and build the firmware for `model` on the emulated `board`, start it in QEMU
    halted, open its UART pty, then let the CPU run (so nothing it prints at boot is lost)."""
    if board is None or not board.qemu_machine:
        what = "no --board given" if board is None else f"board '{board.id}' has no QEMU machine"
        raise UsageError(f"--port qemu runs the firmware on an emulated board, but {what}",
                         hint="pass --board with one of " + ", ".join(_qemu_board_ids())
                              + "; for hardware pass its serial port (or --port auto)")
    if model is None:
        raise UsageError("--port qemu needs the model the firmware is built from", hint="pass --model")
    from . import generate_firmware
    from .make import build
    from .qemu import start_qemu

    model = Path(model)
    fw = firmware_dir_for(model, board, firmware)
    if not _generated_for(fw, model, board):
        report = artifacts.path("export report", model.parent)
        generate_firmware(model, board, fw, report=report if report.exists() else None)
    log(f"qemu: building the firmware in {fw} (the TFLite Micro library comes from the shared cache)")
    elf = build(fw, tflm_dir=tflm_dir, jobs=os.cpu_count() or 1, echo=lambda _m: None)
    proc, pty = start_qemu(elf, board.qemu_machine)
    try:
        port = QemuSerial(pty, baud, timeout=0.05)
    except Exception:
        from .qemu import stop_qemu
        stop_qemu(proc)
        raise
    port.qemu, port.elf, port.machine = proc, elf, board.qemu_machine
    proc.stdin.write("cont\n")
    proc.stdin.flush()
    log(f"qemu: {board.qemu_machine} running {elf} (UART on {pty})")
    return port


def _qemu_board_ids() -> list[str]:
    from ..boards import list_boards
    return [b.id for b in list_boards() if b.qemu_machine]
