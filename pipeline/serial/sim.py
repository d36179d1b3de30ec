"""Virtual board: the firmware's protocol.c (via ctypes) serving a pseudo-terminal, TFLM doing inference.

A pty moves bytes instantly, so the board paces them as a UART would: 10 bits per byte at `baud` in each
direction, plus `turnaround_ms` before each reply reaches the host (USB full-speed serial adapters add
about 1 ms per round trip). Faults, all drawn from one seeded generator: bytes dropped or corrupted in
either direction, resets after given frame counts (the device context is re-initialised and sends a BOOT
banner, as a real board does), and random extra reply delays up to `delay_ms`. Cycles come from the
MAC-based estimate in latency.py and the board says so (the SIMULATED flag).
"""
from __future__ import annotations

import os
import select
import threading
import time
import tty
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..boards import Board, load_board
from ..errors import SerialLinkError
from ..tflite.model_info import inspect_tflite
from . import framing as fr
from .latency import DEFAULT_CORE, model_op_cycles
from .native import NativeDevice
from .reference import TflmRunner

VIRTUAL_CLOCK_HZ = 100_000_000  # when no board is given


def _pkg_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("ofa-mcu")
    except PackageNotFoundError:
        return "dev"


@dataclass
class SimOptions:
    baud: int = 115200
    turnaround_ms: float = 1.0
    drop_rate: float = 0.0
    corrupt_rate: float = 0.0
    reset_after: tuple[int, ...] = ()  # received-frame counts after which the board resets (once each)
    delay_ms: float = 0.0  # each reply is delayed by a further uniform random 0..delay_ms
    seed: int = 0
    window: int = 8  # SET_INPUT frames the host may pipeline: a firmware with a 2.2 KB RX ring buffer
    max_payload: int = fr.DEFAULT_MAX_PAYLOAD
    board: str | None = None
    boot_text: bytes = b""  # printed before the BOOT frame at every boot, as firmware and bootloaders do
    protocol: str = "binary"  # binary | eembc (the MLPerf Tiny runner's text protocol) | both (first byte decides)

    def describe(self) -> dict:
        d = dict(self.__dict__)
        d["reset_after"] = list(self.reset_after)
        d["boot_text"] = self.boot_text.decode("latin-1")
        return d


@dataclass
class SimStats:
    frames_in: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    dropped: int = 0
    corrupted: int = 0
    resets: int = 0
    invokes: int = 0
    profiles: int = 0
    frame_types_in: dict = field(default_factory=dict)


class PacedLink:
    """A pseudo-terminal whose far end is a device object, with UART pacing, turnaround and faults.

    Subclasses provide `_make_device()` returning an object with `feed(bytes)` and `reset()` that writes
    through `self._device_write`. `frame_end` is the byte that ends a request (for frame counting).
    """

    frame_end = 0

    def __init__(self, options: SimOptions | None = None):
        self.options = opts = options or SimOptions()
        self.stats = SimStats()
        self._rng = np.random.default_rng(opts.seed)
        self._resets_pending = sorted(int(n) for n in opts.reset_after)
        self._byte_s = 10.0 / opts.baud  # start + 8 data + stop bits
        self._tx: deque[tuple[float, bytes]] = deque()
        self._tx_cv = threading.Condition()
        self._tx_line_free = 0.0
        self._rx_line_free = 0.0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._master = self._slave = -1
        self.port_path = ""
        self.device = None
        self.error: BaseException | None = None

    def _make_device(self):
        raise NotImplementedError

    def _count_frame(self, piece: bytes) -> None:
        self.stats.frames_in += 1

    # ------------------------------------------------------------ lifecycle

    def start(self) -> str:
        self._master, self._slave = os.openpty()
        # Raw mode before anyone connects: no echo of the BOOT banner, no CR/LF translation, 0x00 passes.
        tty.setraw(self._slave)
        tty.setraw(self._master)
        self.port_path = os.ttyname(self._slave)
        if self.options.boot_text:
            self._device_write(self.options.boot_text)
        self.device = self._make_device()
        self._threads = [threading.Thread(target=self._rx_loop, name="board-sim-rx", daemon=True),
                         threading.Thread(target=self._tx_loop, name="board-sim-tx", daemon=True)]
        for t in self._threads:
            t.start()
        return self.port_path

    def stop(self) -> None:
        self._stop.set()
        with self._tx_cv:
            self._tx_cv.notify_all()
        for t in self._threads:
            t.join(timeout=2.0)
        for fd in (self._master, self._slave):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = -1

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


    def _device_write(self, data: bytes) -> None:
        now = time.monotonic()
        extra = self.options.turnaround_ms / 1e3
        if self.options.delay_ms > 0:
            extra += float(self._rng.uniform(0, self.options.delay_ms)) / 1e3
        with self._tx_cv:
            start = max(now + extra, self._tx_line_free)
            self._tx_line_free = start + len(data) * self._byte_s
            self._tx.append((self._tx_line_free, data))
            self._tx_cv.notify()

    # ------------------------------------------------------------ wire

    def _faults(self, data: bytes) -> bytes:
        o = self.options
        if not data or (o.drop_rate <= 0 and o.corrupt_rate <= 0):
            return data
        a = np.frombuffer(data, dtype=np.uint8).copy()
        if o.corrupt_rate > 0:
            hit = self._rng.random(a.size) < o.corrupt_rate
            a[hit] ^= self._rng.integers(1, 256, size=int(hit.sum()), dtype=np.uint8)
            self.stats.corrupted += int(hit.sum())
        if o.drop_rate > 0:
            keep = self._rng.random(a.size) >= o.drop_rate
            self.stats.dropped += int((~keep).sum())
            a = a[keep]
        return a.tobytes()

    def _sleep_until(self, t: float) -> None:
        while not self._stop.is_set():
            d = t - time.monotonic()
            if d <= 0:
                return
            time.sleep(min(d, 0.05))

    def _rx_loop(self) -> None:
        try:
            while not self._stop.is_set():
                r, _, _ = select.select([self._master], [], [], 0.05)
                if not r:
                    continue
                try:
                    data = os.read(self._master, 4096)
                except OSError:  # no client connected right now
                    time.sleep(0.01)
                    continue
                t_read = time.monotonic()
                self.stats.bytes_in += len(data)
                self._rx_line_free = max(self._rx_line_free, t_read)
                data = self._faults(data)
                start = 0
                while start < len(data) and not self._stop.is_set():
                    z = data.find(self.frame_end, start)
                    end = len(data) if z < 0 else z + 1
                    piece = data[start:end]
                    self._rx_line_free += len(piece) * self._byte_s
                    self._sleep_until(self._rx_line_free)  # the last byte has now "arrived"
                    self.device.feed(piece)
                    start = end
                    if z >= 0 and len(piece) > 1:  # a lone delimiter is the host flushing, not a frame
                        self._count_frame(piece)
                        if self._resets_pending and self.stats.frames_in >= self._resets_pending[0]:
                            self._reset()
                            break  # bytes still arriving while the board reboots are lost
        except BaseException as e:  # noqa: BLE001 - reported by whoever owns the board
            self.error = e

    def _reset(self) -> None:
        self._resets_pending.pop(0)
        self.stats.resets += 1
        with self._tx_cv:
            self._tx.clear()  # replies not yet on the wire die with the old firmware
        if self.options.boot_text:
            self._device_write(self.options.boot_text)
        self.device.reset()

    def _tx_loop(self) -> None:
        try:
            while not self._stop.is_set():
                with self._tx_cv:
                    while not self._tx and not self._stop.is_set():
                        self._tx_cv.wait(0.1)
                    if self._stop.is_set():
                        return
                    due, data = self._tx[0]
                self._sleep_until(due)
                with self._tx_cv:
                    if not self._tx or self._tx[0][0] != due:
                        continue  # cleared by a reset meanwhile
                    self._tx.popleft()
                data = self._faults(data)
                self.stats.bytes_out += len(data)
                view = memoryview(data)
                while view and not self._stop.is_set():
                    _, w, _ = select.select([], [self._master], [], 0.05)
                    if w:
                        view = view[os.write(self._master, view):]
        except BaseException as e:  # noqa: BLE001
            self.error = e


class VirtualBoard(PacedLink):
    """`with VirtualBoard(model) as vb: serial.Serial(vb.port_path)`; or start()/stop()."""

    def __init__(self, model_path: str | os.PathLike, options: SimOptions | None = None, *,
                 invoke=None):
        super().__init__(options)
        opts = self.options
        self.model = inspect_tflite(model_path)
        self.board: Board | None = load_board(opts.board) if opts.board else None
        self.core = self.board.core if self.board else DEFAULT_CORE
        self.clock_hz = self.board.clock_hz if self.board else VIRTUAL_CLOCK_HZ
        self._op_cycles = model_op_cycles(self.model, self.core)
        self._runner = None if invoke else TflmRunner(model_path, self.model)
        self._invoke_fn = invoke or self._runner.run
        self.info = fr.DeviceInfo(
            protocol_version=fr.VERSION,
            flags=fr.FLAG_SIMULATED | (fr.FLAG_REFERENCE_KERNELS if invoke is None else 0),
            window=max(1, min(opts.window, 32)), max_payload=opts.max_payload, model_hash=self.model.hash16,
            input_dtype=self.model.input.dtype.lower(), input_shape=self.model.input.shape,
            input_bytes=self.model.input.nbytes, input_scale=self.model.input.scale,
            input_zero_point=self.model.input.zero_point, output_dtype=self.model.output.dtype.lower(),
            output_bytes=self.model.output.nbytes, output_scale=self.model.output.scale,
            output_zero_point=self.model.output.zero_point, arena_bytes=0, cycle_hz=self.clock_hz,
            board_id=self.board.id if self.board else "virtual",
            firmware_version=f"ofa-mcu {_pkg_version()} board-sim")

    def _make_device(self):
        proto = self.options.protocol
        if proto not in ("binary", "eembc", "both"):
            raise SerialLinkError(f"virtual board protocol '{proto}': choose binary, eembc or both")
        binary = None if proto == "eembc" else NativeDevice(
            self.info, write=self._device_write, invoke=self._device_invoke, profile=self._device_profile,
            max_payload=self.options.max_payload)
        if proto == "binary":
            return binary
        from .eembc import EembcDevice

        eembc = EembcDevice(write=self._device_write, invoke=self._device_invoke,
                            input_bytes=self.info.input_bytes, output_bytes=self.info.output_bytes,
                            output_dtype=self.info.output_dtype, output_scale=self.info.output_scale,
                            output_zero_point=self.info.output_zero_point, cycle_hz=self.clock_hz,
                            vendor=f"{self.info.board_id} ofa-mcu board-sim", model=self.model.hash16[:16],
                            model_hash=self.model.hash16, banner=proto == "eembc")
        return eembc if proto == "eembc" else FirstByteDetect(binary, eembc, self)

    @property
    def frame_end(self):  # the byte that ends a request: 0x00 (binary frames) or '%' (EEMBC commands)
        dev = self.device
        eembc = self.options.protocol == "eembc" or (isinstance(dev, FirstByteDetect) and dev.mode == "eembc")
        return b"%"[0] if eembc else 0

    def _count_frame(self, piece: bytes) -> None:
        self.stats.frames_in += 1
        if self.frame_end != 0:
            name = "eembc:" + piece[:-1].decode("latin-1").split(" ", 1)[0]
            self.stats.frame_types_in[name] = self.stats.frame_types_in.get(name, 0) + 1
            return
        f = fr.decode_frame(piece[:-1])
        name = f.name if isinstance(f, fr.Frame) else "damaged"
        self.stats.frame_types_in[name] = self.stats.frame_types_in.get(name, 0) + 1

    def describe(self) -> dict:
        return {"port": self.port_path, "model_hash": self.model.hash16, "board": self.info.board_id,
                "clock_hz": self.clock_hz, "core": self.core, "latency": "simulated",
                **self.options.describe()}

    def _device_invoke(self, data: bytes) -> tuple[bytes, int]:
        self.stats.invokes += 1
        return self._invoke_fn(data), sum(c for _, c in self._op_cycles)

    def _device_profile(self, data: bytes):
        self.stats.profiles += 1
        self._invoke_fn(data)
        return self._op_cycles


class FirstByteDetect:
    """The firmware's PROTOCOL=BOTH: the first byte that is not 0x00 picks the protocol until the next reset.
    A lowercase ASCII letter starts an EEMBC command (name%, profile%...); anything else a binary frame
    (COBS code bytes of a HELLO are below 0x20)."""

    def __init__(self, binary, eembc, board: VirtualBoard):
        self.binary, self.eembc, self.board = binary, eembc, board
        self.mode = ""

    def feed(self, data: bytes) -> None:
        if not self.mode:
            first = next((b for b in data if b != 0), None)
            if first is None:
                return self.binary.feed(data)
            self.mode = "eembc" if ord("a") <= first <= ord("z") else "binary"
        (self.eembc if self.mode == "eembc" else self.binary).feed(data)

    def reset(self) -> None:
        self.mode = ""
        self.binary.reset()
        self.eembc.reset(banner=False)


def sim_summary(vb: VirtualBoard) -> str:
    o = vb.options
    faults = [f"{k}={v}" for k, v in (("drop", o.drop_rate), ("corrupt", o.corrupt_rate),
                                       ("resets_at", list(o.reset_after)), ("delay_ms", o.delay_ms)) if v]
    return (f"virtual board on {vb.port_path}: model {vb.model.hash16}, {vb.info.board_id}, {o.baud} baud, "
            + (f"protocol {o.protocol}, " if o.protocol != "binary" else "") +
            f"turnaround {o.turnaround_ms:g} ms, window {vb.info.window}, latency simulated"
            + (f", faults {' '.join(faults)} (seed {o.seed})" if faults else ""))


def require_model(path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise SerialLinkError(f"{p}: model not found; the virtual board needs the .tflite it serves",
                              hint="pass --model out/model_int8.tflite")
    return p
