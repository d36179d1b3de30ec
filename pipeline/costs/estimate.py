"""`estimate(space, arch, board)`: SRAM, flash and latency of one arch on one board, without converting.

SRAM accounting (what `sram_bytes` holds and what the search compares with `board.usable_sram_bytes`,
which already excludes the board's `reserved_sram_bytes` for stack, heap and HAL state):

  sram_bytes = firmware arena + APP_SRAM_BYTES
  firmware arena = the kTensorArenaSize that ofa-mcu's codegen will write for the same model: the
                   32-bit CMSIS-NN replay on the board's core (`arena_bytes` with pointer_bytes=4)
                   + FIRMWARE_SLACK_BYTES (`costs.arena.firmware_arena_bytes`, shared with codegen).

`arena_bytes` is the replay for the requested pointer size: 4 -> the arena a CMSIS-NN firmware
really needs on the board's core; 8 -> the host runtime's minimum (what `measure_arena` reports).
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from ..supernet.space import SearchSpace, SubnetArch, layers
from .flash import APP_CODE_BYTES, model_bytes_from_counts, runtime_code_bytes
from .arena import firmware_arena_bytes
from .graph import DEFAULT_FC_PER_CHANNEL, Graph, graph_from_layers, live_activation_bytes, live_bytes_per_op
from .latency import OP_CLASSES, LatencyModel, load_calibration, op_class, op_work
from .memory import ALIGN, ArenaEstimate, arena_bytes, cmsis_scratch_bytes

# Firmware RAM outside the arena and outside the board's reserve: the MicroInterpreter object, the
# op resolver and profiler (~4 kB: MicroNets, MLSys 2021, "interpreter ~4 kB SRAM"), the protocol's
# rx/tx frame buffers (2 x ~280 B, firmware_templates/common/protocol.h) and its context.
APP_SRAM_BYTES = 5 * 1024

_KIND_CORE = {"none": "cortex-m0plus", "dsp": "cortex-m4", "mve": "cortex-m55"}


@dataclass(frozen=True)
class Costs:
    arena_bytes: int            # TFLM arena for the requested pointer size (4: Cortex-M, 8: host)
    sram_bytes: int             # firmware arena + app buffers (compare with board.usable_sram_bytes)
    model_bytes: int            # .tflite file
    flash_bytes: int            # model + TFLM runtime for the op set + app code
    latency_ms: float
    macs: int
    params: int
    arena_host_bytes: int       # 64-bit host runtime arena (what export's measure_arena reports)
    firmware_arena_bytes: int   # kTensorArenaSize the generated firmware will declare
    runtime_code_bytes: int
    cycles: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _ArchFacts:
    """What the cheap checks need, read straight off `layers()` (the graph is built only for the replay)."""
    model_bytes: int
    macs: int
    params: int
    op_count: int
    op_kinds: tuple[str, ...]
    cls_index: np.ndarray      # op class index per op
    work: np.ndarray           # work per op (MACs or elements, see latency.py)
    floor_bytes: int           # `activation_floor_bytes` of the graph: a lower bound of the planned head


_LAYER_OP = {"conv": "CONV_2D", "pw_expand": "CONV_2D", "pw_project": "CONV_2D", "dw": "DEPTHWISE_CONV_2D",
             "add": "ADD", "pool": "MEAN", "fc": "FULLY_CONNECTED"}
_CLS = {c: i for i, c in enumerate(OP_CLASSES)}


def _a16(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


@lru_cache(maxsize=65536)
def _layers(space: SearchSpace, arch: SubnetArch):
    return layers(space, arch)


@lru_cache(maxsize=65536)
def _facts(space: SearchSpace, arch: SubnetArch) -> _ArchFacts:
    # Mirrors graph.graph_from_layers (default styles) tensor for tensor without building it (the search
    # calls this for every candidate); tests/test_costs_memory.py checks that both give the same op
    # classes, work, model bytes, counts and activation floor (the same live_bytes_per_op sums both).
    net = _layers(space, arch)
    data = channels = 0
    n_tensors = 1
    cls, work = [], []
    macs = params = 0
    # Activation lifetimes in TFLM scopes (graph.tensor_lifetimes): the input at 0, op i at i + 1.
    sizes = [_a16(math.prod(net[0].in_shape))]
    firsts, lasts = [0], [0]
    layer_out: list[int] = []          # activation produced by each layer (index into sizes)
    cur = 0
    for layer in net:
        h, w, c = layer.out_shape
        ih, iw, cin = layer.in_shape
        out_b = _a16(h * w * c) if layer.kind not in ("pool", "fc") else _a16(c)
        kind = layer.kind
        macs += layer.macs
        params += layer.params
        if not (kind == "pool" and ih * iw == 1):
            scope = len(cls) + 1
            reads = [cur]
            if kind == "add":
                reads.append(0 if layer.residual_from == 0 else layer_out[layer.residual_from - 1])
            for t in reads:
                lasts[t] = scope
            sizes.append(out_b)
            firsts.append(scope)
            lasts.append(scope)
            cur = len(sizes) - 1
        layer_out.append(cur)
        if kind in ("conv", "pw_expand", "pw_project", "dw"):
            k = layer.kernel
            data += (k * k * c if kind == "dw" else c * k * k * cin) + 4 * c
            channels += 2 * c
            n_tensors += 3
            cls.append(_CLS["pw" if kind != "dw" and k == 1 else ("dw" if kind == "dw" else "conv")])
            work.append(layer.macs)
        elif kind == "add":
            n_tensors += 1
            cls.append(_CLS["add"])
            work.append(h * w * c)
        elif kind == "pool" and ih * iw == 1:
            continue            # the converter drops a mean over a 1x1 map
        elif kind == "pool":
            data += 8
            n_tensors += 2
            cls.append(_CLS["pool"])
            work.append(ih * iw * cin)
        elif kind == "fc":
            data += c * cin + 4 * c
            channels += 2 * c if DEFAULT_FC_PER_CHANNEL else 2
            n_tensors += 3
            cls.append(_CLS["fc"])
            work.append(layer.macs)
    kinds = tuple(sorted({_LAYER_OP[l.kind] for l in net
                          if not (l.kind == "pool" and l.in_shape[0] * l.in_shape[1] == 1)}))
    lasts[cur] = len(cls)              # the graph output lives to the end
    floor = max(live_bytes_per_op(sizes, firsts, lasts, len(cls)), default=0)
    return _ArchFacts(model_bytes_from_counts(data, channels, n_tensors, len(cls)), macs, params, len(cls),
                      kinds, np.array(cls, dtype=np.int64), np.array(work, dtype=np.float64), floor)


@lru_cache(maxsize=65536)
def _graph(space: SearchSpace, arch: SubnetArch) -> Graph:
    return graph_from_layers(_layers(space, arch))


@lru_cache(maxsize=65536)
def _host_arena(space: SearchSpace, arch: SubnetArch) -> ArenaEstimate:
    return arena_bytes(_graph(space, arch), pointer_bytes=8, runtime="host")


@lru_cache(maxsize=65536)
def _device_arena(space: SearchSpace, arch: SubnetArch, pointer_bytes: int, kind: str) -> int:
    """Replayed arena for a core kind (CMSIS-NN buffers depend only on the core's cmsis_nn_kernels)."""
    runtime = "cortex-m" if pointer_bytes == 4 else "host"
    return arena_bytes(_graph(space, arch), pointer_bytes=pointer_bytes, runtime=runtime, core=_KIND_CORE[kind]).total


def _latency_model(board, calibration) -> LatencyModel:
    if calibration is None or isinstance(calibration, (str, os.PathLike)):
        return _cached_calibration(board.core, board.id, None if calibration is None else str(calibration))
    return load_calibration(calibration, board.core, board.id)


@lru_cache(maxsize=256)
def _cached_calibration(core: str, board_id: str, calibration: str | None) -> LatencyModel:
    return load_calibration(calibration, core, board_id)


def quick_costs(space: SearchSpace, arch: SubnetArch, board, *, calibration: Any = None
                ) -> tuple[float, int, int]:
    """(latency ms, flash bytes, a lower bound of sram_bytes) without the arena replay (~10x cheaper).

    The search rejects most infeasible archs with these before paying for `estimate`."""
    f = _facts(space, arch)
    lat = _latency_model(board, calibration)
    o, u = lat.vectors()
    cycles = float(np.sum(o[f.cls_index] + u[f.cls_index] * f.work))
    flash = f.model_bytes + runtime_code_bytes(f.op_kinds, board.core) + APP_CODE_BYTES
    return cycles / board.clock_hz * 1e3, flash, f.floor_bytes + APP_SRAM_BYTES


def estimate(space: SearchSpace, arch: SubnetArch, board, *, pointer_bytes: int = 4,
             calibration: Any = None) -> Costs:
    """Predicted costs of `arch` on `board` (pure Python; cached per arch)."""
    f = _facts(space, arch)
    host = _host_arena(space, arch)
    kind = board.cmsis_nn_kernels  # boards/cores/<core>.yaml
    dev_arena = _device_arena(space, arch, pointer_bytes, kind)
    fw_arena = firmware_arena_bytes(dev_arena if pointer_bytes == 4 else _device_arena(space, arch, 4, kind))
    lat = _latency_model(board, calibration)
    o, u = lat.vectors()
    cycles = float(np.sum(o[f.cls_index] + u[f.cls_index] * f.work))
    runtime = runtime_code_bytes(f.op_kinds, board.core)
    return Costs(
        arena_bytes=dev_arena if pointer_bytes == 4 else host.total,
        sram_bytes=fw_arena + APP_SRAM_BYTES,
        model_bytes=f.model_bytes,
        flash_bytes=f.model_bytes + runtime + APP_CODE_BYTES,
        latency_ms=cycles / board.clock_hz * 1e3,
        macs=f.macs, params=f.params,
        arena_host_bytes=host.total,
        firmware_arena_bytes=fw_arena,
        runtime_code_bytes=runtime,
        cycles=int(round(cycles)))


def layer_costs(space: SearchSpace, arch: SubnetArch, board, *, calibration: Any = None) -> list[dict]:
    """Per-op breakdown: op, layer, shapes, MACs, params, cycles, ms, CMSIS-NN scratch, live bytes."""
    g = _graph(space, arch)
    lat = _latency_model(board, calibration)
    live = live_activation_bytes(g)
    rows = []
    for i, op in enumerate(g.ops):
        cls = op_class(g, op)
        cyc = lat.op_cycles(cls, op_work(g, op))
        layer = op.layer
        rows.append({
            "index": i, "op": op.kind, "class": cls, "name": layer.name if layer else "reshape",
            "in_shape": list(g.tensors[op.inputs[0]].shape), "out_shape": list(g.tensors[op.outputs[0]].shape),
            "kernel": layer.kernel if layer else 1, "stride": layer.stride if layer else 1,
            "macs": layer.macs if layer else 0, "params": layer.params if layer else 0,
            "cycles": int(round(cyc)), "ms": cyc / board.clock_hz * 1e3,
            "cmsis_scratch_bytes": cmsis_scratch_bytes(g, op, board.core),
            "live_activation_bytes": live[i]})
    return rows
