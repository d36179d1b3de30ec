"""Tensor arena size for the firmware: the measured TFLite Micro minimum plus a margin for Cortex-M.

The export stage measures the smallest arena the model runs in with the TFLite Micro Python runtime on
the 64-bit host (reference kernels, recording allocator). On a Cortex-M with CMSIS-NN kernels:

* bookkeeping is smaller: pointers are 4 bytes, so eval tensors, node structs and op data shrink. In the
  reference measurement one model needed 53,432 B on 32-bit vs 55,456 B native 64-bit and 55,680 B in the
  Python runtime (shared/reference/README.md). The rule keeps this saving as headroom and never subtracts it.
* CMSIS-NN kernels ask for scratch buffers that the reference kernels do not (im2col for convolutions,
  a column buffer for depthwise, a sum buffer for average pooling). A scratch buffer lives only while its
  op runs, but the planner may have to place it above the activation peak, so the largest one is added
  in full, plus 16 B for its alignment.
* CMSIS-NN op data is up to 12 B larger than the reference op data (buffer index, kernel-sum pointer);
  persistent allocations are 16-byte aligned, so 16 B per op covers it.
* `arena_used_bytes()` is not used: it under-reports the true minimum (by 4 B in the reference model).

`cortex_m_arena_bytes()` is the rule; `cmsis_nn_scratch()` gives its scratch term from the op shapes with
the formulas of CMSIS-NN (Source/ConvolutionFunctions/arm_convolve_get_buffer_sizes_s8.c,
arm_depthwise_conv_get_buffer_sizes_s8.c, FullyConnectedFunctions/arm_fully_connected_get_buffer_sizes_s8.c,
PoolingFunctions/arm_avgpool_get_buffer_sizes_s8.c at the commit TFLite Micro pins) and of TFLite Micro's
kernels/cmsis_nn/*.cc that call them.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..boards import cmsis_nn_kernels
from ..tflite.model_info import ModelInfo, OpInfo
from .ops import op_label

ALIGN = 16                 # TFLM aligns arena buffers to 16 bytes (MicroArenaBufferAlignment)
OPDATA_SLACK_PER_OP = 16   # CMSIS-NN op data vs reference op data, rounded to the 16-byte alignment
CH_IN_BLOCK_MVE = 124      # CMSIS-NN Include/arm_nnsupportfunctions.h


def round_up(n: int, to: int = ALIGN) -> int:
    return (int(n) + to - 1) // to * to


@dataclass(frozen=True)
class ScratchPlan:
    max_scratch_bytes: int      # largest per-op scratch buffer (only one op's scratch is live at a time)
    max_scratch_op: str         # "CONV_2D #3" or "" when no op needs scratch
    persistent_bytes: int       # CMSIS-NN persistent extras (MVE fully-connected kernel sums)
    op_count: int


@dataclass(frozen=True)
class ArenaPlan:
    bytes: int                  # kTensorArenaSize
    source: str                 # "measured" (export report) or "estimate" (no report)
    base_bytes: int             # measured 64-bit minimum, or the analytic estimate
    scratch: ScratchPlan
    explanation: tuple[str, ...]


def _kind(core: str) -> str:
    return cmsis_nn_kernels(core)  # boards/cores/<core>.yaml


def _same_pad(in_size: int, out_size: int, kernel: int, stride: int, dilation: int) -> int:
    eff = (kernel - 1) * dilation + 1
    return max((out_size - 1) * stride + eff - in_size, 0) // 2


def _conv_scratch(model: ModelInfo, op: OpInfo, kind: str) -> int:
    inp, flt = model.op_inputs(op)[:2]
    if inp is None or flt is None or inp.dtype != "INT8" or len(inp.shape) != 4:
        return 0
    cin = inp.shape[3]
    _, kh, kw, _ = flt.shape
    dh, dw = op.options.get("dilationHFactor", 1), op.options.get("dilationWFactor", 1)
    if kh == 1 and kw == 1 and dh == 1 and dw == 1:
        # 1x1 convolutions: the fast path (no pad, stride 1) needs 2*cin*2 B only when built with Arm's
        # compiler (ARMCC); with GCC and on the other 1x1 path it needs none.
        return 0
    rhs_cols = kh * kw * cin
    if kind == "mve":
        return 4 * ((rhs_cols + 15) // 16) * 16
    # The 1xN path sizes its buffer like the general path on DSP and plain cores.
    return 2 * round_up(rhs_cols, 4) * 2


def _depthwise_scratch(model: ModelInfo, op: OpInfo, kind: str) -> int:
    (inp, flt), out = model.op_inputs(op)[:2], model.op_outputs(op)[0]
    if inp is None or flt is None or inp.dtype != "INT8" or len(inp.shape) != 4:
        return 0
    n, in_h, in_w, cin = inp.shape
    _, kh, kw, _ = flt.shape
    _, out_h, out_w, cout = out.shape
    dh, dw = op.options.get("dilationHFactor", 1), op.options.get("dilationWFactor", 1)
    if kind == "mve" and cin == 1:
        return 4 * ((kh * kw + 15) // 16) * 16 + kh * kw * cout
    if not (cin == cout and n == 1 and dh == 1 and dw == 1):
        return 0
    same = op.options.get("padding", "SAME") == "SAME"
    ph = _same_pad(in_h, out_h, kh, op.options.get("strideH", 1), dh) if same else 0
    pw = _same_pad(in_w, out_w, kw, op.options.get("strideW", 1), dw) if same else 0
    if kind != "mve" and kh == 3 and kw == 3 and ph <= 1 and pw <= 1:
        return 0  # arm_depthwise_conv_3x3_s8 works without a buffer
    if kind == "mve":
        return 4 * CH_IN_BLOCK_MVE * kw * kh
    return cin * kh * kw * 2 if kind == "dsp" else 0


def _fc_scratch(model: ModelInfo, op: OpInfo, kind: str) -> tuple[int, int]:
    """(scratch, persistent) bytes of a CMSIS-NN fully-connected op."""
    (inp, flt), out = model.op_inputs(op)[:2], model.op_outputs(op)[0]
    if inp is None or flt is None or inp.dtype != "INT8" or flt.dtype != "INT8":
        return 0, 0
    accum_depth = flt.shape[-1]
    output_depth = flt.shape[0]
    if len(out.shape) > 2 and accum_depth % 4 == 0:
        return output_depth * 4 * 2, 0   # per-tensor quantization faked as per-channel for conv 1x1
    if kind == "mve":
        return 0, output_depth * 4       # kernel sums, persistent when optimized for speed
    return 0, 0


def _avgpool_scratch(model: ModelInfo, op: OpInfo, kind: str) -> int:
    inp = model.op_inputs(op)[0]
    if inp is None or inp.dtype != "INT8" or kind != "dsp":
        return 0
    return model.op_outputs(op)[0].shape[-1] * 4


def cmsis_nn_scratch(model: ModelInfo, core: str) -> ScratchPlan:
    """Largest CMSIS-NN scratch buffer over the model's ops, for a core (DSP, MVE or plain)."""
    kind = _kind(core)
    best, best_op, persistent = 0, "", 0
    for op in model.all_ops:
        scratch, name = 0, op_label(op)
        if name == "CONV_2D":
            scratch = _conv_scratch(model, op, kind)
        elif name == "DEPTHWISE_CONV_2D":
            scratch = _depthwise_scratch(model, op, kind)
        elif name == "FULLY_CONNECTED":
            scratch, extra = _fc_scratch(model, op, kind)
            persistent += round_up(extra) if extra else 0
        elif name == "AVERAGE_POOL_2D":
            scratch = _avgpool_scratch(model, op, kind)
        if scratch > best:
            best, best_op = scratch, f"{name} #{op.index}"
    return ScratchPlan(best, best_op, persistent, len(model.all_ops))


def cortex_m_arena_bytes(measured_64bit_bytes: int, scratch: ScratchPlan) -> int:
    """The margin rule: measured 64-bit minimum + largest CMSIS-NN scratch (+16 B alignment) + CMSIS-NN
    persistent extras + 16 B per op of op-data growth, rounded up to 16. See the module docstring."""
    if measured_64bit_bytes <= 0:
        raise ValueError("the measured arena must be positive")
    total = measured_64bit_bytes
    if scratch.max_scratch_bytes:
        total += round_up(scratch.max_scratch_bytes) + ALIGN
    total += scratch.persistent_bytes + OPDATA_SLACK_PER_OP * scratch.op_count
    return round_up(total)


# Analytic fallback (no export report). Constants are upper bounds for 32-bit TFLM bookkeeping:
# TfLiteEvalTensor 12 B, TfLiteTensor/node/registration structs ~120 B per op, per-channel
# multiplier+shift 8 B per output channel, the interpreter's own ~2 KB; the greedy planner can leave
# gaps between buffers, hence the 25 % on the activation peak.
_EST_FIXED = 2048
_EST_PER_TENSOR = 16
_EST_PER_OP = 160
_EST_PER_CHANNEL = 8
_EST_FRAGMENTATION = 1.25


def estimate_activation_peak(model: ModelInfo) -> int:
    """Largest total of live non-constant tensors (16-byte aligned) over the main subgraph's ops."""
    ops = model.ops
    first: dict[int, int] = {model.inputs[0]: 0}
    last: dict[int, int] = {model.outputs[0]: len(ops)}
    size: dict[int, int] = {}
    for k, op in enumerate(ops):
        for tid in (*op.inputs, *op.outputs):
            if tid < 0 or model.tensors[tid].is_constant:
                continue
            size[tid] = round_up(model.tensors[tid].nbytes)
            first[tid] = min(first.get(tid, k), k)
            last[tid] = max(last.get(tid, k), k)
    peak = 0
    for k in range(len(ops)):
        live = sum(size[t] for t in size if first.get(t, 0) <= k <= last.get(t, 0))
        peak = max(peak, live)
    return peak


def estimate_arena_bytes(model: ModelInfo) -> int:
    """A documented over-estimate used only when no measured arena is available."""
    ops = model.all_ops
    tensors = sum(len(op.inputs) + len(op.outputs) for op in ops)
    channels = sum(out.shape[-1] for op in ops for out in model.op_outputs(op)[:1]
                   if op_label(op) in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and out.shape)
    tail = _EST_FIXED + _EST_PER_TENSOR * tensors + _EST_PER_OP * len(ops) + _EST_PER_CHANNEL * channels
    return round_up(int(estimate_activation_peak(model) * _EST_FRAGMENTATION) + tail)


def plan_arena(model: ModelInfo, core: str, measured_64bit_bytes: int | None) -> ArenaPlan:
    scratch = cmsis_nn_scratch(model, core)
    if measured_64bit_bytes:
        base, source = int(measured_64bit_bytes), "measured"
        first = (f"measured minimum of the TFLite Micro runtime (64-bit host, reference kernels): "
                 f"{base} B; 32-bit bookkeeping is smaller, the difference is kept as headroom")
    else:
        base, source = estimate_arena_bytes(model), "estimate"
        first = (f"ESTIMATE {base} B (no export_report.json with a measured arena): activation peak x "
                 f"{_EST_FRAGMENTATION} + bookkeeping bound; run `ofa-mcu export` for a measured figure")
    total = cortex_m_arena_bytes(base, scratch)
    lines = (first,
             f"+ CMSIS-NN scratch {scratch.max_scratch_bytes} B"
             + (f" (largest: {scratch.max_scratch_op})" if scratch.max_scratch_op else "")
             + (f" + {ALIGN} B alignment" if scratch.max_scratch_bytes else ""),
             f"+ CMSIS-NN persistent extras {scratch.persistent_bytes} B"
             f" + op data {OPDATA_SLACK_PER_OP} B x {scratch.op_count} ops",
             f"= {total} B, rounded up to {ALIGN}")
    return ArenaPlan(total, source, base, scratch, lines)
