"""`ProtocolClient`: the host end of the wire protocol over any pyserial port (a board, a pty, QEMU).

Requests carry sequence numbers; the device answers a retried request from its reply cache, so every
retry is safe. Lost or damaged frames are retried after `timeout_s` of silence, or at once on a NAK for
the request or a damaged reply that arrives late enough to be one (see `_fresh`); SET_INPUT chunks are
pipelined up to the device's window with selective repeat. A device reset (BOOT frame, or NO_SESSION
error) is handled here: re-HELLO, check the model is unchanged, resend the current input, repeat the
request. Callers see only results, counters in `stats`, or typed errors. docs/PROTOCOL.md has the rules.
"""
from __future__ import annotations

import queue
import struct
import threading
import time
from dataclasses import dataclass, field

from ..errors import ModelMismatchError, SerialLinkError
from . import framing as fr
from .framing import BadFrame, DeviceInfo, Frame


@dataclass(frozen=True)
class InvokeResult:
    output: bytes
    cycles: int


@dataclass(frozen=True)
class OpCycles:
    index: int
    op_code: int
    cycles: int

    @property
    def op_name(self) -> str:
        from ..tflite.model_info import op_name
        return op_name(self.op_code)


@dataclass
class LinkStats:
    frames_sent: int = 0
    bytes_sent: int = 0
    frames_received: int = 0
    bytes_received: int = 0
    bad_frames: int = 0  # damaged or noise blocks received
    naks: int = 0  # device reported a damaged request
    retries: int = 0  # request frames sent again
    timeouts: int = 0
    resets: int = 0  # device resets recovered from
    rechunks: int = 0  # input transfers restarted with smaller frames (the line got noisier)
    chunk_bytes: dict = field(default_factory=dict)  # SET_INPUT frame size -> transfers sent at it
    requests: dict = field(default_factory=dict)  # request type name -> first transmissions

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class _Rechunk(Exception):
    """Internal: restart the current input transfer with smaller frames."""


REPLY_BYTES = 17  # an ACK on the wire (5 payload + 9 header/CRC + COBS + delimiter): it can be hit too
CHUNK_SIZES = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65531)


class LineNoise:
    """Measured byte error rate of the line, from SET_INPUT frames sent and acknowledged, and the frame
    size and window it calls for. Counts decay (half-life ~64 frames) so the estimate follows a line that
    changes; a prior of 16 clean full-size frames keeps one unlucky frame from shrinking everything.

    A frame and its ACK, `n` wire bytes in all, arrive intact with probability (1-p)^n at byte error rate
    p; a chunk of c bytes costs c + 12 wire bytes, so the goodput per wire byte is
    c (1-p)^(c+12+17) / (c+12): the chosen size maximises it (about 1/p bytes for small p)."""

    DECAY = 0.989

    def __init__(self):
        self.tries, self.oks, self.bytes = 16.0, 16.0, 16.0 * (fr.encoded_size(fr.DEFAULT_MAX_PAYLOAD) + REPLY_BYTES)

    def note(self, wire_bytes: int, ok: bool) -> None:
        d = self.DECAY
        self.tries = self.tries * d + 1
        self.oks = self.oks * d + ok
        self.bytes = self.bytes * d + wire_bytes + REPLY_BYTES

    @property
    def byte_error_rate(self) -> float:
        success = max(self.oks, 0.5) / self.tries
        return 1.0 - success ** (self.tries / self.bytes)

    def chunk_bytes(self, device_max: int) -> int:
        p = self.byte_error_rate
        if p < 1e-5:
            return device_max
        def goodput(c: int) -> float:
            return c * (1 - p) ** (c + 12 + REPLY_BYTES) / (c + 12)
        sizes = [c for c in CHUNK_SIZES if c < device_max] + [device_max]
        return max(sizes, key=goodput)

    def window(self, device_window: int) -> int:
        """Fewer frames in flight on a line that loses most of them: each silence resends the whole window."""
        p = self.byte_error_rate
        return device_window if p < 2e-3 else max(1, min(device_window, 4))


class DeviceReset(SerialLinkError):
    """The device rebooted (BOOT frame or NO_SESSION); the client re-HELLOs and repeats the request."""


class DeviceError(SerialLinkError):
    """The device answered with an ERROR frame."""

    def __init__(self, code: int, request: int, detail: int):
        name = fr.ERROR_NAMES.get(code, str(code))
        super().__init__(f"device refused {fr.TYPE_NAMES.get(request, hex(request))}: {name} "
                         f"(detail {detail})",
                         hint="the host and firmware disagree on the protocol or the model; rebuild the "
                              "firmware from the same model and ofa-mcu version")
        self.code, self.request, self.detail = code, request, detail


NOISY_FACTOR = 8
IDLE_FLUSH_S = 0.03  # a line idle this long ends an unfinished frame (the reader polls every 50 ms)


class _Budget:
    """Retries allowed for one request: `retries` unanswered tries, or NOISY_FACTOR times as many while
    the device keeps answering with NAKs or damaged frames (it is alive; the line is noisy)."""

    def __init__(self, retries: int):
        self.retries, self.silent, self.attempts = retries, 0, 0

    def spend(self, silent: bool) -> bool:
        self.attempts += 1
        self.silent += bool(silent)
        return self.silent <= self.retries and self.attempts <= NOISY_FACTOR * max(1, self.retries)


@dataclass
class _Flight:
    """One SET_INPUT frame awaiting its ACK."""
    index: int
    wire: bytes
    order: int  # position of its first transmission
    tx: int = 1
    last_tx: float = field(default_factory=time.monotonic)


class _Reader(threading.Thread):
    """Reads the port continuously and queues decoded frames, so no reply is missed while we write."""

    def __init__(self, port, stats: LinkStats):
        super().__init__(name="ofa-mcu-serial-reader", daemon=True)
        self.port, self.stats = port, stats
        self.frames: queue.Queue = queue.Queue()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.decoder = fr.FrameDecoder()

    def run(self) -> None:
        last_rx = time.monotonic()
        try:
            while not self.stop.is_set():
                data = self.port.read(max(1, self.port.in_waiting or 0))
                if not data:
                    # A frame whose delimiter was lost would otherwise wait for the next frame, which a
                    # device waiting for us never sends: after an idle line, report it as damaged.
                    if self.decoder.pending and time.monotonic() - last_rx > IDLE_FLUSH_S:
                        self.frames.put(self.decoder.flush())
                    continue
                last_rx = time.monotonic()
                self.stats.bytes_received += len(data)
                for f in self.decoder.feed(data):
                    self.frames.put(f)
        except Exception as e:  # noqa: BLE001 - surfaced to the caller on its next read
            if not self.stop.is_set():
                self.error = e
                self.frames.put(e)


class ProtocolClient:
    """Talk to one device. `port` is an open pyserial port (its timeout is set to a short poll)."""

    def __init__(self, port, *, timeout_s: float = 0.5, retries: int = 10, invoke_timeout_s: float = 30.0,
                 max_resets: int = 5, window: int | None = None):
        self.port = port
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.invoke_timeout_s = float(invoke_timeout_s)
        self.max_resets = int(max_resets)
        self.window_limit = window
        self.stats = LinkStats()
        self.info: DeviceInfo | None = None
        self._seq = 0
        self._input: bytes | None = None
        self._invoke_s = 0.0  # slowest inference seen, to size the RESULT timeout
        self._rtt: dict[int, float] = {}  # smoothed request -> first reply time, per request type
        self.noise = LineNoise()
        port.timeout = 0.05
        self._reader = _Reader(port, self.stats)
        self._reader.start()

    # -------------------------------------------------------------- public API

    def hello(self) -> DeviceInfo:
        """Open a session; return what the device says about itself."""
        budget = _Budget(self.retries)
        sent: set[int] = set()
        while True:
            seq = self._next_seq()
            sent.add(seq)
            # The leading 0x00 ends whatever partial frame the device holds (noise, a torn frame).
            sent_at = time.monotonic()
            self._send(b"\x00" + fr.encode_frame(fr.T_HELLO, seq), fr.T_HELLO, first=len(sent) == 1)
            deadline = time.monotonic() + self.timeout_s  # --timeout bounds every wait
            silent = True
            while True:
                f = self._get(deadline, resets=False)  # a BOOT banner here is just a board starting up
                if f is None:
                    self.stats.timeouts += 1
                    break
                if isinstance(f, Frame) and f.type == fr.T_INFO and f.seq in sent:
                    if len(sent) == 1:
                        self._note_rtt(fr.T_HELLO, time.monotonic() - sent_at)
                    return self._accept_info(f.payload)
                if isinstance(f, BadFrame) and self._fresh(fr.T_HELLO, sent_at):
                    silent = False
                    break  # most likely our INFO, damaged: ask again at once
            if not budget.spend(silent):
                break
        noise = self.stats.bad_frames
        raise SerialLinkError(
            f"no HELLO reply from {getattr(self.port, 'port', self.port)} after {budget.attempts} tries"
            + (f" ({noise} undecodable blocks received: wrong baud rate?)" if noise else " (silent)"),
            hint="check the board is flashed with ofa-mcu firmware, the cable and port, and --baud "
                 "(the firmware's baud rate is in the board file)")

    def _accept_info(self, payload: bytes) -> DeviceInfo:
        try:
            info = DeviceInfo.parse(payload)
            if info.protocol_version == fr.VERSION:
                fr.check_info(info)
        except (ValueError, struct.error) as e:
            raise SerialLinkError(f"the device sent an INFO frame the protocol does not allow: {e}",
                                  hint="the firmware is not ofa-mcu's, or is corrupt; rebuild and flash it") from None
        if info.protocol_version != fr.VERSION:
            raise SerialLinkError(f"device speaks protocol v{info.protocol_version}, this host v{fr.VERSION}",
                                  hint="rebuild the firmware with this version of ofa-mcu")
        if self.info is not None and info.model_hash != self.info.model_hash:
            raise ModelMismatchError(f"the device came back from a reset with model {info.model_hash}, "
                                     f"not {self.info.model_hash}",
                                     hint="was the board re-flashed during the check?")
        self.info = info
        return info

    def send_input(self, data: bytes) -> None:
        """Transfer one input tensor (exactly `info.input_bytes`), chunked and acknowledged."""
        info = self.info or self.hello()
        data = bytes(data)
        if len(data) != info.input_bytes:
            raise SerialLinkError(f"input has {len(data)} bytes but the device expects {info.input_bytes}",
                                  hint="the input contract and the firmware disagree on the input shape")
        self._input = data
        self._with_resets(lambda: self._send_input_adaptive(data))

    def invoke(self) -> InvokeResult:
        """Run the model on the device on the input last sent; return its output and cycles."""
        if self._input is None:
            raise SerialLinkError("invoke() before send_input()", hint="send an input first")
        return self._with_resets(self._invoke_once, resend_input=True)

    def profile(self) -> list[OpCycles]:
        """Run one profiled inference on the current input; per-op cycles in execution order."""
        info = self.info or self.hello()
        if not info.profile_supported:
            raise SerialLinkError("this firmware does not implement PROFILE",
                                  hint="regenerate the firmware with profiling enabled")
        if self._input is None:  # a defined input makes the profile reproducible
            self.send_input(bytes(info.input_bytes))
        return self._with_resets(self._profile_once, resend_input=True)

    def detach(self) -> None:
        """Stop reading the port but leave it open (for a port the caller owns)."""
        self._reader.stop.set()
        self._reader.join(timeout=1.0)

    def close(self) -> None:
        """Stop reading and close the port (a virtual board behind it stops too)."""
        self.detach()
        try:
            self.port.close()
        except Exception:  # noqa: BLE001 - closing a vanished port is not an error worth raising
            pass

    def __enter__(self) -> "ProtocolClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -------------------------------------------------------------- internals

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    def _send(self, data: bytes, ftype: int, *, first: bool) -> None:
        try:
            self.port.write(data)
        except Exception as e:  # noqa: BLE001
            raise SerialLinkError(f"write to {getattr(self.port, 'port', '?')} failed: {e}",
                                  hint="was the board unplugged?") from None
        self.stats.frames_sent += 1
        self.stats.bytes_sent += len(data)
        if first:
            name = fr.TYPE_NAMES.get(ftype, hex(ftype))
            self.stats.requests[name] = self.stats.requests.get(name, 0) + 1
        else:
            self.stats.retries += 1

    def _get(self, deadline: float, *, resets: bool = True) -> Frame | BadFrame | None:
        """Next frame, or None at the deadline. BOOT and NO_SESSION become DeviceReset if `resets`."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                f = self._reader.frames.get(timeout=remaining)
            except queue.Empty:
                return None
            if isinstance(f, BaseException):
                raise SerialLinkError(f"reading the port failed: {f}", hint="was the board unplugged?")
            if isinstance(f, BadFrame):
                self.stats.bad_frames += 1
                return f
            self.stats.frames_received += 1
            if not resets:
                return f
            if f.type == fr.T_BOOT:
                raise DeviceReset("device reset (BOOT)")
            if f.type == fr.T_ERROR and len(f.payload) >= 6 and f.payload[0] == fr.E_NO_SESSION:
                raise DeviceReset("device reset (NO_SESSION)")
            return f

    def _with_resets(self, fn, *, resend_input: bool = False):
        for _ in range(self.max_resets + 1):
            try:
                return fn()
            except DeviceReset:
                self.stats.resets += 1
                self._drain()
                self.hello()
                if resend_input and self._input is not None:
                    self._with_resets(lambda: self._send_input_adaptive(self._input))
        raise SerialLinkError(f"the device reset more than {self.max_resets} times in one request",
                              hint="check the power supply and the firmware's watchdog / stack size")

    def _drain(self) -> None:
        """Forget queued frames (stale replies from before a reset)."""
        while True:
            try:
                self._reader.frames.get_nowait()
            except queue.Empty:
                return

    @staticmethod
    def _error(f: Frame) -> DeviceError:
        code, req, detail = struct.unpack_from("<BBI", f.payload.ljust(6, b"\x00"))
        return DeviceError(code, req, detail)

    def _send_input_adaptive(self, data: bytes) -> None:
        """Send with the frame size the measured error rate calls for; when the line turns out much noisier
        mid-transfer, start again with smaller frames (rewriting acknowledged bytes changes nothing)."""
        while True:
            try:
                return self._send_input_once(data)
            except _Rechunk:
                self.stats.rechunks += 1
                self._drain()

    def _send_input_once(self, data: bytes) -> None:
        """Selective repeat over a window: the device handles frames in order, so a NAK names the frame to
        resend, an ACK for a later frame reveals an earlier one lost, and silence resends everything."""
        info = self.info
        chunk = self.noise.chunk_bytes(info.chunk_bytes)
        chunks = [(off, data[off:off + chunk]) for off in range(0, len(data), chunk)] or [(0, b"")]
        window = self.noise.window(max(1, min(info.window, self.window_limit or info.window, 32)))
        inflight: dict[int, _Flight] = {}
        acked = [False] * len(chunks)
        budgets = [_Budget(self.retries) for _ in chunks]
        base = nxt = order = 0

        def resend(fl: _Flight, silent: bool) -> None:
            self.noise.note(len(fl.wire), ok=False)
            if self.noise.chunk_bytes(info.chunk_bytes) * 2 <= chunk:
                raise _Rechunk  # the line is much noisier than this frame size was chosen for
            if not budgets[fl.index].spend(silent):
                b = budgets[fl.index]
                raise SerialLinkError(
                    f"input chunk at offset {chunks[fl.index][0]} not acknowledged after {b.attempts} retries "
                    f"({b.silent} unanswered)", hint="the link loses too much; lower --baud or check the cable")
            fl.tx += 1
            fl.last_tx = time.monotonic()
            self._send(fl.wire, fr.T_SET_INPUT, first=False)

        self.stats.chunk_bytes[chunk] = self.stats.chunk_bytes.get(chunk, 0) + 1
        while base < len(chunks):
            while nxt < len(chunks) and nxt - base < window:
                seq = self._next_seq()
                off, part = chunks[nxt]
                fl = _Flight(nxt, fr.encode_frame(fr.T_SET_INPUT, seq, struct.pack("<I", off) + part), order)
                order += 1
                inflight[seq] = fl
                self._send(fl.wire, fr.T_SET_INPUT, first=True)
                nxt += 1
            f = self._get(time.monotonic() + self.timeout_s)
            if f is None:  # silence: everything in flight may be lost
                self.stats.timeouts += 1
                for fl in sorted(inflight.values(), key=lambda v: v.order):
                    resend(fl, silent=fl is min(inflight.values(), key=lambda v: v.order))
                continue
            if isinstance(f, BadFrame):  # probably the reply to the oldest frame, damaged
                oldest = min(inflight.values(), key=lambda v: v.order, default=None)
                if oldest is not None and self._fresh(fr.T_SET_INPUT, oldest.last_tx):
                    resend(oldest, silent=False)
                continue
            fl = inflight.get(f.seq)
            if fl is None:
                continue  # a stale reply (a duplicate ACK, a NAK of an old retransmission)
            if f.type == fr.T_ERROR:
                raise self._error(f)
            if f.type == fr.T_NAK:
                self.stats.naks += 1
                resend(fl, silent=False)
                continue
            if f.type != fr.T_ACK or len(f.payload) != 5 or f.payload[0] != fr.T_SET_INPUT or \
                    struct.unpack_from("<I", f.payload, 1)[0] != chunks[fl.index][0]:
                continue
            if fl.tx == 1:  # Karn: only unambiguous samples
                self._note_rtt(fr.T_SET_INPUT, time.monotonic() - fl.last_tx)
            self.noise.note(len(fl.wire), ok=True)
            del inflight[f.seq]
            acked[fl.index] = True
            for other in sorted(inflight.values(), key=lambda v: v.order):
                if other.order < fl.order and self._fresh(fr.T_SET_INPUT, other.last_tx):
                    resend(other, silent=False)  # sent before the one just acked, yet unanswered
            while base < len(chunks) and acked[base]:
                base += 1

    def _request(self, ftype: int, payload: bytes, want: int, *, long_wait: float = 0.0) -> Frame:
        """One request/reply exchange with retries; `long_wait` is the time allowed after the ACK.

        Every wait is bounded: by `timeout_s`, or after an ACK by `long_wait`, which callers set from
        inferences measured on this device (never more than `timeout_s` before one was measured). A
        device that acknowledges and then falls silent costs at most about timeout x (retries + 1)."""
        seq = self._next_seq()
        wire = fr.encode_frame(ftype, seq, payload)
        sent_at = first_at = time.monotonic()
        self._send(wire, ftype, first=True)
        budget = _Budget(self.retries)
        acked = False
        while True:
            # The device has it and is computing: wait for the inference, as long as one was measured to take.
            wait = max(long_wait, self.timeout_s) if acked else self.timeout_s
            deadline = time.monotonic() + wait
            silent = True
            while True:
                f = self._get(deadline)
                if f is None:
                    self.stats.timeouts += 1
                    break
                if isinstance(f, BadFrame):
                    if self._fresh(ftype, sent_at):
                        silent = False
                        break  # likely our reply, damaged: ask again now, not at the timeout
                    continue  # too early to answer our last transmission: stale
                if f.seq != seq:
                    continue  # stale reply to an earlier request
                if f.type == fr.T_NAK:
                    self.stats.naks += 1
                    silent = False
                    break
                if f.type == want:
                    if budget.attempts == 0 and not long_wait:
                        self._note_rtt(ftype, time.monotonic() - first_at)
                    return f
                if f.type == fr.T_ERROR:
                    raise self._error(f)
                if f.type == fr.T_ACK and long_wait and not acked:
                    acked = True  # the device has it and is computing: wait for the result
                    if budget.attempts == 0:
                        self._note_rtt(ftype, time.monotonic() - first_at)
                    deadline = time.monotonic() + max(long_wait, self.timeout_s)
            if not budget.spend(silent):
                break
            acked = acked and not silent  # after a silent long wait, stop assuming it is still busy
            sent_at = time.monotonic()
            self._send(wire, ftype, first=False)
        raise SerialLinkError(
            f"no {fr.TYPE_NAMES[want]} reply to {fr.TYPE_NAMES[ftype]} after {budget.attempts} retries "
            f"({budget.silent} unanswered)",
            hint="the device stopped answering: check it is powered and running, or lower --baud")

    def _note_rtt(self, ftype: int, sample: float) -> None:
        old = self._rtt.get(ftype)
        self._rtt[ftype] = sample if old is None else 0.8 * old + 0.2 * sample

    def _fresh(self, ftype: int, last_tx: float) -> bool:
        """Could a frame arriving now answer our transmission at `last_tx`? Not before about half a
        round trip: earlier damaged frames are leftovers of older traffic and must not trigger retries."""
        rtt = self._rtt.get(ftype)
        return rtt is None or time.monotonic() - last_tx >= 0.5 * rtt

    def _invoke_once(self) -> InvokeResult:
        # Before an inference was measured, --timeout bounds the wait (a retried INVOKE is answered from
        # the device's cache once it is done, so a slow first inference costs retries, not a wrong result).
        wait = 0.0 if self._invoke_s == 0 else min(self.invoke_timeout_s, 4 * self._invoke_s + 0.05)
        t0, retries0 = time.monotonic(), self.stats.retries
        f = self._request(fr.T_INVOKE, b"", fr.T_RESULT, long_wait=wait)
        if self.stats.retries == retries0:  # only clean exchanges tell how long an inference takes
            self._invoke_s = max(self._invoke_s, time.monotonic() - t0)
        if len(f.payload) < 12:
            raise SerialLinkError(f"device sent a RESULT of {len(f.payload)} bytes (at least 12 expected)",
                                  hint="firmware and host disagree on the protocol version")
        cycles, total = struct.unpack_from("<QI", f.payload)
        limit = self.info.output_bytes if self.info else 0
        if total != limit or len(f.payload) - 12 > total:
            # The size the device announced at HELLO (checked against the model by the caller) caps what
            # the host reads: a device claiming 0xFFFFFFFF bytes must not keep us reading forever.
            raise SerialLinkError(f"device announced a {total}-byte output (RESULT) but {limit} bytes at HELLO",
                                  hint="the firmware is corrupt or runs another model; rebuild and flash it")
        out = bytearray(f.payload[12:])
        while len(out) < total:
            g = self._request(fr.T_READ_OUTPUT, struct.pack("<I", len(out)), fr.T_OUTPUT)
            if len(g.payload) <= 8:
                raise SerialLinkError("device sent an empty OUTPUT page",
                                      hint="firmware and host disagree on the protocol version")
            off, page_total = struct.unpack_from("<II", g.payload)
            if off != len(out) or page_total != total or len(out) + len(g.payload) - 8 > total:
                raise SerialLinkError("device sent output pages out of order",
                                      hint="firmware and host disagree on the protocol version")
            out += g.payload[8:]
        return InvokeResult(bytes(out[:total]), int(cycles))

    def _profile_once(self) -> list[OpCycles]:
        wait = 0.0 if self._invoke_s == 0 else min(self.invoke_timeout_s, 8 * self._invoke_s + 0.05)
        ops: list[OpCycles] = []
        total = None
        while total is None or len(ops) < total:
            f = self._request(fr.T_PROFILE, struct.pack("<H", len(ops)), fr.T_PROFILE_PAGE,
                              long_wait=wait if not ops else 0.0)
            if len(f.payload) < 5:
                raise SerialLinkError("device sent a short PROFILE_PAGE",
                                      hint="firmware and host disagree on the protocol version")
            total, first, count = struct.unpack_from("<HHB", f.payload)
            if first != len(ops) or (count == 0 and len(ops) < total) or len(f.payload) < 5 + 10 * count \
                    or first + count > total:
                raise SerialLinkError("device sent profile pages out of order",
                                      hint="firmware and host disagree on the protocol version")
            for k in range(count):
                code, cyc = struct.unpack_from("<HQ", f.payload, 5 + 10 * k)
                ops.append(OpCycles(first + k, code, cyc))
        return ops
