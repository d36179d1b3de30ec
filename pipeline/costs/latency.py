"""Latency: cycles per op from its shape, with per-core CMSIS-NN coefficients; ms from the board clock.

Each op falls in one class and costs `overhead + per_unit * work` cycles:

  class   ops                          work
  conv    CONV_2D with k > 1 (stem)     MACs
  pw      CONV_2D 1x1                   MACs
  dw      DEPTHWISE_CONV_2D             MACs
  fc      FULLY_CONNECTED               MACs
  add     ADD                           output elements
  pool    MEAN / AVERAGE_POOL_2D        input elements
  other   RESHAPE, ...                  output elements

Default coefficients (CMSIS-NN int8 kernels; derivations in ../../shared/ANCHORS.md 'Latency anchors'):
- Cortex-M4: MLPerf Tiny ResNet-8 (12.5 M MACs, 3x3 convs) with microTVM + CMSIS-NN on NUCLEO-L4R5ZI
  ran 390 ms at 120 MHz = 3.7 cycles/MAC -> conv 3.7. 1x1 convs skip im2col (arm_convolve_1x1_s8_fast):
  pw 3.0. Depthwise kernels cannot pair MACs as well (SMLAD over channels, strided loads): 2x pw.
- Cortex-M7: MCUNet mcunet-in2 (67.3 M MACs, ~80% pointwise, ~15% depthwise) with CMSIS-NN on
  STM32H743 at 480 MHz: 642 ms = 4.6 cycles/MAC for the whole model; pw 4.0, dw 8.0, conv 4.6 reproduce
  it (0.8*4.0 + 0.15*8.0 + 0.05*4.6 = 4.63). Memory wait states at 480 MHz explain the higher figure
  than on the M4.
- Cortex-M33: same DSP extension (SMLAD) as the M4; MLPerf Tiny ResNet-8 with X-CUBE-AI took
  109.5 ms on NUCLEO-U575ZI-Q (160 MHz, 1.40 cycles/MAC) vs 165 ms on the L4R5 (120 MHz, 1.58
  cycles/MAC): 0.89 x the M4 coefficients.
- Cortex-M0+: no DSP extension, so CMSIS-NN runs its portable C loops (one MAC = two byte loads,
  sign extension, a multiply and an add, ~9 instructions, 1-2 cycles each on the 2-stage pipeline):
  estimated 3 x the M4 per MAC. No public CMSIS-NN figure for the M0+ was found: calibrate.
- Cortex-M55: Helium (MVE) processes 16 int8 lanes per beat pair; Arm quotes up to 5x the M4's ML
  throughput (Arm Cortex-M55 product brief); taken as 0.25 x the M4 per MAC.
- Per-op overhead: TFLM's Invoke loop, the kernel's parameter set-up and the CMSIS-NN wrapper
  dispatch, about 2,000-4,000 cycles per op on an M4 (MicroNets, MLSys 2021: latency is linear in op
  count with a per-op intercept); 3,000 is used, scaled like the per-MAC figures.
These are starting points: `fit_latency` replaces them with per-board coefficients fitted to cycles
measured on the board (`ofa-mcu profile`), stored in a calibration JSON that `estimate` reads.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .._io import read_json, write_json
from ..errors import ArtifactError, ConfigError
from .graph import Graph

OP_CLASSES = ("conv", "pw", "dw", "fc", "add", "pool", "other")
CALIBRATION_VERSION = 1

_M4 = {"conv": (3000, 3.7), "pw": (3000, 3.0), "dw": (3000, 6.0), "fc": (2000, 3.0),
       "add": (2000, 4.0), "pool": (2000, 3.0), "other": (500, 0.5)}


def _scaled(table: Mapping[str, tuple[float, float]], f_unit: float, f_over: float,
            unit_overrides: Mapping[str, float] | None = None) -> dict[str, tuple[float, float]]:
    out = {k: (o * f_over, u * f_unit) for k, (o, u) in table.items()}
    for k, u in (unit_overrides or {}).items():
        out[k] = (out[k][0], u)
    return out


# core -> class -> (overhead cycles, cycles per unit of work)
DEFAULT_COEFFICIENTS: dict[str, dict[str, tuple[float, float]]] = {
    "cortex-m4": dict(_M4),
    "cortex-m7": _scaled(_M4, 1.0, 1.0, {"conv": 4.6, "pw": 4.0, "dw": 8.0, "fc": 4.0}),
    "cortex-m33": _scaled(_M4, 0.89, 0.89),
    "cortex-m3": _scaled(_M4, 3.0, 1.2),
    "cortex-m0plus": _scaled(_M4, 3.0, 1.5),
    "cortex-m55": _scaled(_M4, 0.25, 0.8),
}


def op_class(op) -> str:
    if op.kind == "CONV_2D":
        return "pw" if op.layer is not None and op.layer.kernel == 1 else "conv"
    return {"DEPTHWISE_CONV_2D": "dw", "FULLY_CONNECTED": "fc", "ADD": "add", "MEAN": "pool",
            "AVERAGE_POOL_2D": "pool"}.get(op.kind, "other")


def op_work(graph: Graph, op) -> int:
    """MACs for conv-like ops, elements for the rest."""
    cls = op_class(op)
    if cls in ("conv", "pw", "dw", "fc"):
        return int(op.layer.macs)
    shape = graph.tensors[op.inputs[0] if cls == "pool" else op.outputs[0]].shape
    return int(math.prod(shape))


@dataclass(frozen=True)
class LatencyModel:
    """Per-class (overhead, per-unit) cycle coefficients for one board or core."""
    core: str
    coefficients: Mapping[str, tuple[float, float]]
    source: str = "default"
    board: str | None = None
    fit: Mapping[str, Any] = field(default_factory=dict)

    def op_cycles(self, cls: str, work: float) -> float:
        o, u = self.coefficients.get(cls, self.coefficients["other"])
        return o + u * work

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        o = np.array([self.coefficients[c][0] for c in OP_CLASSES], dtype=np.float64)
        u = np.array([self.coefficients[c][1] for c in OP_CLASSES], dtype=np.float64)
        return o, u

    def to_dict(self) -> dict:
        return {"version": CALIBRATION_VERSION, "board": self.board, "core": self.core, "source": self.source,
                "coefficients": {k: {"overhead_cycles": float(o), "cycles_per_unit": float(u)}
                                 for k, (o, u) in self.coefficients.items()},
                "fit": dict(self.fit)}

    @classmethod
    def from_dict(cls, d: Mapping) -> "LatencyModel":
        try:
            coeffs = {k: (float(v["overhead_cycles"]), float(v["cycles_per_unit"]))
                      for k, v in d["coefficients"].items()}
            core = d["core"]
        except (KeyError, TypeError, ValueError) as e:
            raise ArtifactError(f"latency calibration is malformed ({e})",
                                hint="regenerate it with `ofa-mcu profile` or pipeline.costs.fit_latency") from None
        unknown = set(coeffs) - set(OP_CLASSES)
        if unknown:
            raise ArtifactError(f"latency calibration names unknown op classes {sorted(unknown)}",
                                hint=f"known classes: {list(OP_CLASSES)}")
        base = dict(DEFAULT_COEFFICIENTS.get(core, DEFAULT_COEFFICIENTS["cortex-m4"]))
        base.update(coeffs)
        return cls(core, base, d.get("source", "calibration"), d.get("board"), d.get("fit", {}))


def default_latency_model(core: str, board: str | None = None) -> LatencyModel:
    if core not in DEFAULT_COEFFICIENTS:
        raise ConfigError(f"no latency coefficients for core '{core}'",
                          hint=f"known cores: {sorted(DEFAULT_COEFFICIENTS)}")
    return LatencyModel(core, dict(DEFAULT_COEFFICIENTS[core]), "default", board)


def load_calibration(calibration: "str | Path | Mapping | LatencyModel | None", core: str,
                     board: str | None = None) -> LatencyModel:
    """A LatencyModel from a calibration file, dict or model; the core's defaults when None."""
    if calibration is None:
        return default_latency_model(core, board)
    if isinstance(calibration, LatencyModel):
        model = calibration
    elif isinstance(calibration, Mapping):
        model = LatencyModel.from_dict(calibration)
    else:
        model = LatencyModel.from_dict(read_json(calibration))
    if model.core != core:
        raise ConfigError(f"latency calibration is for core '{model.core}' (board {model.board}), "
                          f"but the board has a '{core}'",
                          hint="use the calibration file written for this board")
    return model


def save_calibration(model: LatencyModel, path: str | Path) -> Path:
    return write_json(path, model.to_dict())


def _row_class_and_work(row: Mapping) -> tuple[str, float]:
    if "class" in row:
        cls = row["class"]
    else:
        op = str(row.get("op", "")).upper()
        if op == "CONV_2D":
            cls = "pw" if int(row.get("kernel", 1)) == 1 else "conv"
        else:
            cls = {"DEPTHWISE_CONV_2D": "dw", "FULLY_CONNECTED": "fc", "ADD": "add", "MEAN": "pool",
                   "AVERAGE_POOL_2D": "pool"}.get(op, "other")
    if cls not in OP_CLASSES:
        raise ConfigError(f"measurement row has unknown op class {cls!r}", hint=f"known: {list(OP_CLASSES)}")
    if cls in ("conv", "pw", "dw", "fc"):
        work = row.get("macs")
    else:
        work = row.get("elements", row.get("macs"))
    if work is None:
        raise ConfigError(f"measurement row {dict(row)} has no 'macs' / 'elements'")
    return cls, float(work)


def fit_latency(measurements: Iterable[Mapping], board, *, min_rows: int = 2) -> LatencyModel:
    """Least-squares fit of (overhead, per-unit) cycles per op class from measured per-op cycles.

    Rows: {"op": TFLite builtin name, "kernel": k (CONV_2D), "macs" or "elements": work, "cycles": n}
    (or {"class": ..., ...}). Classes with fewer than `min_rows` rows, or whose work never varies,
    keep the core default for the missing part (overhead kept, slope fitted through it).
    """
    core = board.core
    base = dict(DEFAULT_COEFFICIENTS.get(core, DEFAULT_COEFFICIENTS["cortex-m4"]))
    by_cls: dict[str, list[tuple[float, float]]] = {}
    n = 0
    for row in measurements:
        cls, work = _row_class_and_work(row)
        if "cycles" not in row:
            raise ConfigError(f"measurement row {dict(row)} has no 'cycles'")
        by_cls.setdefault(cls, []).append((work, float(row["cycles"])))
        n += 1
    if n == 0:
        raise ConfigError("no latency measurements to fit", hint="run `ofa-mcu profile` on the board first")
    coeffs = dict(base)
    report: dict[str, Any] = {"rows": n, "classes": {}}
    for cls, rows in by_cls.items():
        w = np.array([r[0] for r in rows])
        c = np.array([r[1] for r in rows])
        if len(rows) >= min_rows and np.ptp(w) > 0:
            A = np.stack([np.ones_like(w), w], axis=1)
            (o, u), *_ = np.linalg.lstsq(A, c, rcond=None)
            if o < 0:   # a negative intercept is noise; refit through the origin
                o, u = 0.0, float(np.dot(w, c) / np.dot(w, w))
        else:
            o = base[cls][0]
            u = float(np.sum(c - o) / max(np.sum(w), 1e-12))
        pred = o + u * w
        rel = float(np.sqrt(np.mean(((pred - c) / np.maximum(c, 1.0)) ** 2)))
        coeffs[cls] = (float(o), float(u))
        report["classes"][cls] = {"rows": len(rows), "rms_relative_error": rel}
    return LatencyModel(core, coeffs, "fit", board.id, report)


def graph_cycles(graph: Graph, model: LatencyModel) -> list[float]:
    return [model.op_cycles(op_class(op), op_work(graph, op)) for op in graph.ops]


def profile_rows(graph: Graph, cycles_per_op: Sequence[float]) -> list[dict]:
    """Measurement rows for `fit_latency` from one profile (cycles per op, in graph op order)."""
    if len(cycles_per_op) != len(graph.ops):
        raise ConfigError(f"profile has {len(cycles_per_op)} ops but the model has {len(graph.ops)}",
                          hint="profile the model exported for this arch")
    rows = []
    for op, cyc in zip(graph.ops, cycles_per_op):
        cls = op_class(op)
        work = op_work(graph, op)
        key = "macs" if cls in ("conv", "pw", "dw", "fc") else "elements"
        rows.append({"op": op.kind, "class": cls, "kernel": op.layer.kernel if op.layer else 1,
                     key: work, "cycles": float(cyc)})
    return rows
