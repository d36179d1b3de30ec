"""Costs of any int8/int16 .tflite on a board: what `ofa-mcu inspect` prints, with the search's models.

`inspect_model(model, board)` reads the model once (`pipeline.tflite`), builds its graph
(`graph.graph_from_tflite`) and applies the same functions `estimate` applies to a supernet arch:
the arena replay for both runtimes (`arena.predict_arena`), codegen's firmware arena
(`arena.firmware_arena_bytes`), flash = the file + TFLM runtime for its registered kernels + app code
(`flash.runtime_code_bytes`), latency = `latency.op_cycles` per op at the board's clock, and the fits
and margins against the board's usable SRAM and flash. An op the models do not know raises
UnsupportedOpError naming it (exit code 6).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .arena import firmware_arena_bytes, predict_arena
from .estimate import APP_SRAM_BYTES
from .flash import APP_CODE_BYTES, is_image_input, runtime_code_bytes, runtime_table
from .graph import graph_from_tflite, live_activation_bytes
from .latency import LatencyModel, load_calibration, op_class, op_work
from .memory import cmsis_scratch_bytes


@dataclass(frozen=True)
class ModelCosts:
    model: str
    board: str
    core: str
    clock_hz: int
    ops: int
    op_counts: dict[str, int]
    macs: int
    input: dict[str, Any]
    output: dict[str, Any]
    arena_host_bytes: int           # 64-bit host runtime (tflite_micro package), predicted minimum
    arena_cortex_m_bytes: int       # 32-bit firmware with CMSIS-NN on the board's core, predicted minimum
    firmware_arena_bytes: int       # kTensorArenaSize `ofa-mcu codegen` writes (minimum + fixed slack)
    activation_floor_bytes: int     # largest live activation set (lower bound of the planned head)
    sram_bytes: int                 # firmware arena + app buffers: what must fit usable SRAM
    usable_sram_bytes: int
    model_bytes: int
    runtime_code_bytes: int         # TFLM + CMSIS-NN code for the model's registered kernels
    app_code_bytes: int
    flash_bytes: int                # model + runtime + app
    usable_flash_bytes: int
    cycles: int
    latency_ms: float
    latency_source: str
    flash_source: str               # the runtime table: "measured" (linked firmware) or "estimated, not measured"
    per_op: list[dict] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return self.sram_bytes <= self.usable_sram_bytes and self.flash_bytes <= self.usable_flash_bytes

    def to_dict(self) -> dict:
        d = asdict(self)
        d["fits"] = self.fits
        d["sram_margin_bytes"] = self.usable_sram_bytes - self.sram_bytes
        d["flash_margin_bytes"] = self.usable_flash_bytes - self.flash_bytes
        return d


def inspect_model(model: str | Path, board, *, calibration: Any = None) -> ModelCosts:
    """Predicted arena, flash, latency and fit of the .tflite `model` on `board` (a `Board`)."""
    from ..tflite import read_tflite
    info, data = read_tflite(model)
    g = graph_from_tflite(info)
    pred = predict_arena(g, board.core)
    fw_arena = firmware_arena_bytes(pred.cortex_m_bytes)
    lat: LatencyModel = load_calibration(calibration, board.core, board.id)
    live = live_activation_bytes(g)
    rows, total_cycles, macs = [], 0.0, 0
    for i, op in enumerate(g.ops):
        cls = op_class(g, op)
        work = op_work(g, op)
        cyc = lat.op_cycles(cls, work)
        total_cycles += cyc
        if cls in ("conv", "pw", "dw", "fc"):
            macs += work
        rows.append({"index": i, "op": op.kind, "class": cls, "work": work, "cycles": int(round(cyc)),
                     "ms": cyc / board.clock_hz * 1e3, "live_activation_bytes": live[i],
                     "cmsis_scratch_bytes": cmsis_scratch_bytes(g, op, board.core),
                     "out_shape": list(g.tensors[op.outputs[0]].shape)})
    kinds = sorted({op.kind for op in g.ops})
    runtime = runtime_code_bytes(kinds, board.core, image_input=is_image_input(info.input.shape, info.input.dtype))
    counts: dict[str, int] = {}
    for op in g.ops:
        counts[op.kind] = counts.get(op.kind, 0) + 1
    return ModelCosts(
        model=str(model), board=board.id, core=board.core, clock_hz=int(board.clock_hz), ops=len(g.ops),
        op_counts=counts, macs=int(macs),
        input={"shape": list(info.input.shape), "dtype": info.input.dtype},
        output={"shape": list(info.output.shape), "dtype": info.output.dtype},
        arena_host_bytes=pred.host_bytes, arena_cortex_m_bytes=pred.cortex_m_bytes,
        firmware_arena_bytes=fw_arena, activation_floor_bytes=pred.floor_bytes,
        sram_bytes=fw_arena + APP_SRAM_BYTES, usable_sram_bytes=int(board.usable_sram_bytes),
        model_bytes=len(data), runtime_code_bytes=runtime, app_code_bytes=APP_CODE_BYTES,
        flash_bytes=len(data) + runtime + APP_CODE_BYTES, usable_flash_bytes=int(board.usable_flash_bytes),
        cycles=int(round(total_cycles)), latency_ms=total_cycles / board.clock_hz * 1e3,
        latency_source=lat.source, flash_source=runtime_table(board.core)[2], per_op=rows)
