"""Cost models: TFLite Micro arena (SRAM), flash and latency of a subnet or of any .tflite on a board.

Public entry points:
- `estimate(space, arch, board, *, pointer_bytes=4, calibration=None) -> Costs`
- `layer_costs(space, arch, board)`: per-op breakdown
- `inspect_model(model, board) -> ModelCosts`: the same models for any int8/int16 .tflite (`ofa-mcu inspect`)
- `predict_arena(model, core)`: 64-bit host and 32-bit Cortex-M arena; `firmware_arena_bytes` (codegen's size)
- `fit_latency(measurements, board) -> LatencyModel`, `save_calibration`, `load_calibration`
- `tflite_graph(space, arch)`, `graph_from_tflite(info)`, `arena_bytes(graph, pointer_bytes=...)`,
  `model_bytes(graph)`, `live_activation_bytes(graph)`, `cmsis_nn_buffers(graph, op, core)` for checks
"""
from .arena import FIRMWARE_SLACK_BYTES, ArenaPrediction, firmware_arena_bytes, predict_arena
from .estimate import APP_SRAM_BYTES, Costs, estimate, layer_costs, quick_costs
from .flash import flash_bytes, model_bytes, runtime_code_bytes
from .graph import (Graph, activation_floor_bytes, graph_from_tflite, live_activation_bytes, op_geometry,
                    tflite_graph)
from .latency import (LatencyModel, default_latency_model, fit_latency, load_calibration, profile_rows,
                      save_calibration)
from .model_costs import ModelCosts, inspect_model
from .memory import SUPPORTED_OPS, ArenaEstimate, arena_bytes, cmsis_nn_buffers, cmsis_scratch_bytes

__all__ = ["APP_SRAM_BYTES", "ArenaEstimate", "ArenaPrediction", "Costs", "LatencyModel", "ModelCosts", "FIRMWARE_SLACK_BYTES", "Graph",
           "SUPPORTED_OPS", "activation_floor_bytes", "arena_bytes", "cmsis_nn_buffers", "cmsis_scratch_bytes",
           "default_latency_model", "estimate", "firmware_arena_bytes", "fit_latency", "flash_bytes",
           "graph_from_tflite", "inspect_model", "layer_costs", "live_activation_bytes", "load_calibration", "model_bytes",
           "op_geometry", "predict_arena", "profile_rows", "quick_costs", "runtime_code_bytes",
           "save_calibration", "tflite_graph"]
