"""Opening the serial link: a device path, a pyserial URL, `auto` (USB VID/PID from the board files) or
`sim` (a virtual board started for the duration of the link)."""
from __future__ import annotations

import os
from pathlib import Path

import serial
from serial.tools import list_ports

from ..boards import Board, list_boards, load_board
from ..errors import SerialLinkError, UsageError


def describe_ports() -> list[str]:
    out = []
    for p in sorted(list_ports.comports(), key=lambda p: p.device):
        ids = f"{p.vid:04X}:{p.pid:04X}" if p.vid is not None and p.pid is not None else "no USB id"
        out.append(f"{p.device} ({ids}{', ' + p.description if p.description and p.description != 'n/a' else ''})")
    return out


def _ports_hint() -> str:
    ports = describe_ports()
    return ("available ports: " + "; ".join(ports)) if ports else "no serial ports are present at all"


def find_port(board: Board | None = None) -> str:
    """The one port whose USB VID:PID matches `board` (or any known board); error if none or several."""
    boards = [board] if board else [b for b in list_boards() if b.usb_vid and b.usb_pid]
    wanted = {(b.usb_vid.upper(), b.usb_pid.upper()): b.id for b in boards if b.usb_vid and b.usb_pid}
    if board is not None and not wanted:
        raise SerialLinkError(f"board '{board.id}' has no USB VID/PID in its board file, so --port auto "
                              f"cannot find it", hint="pass the port explicitly, e.g. --port /dev/ttyACM0")
    matches = []
    for p in list_ports.comports():
        if p.vid is None or p.pid is None:
            continue
        key = (f"{p.vid:04X}", f"{p.pid:04X}")
        if key in wanted:
            matches.append((p.device, wanted[key], key))
    if not matches:
        what = f"board '{board.id}' ({board.usb_vid}:{board.usb_pid})" if board else "any known board"
        raise SerialLinkError(f"--port auto found no serial port of {what}", hint=_ports_hint())
    if len(matches) > 1:
        listing = "; ".join(f"{dev} ({vid}:{pid}, like {bid})" for dev, bid, (vid, pid) in sorted(matches))
        raise SerialLinkError(f"--port auto found {len(matches)} candidate ports: {listing}",
                              hint="choose one with --port PATH" + ("" if board else " or name the board with --board"))
    return matches[0][0]


class SimSerial(serial.Serial):
    """A serial port on a virtual board's pty; closing it also stops the board."""

    sim = None

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.sim is not None:
                self.sim.stop()
                self.sim = None


def open_port(spec: str, baud: int, board: Board | str | None = None, *, model: str | os.PathLike | None = None,
              sim_options=None) -> serial.SerialBase:
    """Open `spec`: `auto`, `sim` (a virtual board: the host runtime, needs `model`), a device path, or a
    pyserial URL (loop://, socket://...). `qemu` (the real firmware built and run on an emulated board) is
    opened by `pipeline.codegen.qemu_board.open_qemu_port`, above this layer, and passed in as a port."""
    if isinstance(board, str):
        board = load_board(board)
    if spec == "qemu":
        raise UsageError("--port qemu must be opened by the command that builds the firmware",
                         hint="use `ofa-mcu check --port qemu` or `ofa-mcu deploy`; in Python, pass the port from "
                              "pipeline.codegen.qemu_board.open_qemu_port")
    if spec == "sim":
        from .sim import SimOptions, VirtualBoard
        if model is None:
            raise UsageError("--port sim needs the model the virtual board should serve", hint="pass --model")
        opts = sim_options or SimOptions(baud=baud, board=board.id if board else None)
        vb = VirtualBoard(model, opts)
        path = vb.start()
        try:
            port = SimSerial(path, baud)
        except Exception:
            vb.stop()
            raise
        port.sim = vb
        return port
    if spec == "auto":
        spec = find_port(board)
    try:
        if "://" in spec:
            return serial.serial_for_url(spec, baudrate=baud)
        if not Path(spec).exists():
            raise SerialLinkError(f"serial port {spec} does not exist", hint=_ports_hint())
        return serial.Serial(spec, baud)
    except serial.SerialException as e:
        raise SerialLinkError(f"cannot open serial port {spec}: {e}",
                              hint="is another program (a serial monitor, a previous run) holding it? "
                                   + _ports_hint()) from None
