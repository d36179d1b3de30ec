"""Serial link efficiency: the ofa-mcu binary protocol vs an MLPerf Tiny-style hex text protocol.

Link efficiency = payload bytes per second / (baud / 10), i.e. the share of the line's raw byte rate that
carries input data. Both protocols run over the same virtual-board link (pipeline.serial.sim.PacedLink):
a pseudo-terminal paced at 10 bits per byte in each direction, with a fixed turnaround added to every
device reply (USB full-speed serial adapters add about 1 ms per round trip). Each device runs in its own
process, as a board would.

Baseline, as documented in ../shared/ANCHORS.md for mlcommons/tiny's runner: text commands ending in `%`,
`db load N%` then `db <hex>%` carrying 31 bytes each, every command answered and followed by `m-ready`,
which the host waits for before the next command. The input is 3072 bytes (MLPerf Tiny's 32x32x3 image
classification input); the model is a tiny int8 network of that input size.

    .venv/bin/python benchmarks/bench_link.py [--samples 10] [--bauds 115200 921600] [--turnaround-ms 1]
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from pipeline._io import write_json  # noqa: E402
from pipeline.serial.sim import PacedLink, SimOptions  # noqa: E402

HEX_BYTES_PER_COMMAND = 31
TARGET_EFFICIENCY = 0.8
TARGET_RATIO = 1.7
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


# ---------------------------------------------------------------- the hex-protocol device (baseline)

class HexDbDevice:
    """Benchmark fixture: a device speaking the MLPerf Tiny text protocol for input load and inference."""

    def __init__(self, write, runner, input_bytes: int, out_scale: float, out_zp: int):
        self.write, self.runner = write, runner
        self.input_bytes, self.out_scale, self.out_zp = input_bytes, out_scale, out_zp
        self.line = bytearray()
        self.buf = bytearray()
        self.expect = 0

    def reset(self) -> None:
        self.line.clear()
        self.buf.clear()
        self.write(b"m-timestamp-mode-performance\r\nm-init-done\r\nm-ready\r\n")

    def feed(self, data: bytes) -> None:
        for b in data:
            if b == ord("%"):
                self.write(self._handle(self.line.decode("ascii", "replace").strip()) + b"m-ready\r\n")
                self.line.clear()
            else:
                self.line.append(b)

    def _handle(self, cmd: str) -> bytes:
        parts = cmd.split()
        if parts[:1] == ["name"]:
            return b"m-name-dut-[ofa-mcu hex baseline]\r\n"
        if parts[:2] == ["db", "load"] and len(parts) == 3:
            self.expect, self.buf = int(parts[2]), bytearray()
            return f"m-[Expecting {self.expect} bytes]\r\n".encode()
        if parts[:1] == ["db"] and len(parts) == 2:
            hexs = parts[1]
            if len(hexs) % 2:
                return b"e-[Insufficent number of hex digits]\r\n"
            self.buf += bytes.fromhex(hexs)
            return b"m-load-done\r\n" if len(self.buf) >= self.expect else b""
        if parts[:1] == ["infer"]:
            out = np.frombuffer(self.runner.run(bytes(self.buf[:self.input_bytes])), np.int8)
            vals = ",".join(f"{(int(v) - self.out_zp) * self.out_scale:.3f}" for v in out)
            return f"m-infer-done\r\nm-results-[{vals}]\r\n".encode()
        return f"e-[Unknown command: {cmd}]\r\n".encode()


class HexLink(PacedLink):
    frame_end = ord("%")

    def __init__(self, model_path, options: SimOptions):
        super().__init__(options)
        from pipeline.tflite.model_info import inspect_tflite
        from pipeline.serial.reference import TflmRunner
        self.model = inspect_tflite(model_path)
        self.runner = TflmRunner(model_path, self.model)

    def _make_device(self):
        dev = HexDbDevice(self._device_write, self.runner, self.model.input.nbytes, self.model.output.scale,
                          self.model.output.zero_point)
        dev.reset()
        return dev


def serve_hex(model: str, baud: int, turnaround_ms: float) -> None:
    link = HexLink(model, SimOptions(baud=baud, turnaround_ms=turnaround_ms))
    print(link.start(), flush=True)
    try:
        while True:
            time.sleep(0.5)
            if link.error:
                raise link.error
    finally:
        link.stop()


# ---------------------------------------------------------------- hosts

def _start(cmd: list[str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    path = proc.stdout.readline().strip()
    if not path.startswith("/dev/"):
        proc.kill()
        raise RuntimeError(f"device did not start: {cmd}")
    return proc, path


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def run_binary(model: Path, baud: int, turnaround_ms: float, window: int, inputs: list[bytes]) -> dict:
    import serial

    from pipeline.serial.client import ProtocolClient
    proc, path = _start([sys.executable, "-m", "pipeline.cli", "board-sim", "--model", str(model), "--baud",
                         str(baud), "--turnaround-ms", str(turnaround_ms), "--window", str(window)])
    try:
        client = ProtocolClient(serial.Serial(path, baud), timeout_s=1.0)
        info = client.hello()
        t_in = t_all = 0.0
        outputs = []
        for x in inputs:
            t0 = time.perf_counter()
            client.send_input(x)
            t1 = time.perf_counter()
            outputs.append(client.invoke().output)
            t2 = time.perf_counter()
            t_in, t_all = t_in + t1 - t0, t_all + t2 - t0
        stats = client.stats.to_dict()
        client.close()
    finally:
        _stop(proc)
    return {"protocol": "ofa-mcu binary", "window": info.window, "chunk_bytes": info.chunk_bytes,
            "input_s": t_in, "sample_s": t_all, "outputs": outputs, "retries": stats["retries"],
            "wire_bytes_host_to_device": stats["bytes_sent"]}


def run_hex(model: Path, baud: int, turnaround_ms: float, inputs: list[bytes]) -> dict:
    import serial
    proc, path = _start([sys.executable, str(Path(__file__).resolve()), "--serve-hex", "--model", str(model),
                         "--baud", str(baud), "--turnaround-ms", str(turnaround_ms)])
    try:
        port = serial.Serial(path, baud, timeout=10)
        sent = 0

        def command(text: str) -> bytes:
            nonlocal sent
            data = text.encode() + b"%"
            port.write(data)
            sent += len(data)
            reply = port.read_until(b"m-ready\r\n")
            if not reply.endswith(b"m-ready\r\n"):
                raise RuntimeError(f"no m-ready after {text[:20]!r}")
            return reply

        port.read_until(b"m-ready\r\n")  # boot banner
        command("name")
        t_in = t_all = 0.0
        results = []
        for x in inputs:
            t0 = time.perf_counter()
            command(f"db load {len(x)}")
            for off in range(0, len(x), HEX_BYTES_PER_COMMAND):
                command("db " + x[off:off + HEX_BYTES_PER_COMMAND].hex())
            t1 = time.perf_counter()
            reply = command("infer 1 0")
            t2 = time.perf_counter()
            results.append(reply.split(b"m-results-[")[1].split(b"]")[0].decode())
            t_in, t_all = t_in + t1 - t0, t_all + t2 - t0
        port.close()
    finally:
        _stop(proc)
    return {"protocol": "hex text (MLPerf Tiny db style)", "window": 1, "chunk_bytes": HEX_BYTES_PER_COMMAND,
            "input_s": t_in, "sample_s": t_all, "results": results, "retries": 0,
            "wire_bytes_host_to_device": sent}


# ---------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--bauds", type=int, nargs="+", default=[115200, 921600])
    ap.add_argument("--turnaround-ms", type=float, default=1.0)
    ap.add_argument("--window", type=int, default=8, help="SET_INPUT frames in flight (also runs 4 and 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE / "results" / "bench_link.json"))
    ap.add_argument("--serve-hex", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--baud", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve_hex:
        serve_hex(args.model, args.baud, args.turnaround_ms)
        return 0

    import torch
    torch.set_num_threads(1)  # not used for compute here; recorded as every benchmark does
    from tiny_models import make_tiny_int8_tflite

    tmp = Path(tempfile.mkdtemp(prefix="bench_link-"))
    model, _ = make_tiny_int8_tflite(tmp / "model_int8.tflite", resolution=32, channels=3, num_classes=10,
                                     seed=args.seed)
    from pipeline.tflite.model_info import inspect_tflite
    info = inspect_tflite(model)
    rng = np.random.default_rng(args.seed)
    inputs = [rng.integers(-128, 128, size=info.input.nbytes, dtype=np.int8).tobytes() for _ in range(args.samples)]
    out_bytes = info.output.nbytes

    rows, targets = [], []
    for baud in args.bauds:
        line_bps = baud / 10
        windows = sorted({args.window, 4, 1}, reverse=True)
        runs = [run_binary(model, baud, args.turnaround_ms, w, inputs) for w in windows]
        runs.append(run_hex(model, baud, args.turnaround_ms, inputs))
        # Same outputs both ways: the hex results are the binary logits, dequantized.
        ref = [np.frombuffer(o, np.int8) for o in runs[0]["outputs"]]
        for o, r in zip(ref, runs[-1]["results"]):
            vals = [(int(v) - info.output.zero_point) * info.output.scale for v in o]
            assert r == ",".join(f"{v:.3f}" for v in vals), "hex and binary devices disagree"
        assert all(r["outputs"] == runs[0]["outputs"] for r in runs[:-1])
        for r in runs:
            payload_in = info.input.nbytes * args.samples
            r.update(baud=baud, turnaround_ms=args.turnaround_ms, samples=args.samples,
                     input_bytes=info.input.nbytes, output_bytes=out_bytes,
                     input_efficiency=payload_in / r["input_s"] / line_bps,
                     sample_efficiency=(payload_in + out_bytes * args.samples) / r["sample_s"] / line_bps,
                     input_ms_per_sample=1e3 * r["input_s"] / args.samples,
                     sample_ms_per_sample=1e3 * r["sample_s"] / args.samples)
            r.pop("outputs", None)
            r.pop("results", None)
            rows.append(r)
        best, hexr = runs[0], runs[-1]
        ratio = best["input_efficiency"] / hexr["input_efficiency"]
        targets += [
            {"metric": f"link efficiency, input transfer, {baud} baud, window {best['window']} "
                       f"(turnaround {args.turnaround_ms:g} ms)",
             "baseline": round(hexr["input_efficiency"], 3), "measured": round(best["input_efficiency"], 3),
             "target": TARGET_EFFICIENCY, "ratio": round(ratio, 2),
             "met": best["input_efficiency"] >= TARGET_EFFICIENCY and ratio >= TARGET_RATIO},
        ]

    head = ("baud", "protocol", "window", "input ms/sample", "input eff.", "sample ms", "sample eff.")
    table = [head] + [(str(r["baud"]), r["protocol"], str(r["window"]), f"{r['input_ms_per_sample']:.1f}",
                       f"{r['input_efficiency']:.3f}", f"{r['sample_ms_per_sample']:.1f}",
                       f"{r['sample_efficiency']:.3f}") for r in rows]
    widths = [max(len(t[i]) for t in table) for i in range(len(head))]
    for t in table:
        print("  ".join(c.ljust(w) for c, w in zip(t, widths)))
    for t in targets:
        print(f"{t['metric']}: {t['measured']} vs hex {t['baseline']} -> {t['ratio']}x "
              f"({'met' if t['met'] else 'NOT met'}: >= {TARGET_EFFICIENCY} and >= {TARGET_RATIO}x)")
    write_json(args.out, {
        "benchmark": "bench_link", "definition": "payload bytes/s / (baud/10); input = SET_INPUT or db phase; "
                                                  "sample = input + inference + output",
        "turnaround_ms": args.turnaround_ms, "bits_per_byte": 10, "model_input_bytes": info.input.nbytes,
        "model_output_bytes": out_bytes, "rows": rows, "targets": targets,
        "torch_threads": torch.get_num_threads(), "nproc": os.cpu_count(), "machine": platform.machine(),
        "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")})
    return 0 if all(t["met"] for t in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
