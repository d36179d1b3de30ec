"""The exact minimum TFLite Micro arena of a model, found by probing sizes in child processes.

The runtime segfaults (rather than failing cleanly) on some too-small arenas, so each size is tried
in its own process. A generous first probe gives the recording allocator's breakdown (head = planned
non-persistent activations and scratch, tail = persistent: eval tensors, quantization data, kernel
op data); the minimum is then bracketed below that total and bisected to the byte. A size counts as
working only if it reproduces the generous run's outputs bit for bit on the same inputs.

Figures are for the 64-bit host runtime with reference kernels; a 32-bit Cortex-M build needs a
little less tail (smaller pointers), the head is the same.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..costs.graph import activation_floor_bytes, graph_from_tflite
from ..errors import ExportError
from ..tflite.model_info import inspect_tflite

PROBE = Path(__file__).with_name("_workers") / "arena_probe.py"
_TOTAL = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")
_KIND = re.compile(r"'([^']+)' used (\d+) bytes with alignment overhead \(requested (\d+) bytes for (\d+)")


@dataclass(frozen=True)
class Probe:
    arena_bytes: int
    ok: bool
    detail: str = ""


@dataclass
class ArenaReport:
    min_arena_bytes: int  # smallest arena that runs the model and reproduces its outputs
    head_bytes: int  # non-persistent: planned activations (+ kernel scratch)
    tail_bytes: int  # persistent: eval tensors, quantization params, op data, node structs
    recorded_total_bytes: int  # head + tail as the recording allocator reports it (= arena_used_bytes())
    floor_bytes: int  # analytic: largest live activation set of any op (costs.graph.activation_floor_bytes)
    breakdown: dict[str, dict[str, int]] = field(default_factory=dict)
    probes: list[Probe] = field(default_factory=list)
    runtime: str = "tflite-micro python runtime (x86-64, reference kernels)"

    @property
    def arena_over_floor(self) -> float:
        return self.min_arena_bytes / self.floor_bytes if self.floor_bytes else float("nan")

    @property
    def head_over_floor(self) -> float:
        return self.head_bytes / self.floor_bytes if self.floor_bytes else float("nan")

    @property
    def used_bytes_shortfall(self) -> int:
        """How far the recorded total (what `arena_used_bytes()` returns) falls short of the minimum."""
        return self.min_arena_bytes - self.recorded_total_bytes

    def to_dict(self) -> dict:
        d = asdict(self)
        d["probes"] = [asdict(p) for p in self.probes]
        d["arena_over_floor"] = round(self.arena_over_floor, 4)
        d["head_over_floor"] = round(self.head_over_floor, 4)
        d["used_bytes_shortfall"] = self.used_bytes_shortfall
        return d


def parse_allocations(stderr: str) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """Parse `print_allocations()` output: ({total, head, tail}, {kind: {used, requested, count}})."""
    totals = {k: int(v) for k, v in _TOTAL.findall(stderr)}
    kinds = {k: {"used_bytes": int(u), "requested_bytes": int(r), "count": int(c)}
             for k, u, r, c in _KIND.findall(stderr)}
    return totals, kinds


def _probe(model_path: Path, arena: int, inputs_path: Path, timeout_s: float) -> tuple[bool, str, str]:
    """Run one child; returns (ran, outputs_sha256 or error, stderr)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    try:
        r = subprocess.run([sys.executable, str(PROBE), str(model_path), str(arena), str(inputs_path)],
                           capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout_s:.0f} s", ""
    if r.returncode < 0:
        return False, f"killed by signal {-r.returncode}", r.stderr
    try:
        msg = json.loads(r.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return False, f"exit {r.returncode}: {r.stderr.strip()[-300:]}", r.stderr
    if not msg.get("ok"):
        return False, msg.get("error", "failed"), r.stderr
    return True, msg["outputs_sha256"], r.stderr


_INPUT_DTYPES = {"INT8": np.int8, "INT16": np.int16, "UINT8": np.uint8, "INT32": np.int32, "FLOAT32": np.float32}


def _random_inputs(info, num_inputs: int, seed: int) -> np.ndarray:
    """Seeded random samples of the model's input type over its whole range."""
    dtype = _INPUT_DTYPES.get(info.input.dtype)
    if dtype is None:
        raise ExportError(f"the model's input type {info.input.dtype} cannot be probed",
                          hint=f"inputs of type {', '.join(_INPUT_DTYPES)} are supported")
    rng = np.random.default_rng(seed)
    shape = (num_inputs, *info.input.shape[1:])
    if dtype is np.float32:
        return rng.standard_normal(shape).astype(np.float32)
    lim = np.iinfo(dtype)
    return rng.integers(lim.min, int(lim.max) + 1, size=shape, dtype=dtype)


def measure_arena(tflite_path: str | os.PathLike, *, inputs_int8: np.ndarray | None = None,
                  num_inputs: int = 4, seed: int = 0, max_probes: int = 24,
                  timeout_s: float = 120.0) -> ArenaReport:
    """Exact minimum arena (bytes) for `tflite_path` plus the head/tail breakdown and analytic floor.

    inputs_int8: samples (N x input shape, of the model's input type: int8, or int16 for a 16x8 model)
    run at every probe; random ones over the type's range from `seed` if None.
    """
    tflite_path = Path(tflite_path)
    info = inspect_tflite(tflite_path)
    floor = activation_floor_bytes(graph_from_tflite(info))
    if inputs_int8 is None:
        inputs_int8 = _random_inputs(info, num_inputs, seed)
    probes: list[Probe] = []
    with tempfile.TemporaryDirectory(prefix="ofa-arena-") as tmp:
        inputs_path = Path(tmp) / "inputs.npy"
        np.save(inputs_path, np.ascontiguousarray(inputs_int8, dtype=_INPUT_DTYPES.get(info.input.dtype, np.int8)))

        def run(arena: int, want: str | None) -> tuple[bool, str, str]:
            if len(probes) >= max_probes:
                raise ExportError(f"arena search for {tflite_path} did not converge in {max_probes} probes",
                                  hint="raise max_probes; the probe log is in the exception chain")
            ran, out, err = _probe(tflite_path, arena, inputs_path, timeout_s)
            ok = ran and (want is None or out == want)
            detail = "" if ok else (out if not ran else "ran but outputs differ from the generous arena")
            probes.append(Probe(arena, ok, detail))
            return ok, out, err

        generous = max(16 * info.model_bytes, 4 * floor, 1 << 20)
        ok, ref_hash, err = run(generous, None)
        if not ok:
            raise ExportError(f"TFLite Micro cannot run {tflite_path} even with a {generous} B arena: "
                              f"{probes[-1].detail}",
                              hint="check the op list (`inspect_tflite`) for ops TFLM lacks")
        totals, kinds = parse_allocations(err)
        if "total" not in totals:
            raise ExportError("the TFLite Micro runtime printed no allocation report",
                              hint="the tflite-micro package may have changed its print_allocations() format")
        recorded = totals["total"]

        hi = recorded
        step = 16
        while not run(hi, ref_hash)[0]:  # the recorded total may sit just under the true minimum
            hi += step
            step *= 2
        lo, step = hi - 16, 16
        while lo > 0 and run(lo, ref_hash)[0]:
            hi, lo, step = lo, lo - step * 2, step * 2
        lo = max(lo, 0)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if run(mid, ref_hash)[0]:
                hi = mid
            else:
                lo = mid
    return ArenaReport(min_arena_bytes=hi, head_bytes=totals.get("head", 0), tail_bytes=totals.get("tail", 0),
                       recorded_total_bytes=recorded, floor_bytes=floor, breakdown=kinds, probes=probes)

