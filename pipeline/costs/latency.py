"""Latency: cycles per op from its shape, with per-core TFLM + CMSIS-NN coefficients; ms from the board clock.

Each op falls in one class and costs `overhead + per_unit * work` cycles (`op_cycles`, the one per-op
function: `estimate` applies it to an arch's graph, `inspect_model` to any .tflite's graph):

  class   ops                                   work
  conv    CONV_2D with a kernel larger than 1x1 MACs
  pw      CONV_2D 1x1                           MACs
  dw      DEPTHWISE_CONV_2D                     MACs
  fc      FULLY_CONNECTED                       MACs
  add     ADD, SUB, MUL                         output elements
  pool    MEAN, AVERAGE_POOL_2D, MAX_POOL_2D    input elements
  other   RESHAPE, SOFTMAX, QUANTIZE, ...       output elements

Default coefficients come from published measurements, committed as data in `latency_published.yaml`
(model, board, MCU, clock, runtime, latency, MLPerf Tiny round and path) and fitted by `fit_published`:

1. Cortex-M4, TFLite Micro + CMSIS-NN: the four MLPerf Tiny v0.5 reference latencies on NUCLEO-L4R5ZI
   (120 MHz). Fitted: cycles per MAC of convolutions (conv and pw share one figure) and of fully
   connected ops, by least squares on the relative error. Fixed priors (not identifiable from four
   whole-model figures; sources in the YAML): per-op overheads, depthwise = 2.31 x conv per MAC, and
   per-element costs of add/pool/other, which are below 1 % of every calibration model's cycles.
2. Other cores: the M4 coefficients times a core factor, the geometric mean over every (runtime,
   model) published on an M4 part and on a part with that core (Plumerai, Bosch HALE, X-CUBE-AI:
   cycles = latency x clock). No TFLM figure exists for them on a shipped board; the factor assumes
   TFLM's kernels gain what the other runtimes gain on that core. Cortex-M3 and M55 have no
   published pair: priors, named in the YAML.

Out of sample, a 2022 TFLM + CMSIS-NN on a Cortex-M33 (Renesas EK-RA6M4, MLPerf Tiny v0.7, in the YAML
but not fitted) ran 1.1-1.9x faster than these defaults predict: CMSIS-NN's kernels improved after TFLM
2.3.1, so for the pinned TFLM the defaults err on the slow side (benchmarks/README.md).

`fit_latency` replaces the defaults with per-board coefficients fitted to per-op cycles measured on the
board (`ofa-mcu profile`), stored in a calibration JSON that `estimate` reads.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .._io import read_json, write_json
from ..errors import ArtifactError, ConfigError
from .graph import Graph, op_geometry

OP_CLASSES = ("conv", "pw", "dw", "fc", "add", "pool", "other")
CALIBRATION_VERSION = 1
PUBLISHED = Path(__file__).with_name("latency_published.yaml")
MAC_CLASSES = ("conv", "pw", "dw", "fc")


@lru_cache(maxsize=1)
def published_data() -> dict:
    import yaml
    return yaml.safe_load(PUBLISHED.read_text())


def _model_terms(classes: Mapping[str, Sequence[int]], priors: Mapping, factor: float = 1.0
                 ) -> tuple[float, float, float]:
    """Cycles of one model as (coefficient of u_mac, coefficient of u_fc, fixed part) on the M4."""
    over = priors["overhead_cycles_m4"]
    a = f = b = 0.0
    for cls, (n_ops, work) in classes.items():
        b += over[cls] * n_ops
        if cls in ("conv", "pw"):
            a += work
        elif cls == "dw":
            a += priors["dw_over_conv_per_mac"] * work
        elif cls == "fc":
            f += work
        else:
            b += priors[f"{cls}_cycles_per_element"] * work
    return a * factor, f * factor, b * factor


def _fit_m4(points: list[tuple[tuple[float, float, float], float]], tie_fc: bool) -> tuple[float, float]:
    """(u_mac, u_fc) minimising the squared relative error over (terms, published cycles) points."""
    rows, rhs = [], []
    for (a, f, b), cyc in points:
        rows.append([a / cyc + (f / cyc if tie_fc else 0.0)] + ([] if tie_fc else [f / cyc]))
        rhs.append(1.0 - b / cyc)
    sol, *_ = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)
    return (float(sol[0]), float(sol[0])) if tie_fc else (float(sol[0]), float(sol[1]))


def m4_table(u_mac: float, u_fc: float, priors: Mapping) -> dict[str, tuple[float, float]]:
    over = priors["overhead_cycles_m4"]
    per = {"conv": u_mac, "pw": u_mac, "dw": priors["dw_over_conv_per_mac"] * u_mac, "fc": u_fc,
           "add": priors["add_cycles_per_element"], "pool": priors["pool_cycles_per_element"],
           "other": priors["other_cycles_per_element"]}
    return {c: (float(over[c]), float(per[c])) for c in OP_CLASSES}


def fit_published(data: Mapping | None = None) -> dict:
    """The per-core coefficients from the published measurements (see the module docstring).

    Returns {"coefficients": {core: {class: (overhead, per_unit)}}, "core_factor": {core: f},
    "m4_fit": {...}, "leave_one_out": [...]}: the last two say what was fitted on what."""
    data = data or published_data()
    models, priors = data["models"], data["priors"]
    meas = data["measurements"]
    tflm = [m for m in meas if m["tflm_based"] and m["core"] == "cortex-m4"]
    points = [(_model_terms(models[m["model"]]["classes"], priors), m["latency_ms"] * 1e-3 * m["clock_hz"])
              for m in tflm]
    u_mac, u_fc = _fit_m4(points, tie_fc=False)
    loo = []
    for i, m in enumerate(tflm):
        rest = points[:i] + points[i + 1:]
        fc_identified = any(p[0][1] > 0.02 * (p[0][0] + p[0][1]) for p in rest)
        um, uf = _fit_m4(rest, tie_fc=not fc_identified)
        (a, f, b), cyc = points[i]
        loo.append({"model": m["model"], "ratio": round((um * a + uf * f + b) / cyc, 4),
                    "u_fc": "fitted" if fc_identified else "tied to u_mac (no FC-dominated model left)"})
    # Cross-core factors: cycles on a core / cycles on the M4 part, same runtime and model.
    base = {(m["runtime"], m["model"]): m["latency_ms"] * m["clock_hz"] for m in meas
            if m["core"] == "cortex-m4" and not m["tflm_based"]}
    logs: dict[str, list[float]] = {}
    for m in meas:
        key = (m["runtime"], m["model"])
        if m["core"] != "cortex-m4" and key in base:
            logs.setdefault(m["core"], []).append(math.log(m["latency_ms"] * m["clock_hz"] / base[key]))
    factor = {"cortex-m4": 1.0}
    factor.update({c: round(math.exp(sum(v) / len(v)), 4) for c, v in sorted(logs.items())})
    factor.setdefault("cortex-m3", float(priors["cortex-m3_factor"]))
    factor.setdefault("cortex-m55", float(priors["cortex-m55_factor"]))
    m4 = m4_table(round(u_mac, 4), round(u_fc, 4), priors)
    coeffs = {core: {c: (round(o * f, 1), round(u * f, 4)) for c, (o, u) in m4.items()}
              for core, f in factor.items()}
    return {"coefficients": coeffs, "core_factor": factor,
            "m4_fit": {"u_mac": round(u_mac, 4), "u_fc": round(u_fc, 4), "points": len(points)},
            "leave_one_out": loo}


def write_published_fit(fit: Mapping, path: str | Path = PUBLISHED) -> Path:
    """Rewrite the `coefficients` / `core_factor` sections (the file's tail) with `fit`, atomically."""
    from .._io import write_text
    text = Path(path).read_text()
    head = text[:text.index("\ncoefficients:\n") + 1]
    lines = ["coefficients:"]
    for core in sorted(fit["coefficients"]):
        cells = ", ".join(f"{c}: [{o}, {u}]" for c, (o, u) in fit["coefficients"][core].items())
        lines.append(f"  {core}: {{{cells}}}")
    lines.append("core_factor: {" + ", ".join(f"{c}: {f}" for c, f in sorted(fit["core_factor"].items())) + "}")
    m = fit["m4_fit"]
    lines.append(f"m4_fit: {{u_mac: {m['u_mac']}, u_fc: {m['u_fc']}, points: {m['points']}}}")
    lines.append("leave_one_out_ratio: {" + ", ".join(f"{r['model']}: {r['ratio']}" for r in fit["leave_one_out"])
                 + "}  # estimate / published with that model left out of the M4 fit")
    return write_text(path, head + "\n".join(lines) + "\n")


def _committed() -> dict[str, dict[str, tuple[float, float]]]:
    d = published_data()
    return {core: {c: (float(v[0]), float(v[1])) for c, v in table.items()}
            for core, table in d["coefficients"].items()}


# core -> class -> (overhead cycles, cycles per unit of work), as committed in latency_published.yaml
DEFAULT_COEFFICIENTS: dict[str, dict[str, tuple[float, float]]] = _committed()


_KIND_CLASS = {"DEPTHWISE_CONV_2D": "dw", "FULLY_CONNECTED": "fc", "ADD": "add", "SUB": "add", "MUL": "add",
               "MEAN": "pool", "AVERAGE_POOL_2D": "pool", "MAX_POOL_2D": "pool"}


def op_class(graph: Graph, op) -> str:
    """The latency class of one op, from its tensors (the same for supernet and .tflite graphs)."""
    if op.kind == "CONV_2D":
        flt = graph.tensors[op.inputs[1]].shape
        return "pw" if len(flt) == 4 and flt[1] == 1 and flt[2] == 1 else "conv"
    return _KIND_CLASS.get(op.kind, "other")


def op_work(graph: Graph, op) -> int:
    """MACs for conv-like ops (`graph.op_geometry`), input elements for pooling, output elements else."""
    cls = op_class(graph, op)
    if cls in ("conv", "pw", "dw", "fc"):
        return int(op_geometry(graph, op).macs)
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
    return [model.op_cycles(op_class(graph, op), op_work(graph, op)) for op in graph.ops]


def profile_rows(graph: Graph, cycles_per_op: Sequence[float]) -> list[dict]:
    """Measurement rows for `fit_latency` from one profile (cycles per op, in graph op order)."""
    if len(cycles_per_op) != len(graph.ops):
        raise ConfigError(f"profile has {len(cycles_per_op)} ops but the model has {len(graph.ops)}",
                          hint="profile the model exported for this arch")
    rows = []
    for op, cyc in zip(graph.ops, cycles_per_op):
        cls = op_class(graph, op)
        work = op_work(graph, op)
        key = "macs" if cls in ("conv", "pw", "dw", "fc") else "elements"
        rows.append({"op": op.kind, "class": cls, "kernel": op.layer.kernel if op.layer else 1,
                     key: work, "cycles": float(cyc)})
    return rows
