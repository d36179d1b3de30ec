"""Predicted TFLite Micro arena of any model, for both runtimes: the one entry codegen, `inspect` and
the search use (the search through `estimate`, which replays the same graph built from an arch).

`predict_arena(model, core)` takes a `.tflite` path, its bytes, a `pipeline.tflite.ModelInfo` or a
`costs.graph.Graph`; it returns the smallest arena for the 64-bit host runtime (the `tflite_micro`
Python package, reference kernels: what `pipeline.export.measure_arena` bisects) and for a 32-bit
Cortex-M firmware with CMSIS-NN kernels on `core`. An op the model does not know raises
`UnsupportedOpError` naming it (exit code 6), never a KeyError.
"""
from __future__ import annotations

from dataclasses import dataclass

from .graph import Graph, activation_floor_bytes, graph_from_tflite
from .memory import ALIGN, ArenaEstimate, arena_bytes

# What the generated firmware reserves on top of the predicted 32-bit minimum. Search, inspect and codegen
# all add exactly this. Sized so the whole spare (reserved - true minimum) stays <= 256 B: in QEMU the
# prediction was 20-36 B above the true minimum on Cortex-M4 and M7 (6 models, benchmarks/README.md),
# and the arena is rounded up to 16 B: 192 + 36 + 15 = 243 B.
FIRMWARE_SLACK_BYTES = 192


def firmware_arena_bytes(cortex_m_min_bytes: int) -> int:
    """kTensorArenaSize for a predicted 32-bit minimum: + FIRMWARE_SLACK_BYTES, rounded up to 16."""
    return -(-(int(cortex_m_min_bytes) + FIRMWARE_SLACK_BYTES) // ALIGN) * ALIGN


@dataclass(frozen=True)
class ArenaPrediction:
    host: ArenaEstimate          # 64-bit host runtime (reference kernels, recording allocator)
    cortex_m: ArenaEstimate      # 32-bit firmware, CMSIS-NN kernels, on `core`
    core: str
    floor_bytes: int             # largest live activation set (a lower bound of the planned head)

    @property
    def host_bytes(self) -> int:
        return self.host.total

    @property
    def cortex_m_bytes(self) -> int:
        return self.cortex_m.total


def as_graph(model) -> Graph:
    if isinstance(model, Graph):
        return model
    from ..tflite import inspect_tflite
    from ..tflite.model_info import ModelInfo
    info = model if isinstance(model, ModelInfo) else inspect_tflite(model)
    return graph_from_tflite(info)


def predict_arena(model, core: str) -> ArenaPrediction:
    g = as_graph(model)
    return ArenaPrediction(arena_bytes(g, pointer_bytes=8, runtime="host"),
                           arena_bytes(g, pointer_bytes=4, runtime="cortex-m", core=core),
                           core, activation_floor_bytes(g))
