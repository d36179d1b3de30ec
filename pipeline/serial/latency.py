"""Simulated per-op cycles for the virtual board, labelled `simulated` wherever they appear.

The cycles come from the project's latency model (pipeline.costs.latency: per-core, per-op-class
overhead + cycles per unit of work, CMSIS-NN coefficients or a board's fitted calibration). Should that
module be unavailable, a small MAC-based estimate stands in (figures derived from ../shared/ANCHORS.md:
Cortex-M7 ~4.6 cycles/MAC on mcunet-in2, Cortex-M4 ~3.7 on ResNet-8; depthwise twice a pointwise MAC).
Also here: the op class and work of a .tflite op in the terms the latency model fits (`op_class_work`),
and its multiply-accumulates (`op_macs`), from the export stage's model reader.
"""
from __future__ import annotations

import numpy as np

from ..tflite.model_info import ModelInfo, OpInfo

DEFAULT_CORE = "cortex-m4"
_FALLBACK_PER_MAC = {"cortex-m0plus": 11.0, "cortex-m3": 11.0, "cortex-m4": 3.7, "cortex-m7": 4.6,
                     "cortex-m33": 3.3, "cortex-m55": 0.9}
_FALLBACK_FACTOR = {"dw": 2.0, "add": 1.0, "pool": 1.0, "other": 0.2}
_FALLBACK_OVERHEAD = 3000


def op_shapes(model: ModelInfo, op: OpInfo) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """Shapes of the op's present inputs and of its outputs."""
    return ([t.shape for t in model.op_inputs(op) if t is not None], [t.shape for t in model.op_outputs(op)])


def op_macs(model: ModelInfo, op: OpInfo) -> int:
    """Multiply-accumulates of one op; element-wise and pooling ops count one per element they touch."""
    ins, outs = op_shapes(model, op)
    out = int(np.prod(outs[0])) if outs and outs[0] else 0
    if op.name == "CONV_2D" and len(ins) > 1:  # filter [Cout, kh, kw, Cin]
        return out * int(np.prod(ins[1][1:]))
    if op.name == "DEPTHWISE_CONV_2D" and len(ins) > 1:  # filter [1, kh, kw, Cout]
        return out * int(ins[1][1] * ins[1][2])
    if op.name == "FULLY_CONNECTED" and len(ins) > 1:  # weights [out, in]
        return out * int(ins[1][-1])
    if op.name in ("AVERAGE_POOL_2D", "MAX_POOL_2D") and "filterHeight" in op.options:
        return out * int(op.options["filterHeight"] * op.options["filterWidth"])
    if op.name in ("MEAN", "SUM", "REDUCE_MAX") and ins:
        return int(np.prod(ins[0]))
    return out


def model_macs(model: ModelInfo) -> int:
    return sum(op_macs(model, op) for op in model.ops)


def op_class_work(model: ModelInfo, op: OpInfo) -> tuple[str, int, int]:
    """(class, work, kernel) as pipeline.costs.latency counts them: MACs for conv/pw/dw/fc, input
    elements for pooling, output elements for the rest."""
    ins, outs = op_shapes(model, op)
    kernel = 1
    if op.name == "CONV_2D":
        kernel = int(ins[1][1]) if len(ins) > 1 and len(ins[1]) == 4 else 1
        cls = "pw" if kernel == 1 else "conv"
    else:
        cls = {"DEPTHWISE_CONV_2D": "dw", "FULLY_CONNECTED": "fc", "ADD": "add", "MEAN": "pool",
               "AVERAGE_POOL_2D": "pool"}.get(op.name, "other")
        if cls == "dw" and len(ins) > 1:
            kernel = int(ins[1][1])
    if cls in ("conv", "pw", "dw", "fc"):
        work = op_macs(model, op)
    elif cls == "pool":
        work = int(np.prod(ins[0])) if ins else 0
    else:
        work = int(np.prod(outs[0])) if outs else 0
    return cls, int(work), kernel


def model_op_cycles(model: ModelInfo, core: str = DEFAULT_CORE) -> list[tuple[int, int]]:
    """[(op_code, simulated cycles)] in execution order."""
    try:
        from ..costs.latency import default_latency_model
        lm = default_latency_model(core)
        cost = lambda cls, work: lm.op_cycles(cls, work)  # noqa: E731
    except Exception:  # noqa: BLE001 - the stand-in below keeps the virtual board usable
        per_mac = _FALLBACK_PER_MAC.get(core, _FALLBACK_PER_MAC[DEFAULT_CORE])
        cost = lambda cls, work: _FALLBACK_OVERHEAD + work * per_mac * _FALLBACK_FACTOR.get(cls, 1.0)  # noqa: E731
    out = []
    for op in model.ops:
        cls, work, _ = op_class_work(model, op)
        out.append((op.code, int(round(cost(cls, work)))))
    return out
