"""Tensor arena size for the firmware: the predicted 32-bit Cortex-M minimum plus a small fixed slack.

The size comes from the one arena model (`pipeline.costs.predict_arena`, a replay of TFLite Micro's
allocator with 4-byte pointers, CMSIS-NN op data and every CMSIS-NN scratch buffer planned by the greedy
planner, as the firmware does), never from a rule of thumb and never from `arena_used_bytes()` (which
under-reports the minimum). `FIRMWARE_SLACK_BYTES` is added on top.

When an export report gives the measured minimum of the 64-bit host runtime, it cross-checks the model:
the same replay predicts the host figure, and if the measurement is larger the difference is added to
the firmware arena too (the replay is then short somewhere, and a firmware must never be).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..costs.arena import FIRMWARE_SLACK_BYTES, firmware_arena_bytes, predict_arena
from ..tflite.model_info import ModelInfo

ALIGN = 16                  # TFLM aligns arena buffers to 16 bytes (MicroArenaBufferAlignment)


def round_up(n: int, to: int = ALIGN) -> int:
    return (int(n) + to - 1) // to * to


@dataclass(frozen=True)
class ArenaPlan:
    bytes: int                  # kTensorArenaSize
    source: str                 # "measured" (export report cross-checks the model) or "estimate" (model only)
    base_bytes: int             # predicted 32-bit Cortex-M minimum (CMSIS-NN) for the board's core
    host_predicted_bytes: int   # the same model's 64-bit host-runtime figure
    host_measured_bytes: int | None
    scratch_bytes: int          # CMSIS-NN scratch requested by all ops (planned, so partly overlapping)
    explanation: tuple[str, ...]


def plan_arena(model: ModelInfo, core: str, measured_64bit_bytes: int | None) -> ArenaPlan:
    """kTensorArenaSize for `model` on a `core` firmware; raises UnsupportedOpError for an unknown op."""
    pred = predict_arena(model, core)
    shortfall = max(0, int(measured_64bit_bytes) - pred.host_bytes) if measured_64bit_bytes else 0
    total = firmware_arena_bytes(pred.cortex_m_bytes + shortfall)
    lines = [f"predicted minimum on {core} (32-bit TFLite Micro, CMSIS-NN kernels): {pred.cortex_m_bytes} B "
             f"= planned head {pred.cortex_m.head} B (activations + {pred.cortex_m.scratch} B CMSIS-NN scratch) "
             f"+ persistent tail {pred.cortex_m.tail} B (phase binding: {pred.cortex_m.binding_phase})"]
    if measured_64bit_bytes:
        lines.append(f"cross-check on the 64-bit host runtime: measured {int(measured_64bit_bytes)} B, "
                     f"predicted {pred.host_bytes} B"
                     + (f": {shortfall} B short, added" if shortfall else " (prediction covers it)"))
    else:
        lines.append(f"64-bit host runtime predicted {pred.host_bytes} B (no export report to cross-check)")
    lines.append(f"+ {FIRMWARE_SLACK_BYTES} B slack = {total} B, rounded up to {ALIGN}")
    return ArenaPlan(total, "measured" if measured_64bit_bytes else "estimate", pred.cortex_m_bytes,
                     pred.host_bytes, int(measured_64bit_bytes) if measured_64bit_bytes else None,
                     pred.cortex_m.scratch, tuple(lines))
