"""Cost models: TFLite Micro arena (SRAM), flash and latency of a subnet on a board, without converting.

Public entry points:
- `estimate(space, arch, board, *, pointer_bytes=4, calibration=None) -> Costs`
- `layer_costs(space, arch, board)`: per-op breakdown
- `fit_latency(measurements, board) -> LatencyModel`, `save_calibration`, `load_calibration`
- `tflite_graph(space, arch)`, `arena_bytes(graph, pointer_bytes=...)`, `model_bytes(graph)` for checks
"""
from .estimate import APP_SRAM_BYTES, Costs, estimate, firmware_arena_rule, layer_costs, quick_costs
from .flash import flash_bytes, model_bytes, runtime_code_bytes
from .graph import Graph, tflite_graph
from .latency import (LatencyModel, default_latency_model, fit_latency, load_calibration, profile_rows,
                      save_calibration)
from .memory import ArenaEstimate, arena_bytes, cmsis_scratch_bytes

__all__ = ["APP_SRAM_BYTES", "ArenaEstimate", "Costs", "Graph", "LatencyModel", "arena_bytes",
           "cmsis_scratch_bytes", "default_latency_model", "estimate", "firmware_arena_rule", "fit_latency",
           "flash_bytes", "layer_costs", "load_calibration", "model_bytes", "profile_rows", "quick_costs",
           "runtime_code_bytes", "save_calibration", "tflite_graph"]
