"""TFLite Micro tensor-arena model: the greedy plan of the activations plus the persistent tail.

The arena is one block. Planned activations and scratch buffers ("head") grow up from its start;
persistent allocations ("tail": eval tensors, node structs, kernel op data, per-channel quantization
multipliers and shifts, ...) grow down from its end. `arena_bytes` replays the allocations in the
order `MicroInterpreter::AllocateTensors` makes them (tensorflow/tflite-micro micro_interpreter.cc,
micro_allocator.cc, single_arena_buffer_allocator.cc) and returns the smallest arena that survives
every phase: kernel Prepare (temporary TfLiteTensors), memory planning (AllocationInfo array and the
planner's own scratch) and the final state (plan + whole tail).

Struct sizes are not fitted: they were read with `sizeof`/`alignof` from the TFLM headers
(tensorflow/tflite-micro at 90b983c2, Aug 2026), compiled with x86-64 g++ 12 for the 64-bit host runtime
and with arm-none-eabi-g++ 12.2 `-mcpu=cortex-m4 -mthumb` for Cortex-M (AAPCS: 4-byte pointers and
short enums, hence TfLiteAddParams 2 B and TfLiteFullyConnectedParams 5 B there).

Any graph works (`graph.graph_from_layers` for an arch, `graph.graph_from_tflite` for any .tflite) as long
as its ops are in `SUPPORTED_OPS`; another op raises UnsupportedOpError naming it. Two constants are
measured rather than derived (`_PLANNING_SLACK`, `_FC_EXTRA_TAIL`: see there and benchmarks/README.md).

Two runtimes are modelled:
- "host": the `tflite_micro` Python package (64-bit, RecordingMicroAllocator, reference kernels);
  this is what `pipeline.export.measure_arena` measures, so it is what the tests check against.
- "cortex-m": firmware built by ofa-mcu (32-bit, plain MicroAllocator, CMSIS-NN kernels, which add
  scratch buffers and, on Helium, persistent kernel sums: see `cmsis_nn_buffers`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from ..boards import cmsis_nn_kernels
from ..errors import UnsupportedOpError
from .graph import Graph, op_geometry, tensor_lifetimes
from .planner import greedy_plan

ALIGN = 16  # MicroArenaBufferAlignment(): every planned buffer and every kernel persistent buffer

# sizeof / alignof per pointer size. Keys: struct name -> (size, align).
_STRUCTS: dict[int, dict[str, tuple[int, int]]] = {
    8: {
        "TfLiteEvalTensor": (24, 8), "TfLiteTensor": (64, 8), "NodeAndRegistration": (64, 8),
        "TfLiteAffineQuantization": (24, 8), "ScratchBufferHandle": (8, 8),
        "ScratchBufferRequest": (16, 8), "AllocationInfo": (32, 8), "SubgraphAllocations": (16, 8),
        "MicroBuiltinDataAllocator": (16, 8), "size_t": (8, 8),
        "SingleArenaBufferAllocator": (72, 8), "RecordingSingleArenaBufferAllocator": (104, 8),
        "GreedyMemoryPlanner": (72, 8), "MicroAllocator": (72, 8), "RecordingMicroAllocator": (248, 8),
        # kernel op data (allocated 16-aligned through AllocatePersistentBuffer)
        "OpDataConv": (72, 8), "OpDataAdd": (60, 4), "OpDataReduce": (44, 4),
        "OpDataFullyConnected": (64, 8),
        "CmsisOpDataConv": (80, 8), "CmsisOpDataFullyConnected": (96, 8),
        # builtin option structs (allocated with their own alignment)
        "TfLiteConvParams": (28, 4), "TfLiteDepthwiseConvParams": (28, 4), "TfLiteAddParams": (8, 4),
        "TfLiteReducerParams": (1, 1), "TfLiteFullyConnectedParams": (16, 4),
        "TfLiteReshapeParams": (36, 4),
        "OpDataPooling": (32, 4), "SoftmaxParams": (80, 8), "OpDataQuantizeReference": (32, 8),
        "DequantizeOpData": (32, 8), "TfLitePoolParams": (40, 4), "TfLiteSoftmaxParams": (4, 4),
        # patch-based graphs (pipeline.supernet.patches): slice, pad and concatenation
        "TfLiteStridedSliceParams": (24, 4), "TfLiteConcatenationParams": (8, 4), "NoParams": (0, 1),
        "OpDataStridedSlice": (84, 4), "OpDataPad": (56, 4), "OpDataConcatenation": (40, 8),
    },
    4: {
        "TfLiteEvalTensor": (12, 4), "TfLiteTensor": (32, 4), "NodeAndRegistration": (32, 4),
        "TfLiteAffineQuantization": (12, 4), "ScratchBufferHandle": (4, 4),
        "ScratchBufferRequest": (12, 4), "AllocationInfo": (24, 4), "SubgraphAllocations": (8, 4),
        "MicroBuiltinDataAllocator": (8, 4), "size_t": (4, 4),
        "SingleArenaBufferAllocator": (36, 4), "RecordingSingleArenaBufferAllocator": (52, 4),
        "GreedyMemoryPlanner": (44, 4), "MicroAllocator": (36, 4), "RecordingMicroAllocator": (124, 4),
        "OpDataConv": (56, 4), "OpDataAdd": (60, 4), "OpDataReduce": (44, 4),
        "OpDataFullyConnected": (48, 4),
        # cmsis_nn/conv.cc OpData = {OpDataConv; int buffer_idx}; fully_connected.cc adds 2 ints,
        # a pointer and 3 int32 to OpDataFullyConnected.
        "CmsisOpDataConv": (60, 4), "CmsisOpDataFullyConnected": (72, 4),
        "TfLiteConvParams": (28, 4), "TfLiteDepthwiseConvParams": (28, 4), "TfLiteAddParams": (2, 1),
        "TfLiteReducerParams": (1, 1), "TfLiteFullyConnectedParams": (5, 1),
        "TfLiteReshapeParams": (36, 4),
        "OpDataPooling": (32, 4), "SoftmaxParams": (56, 8), "OpDataQuantizeReference": (32, 8),
        "DequantizeOpData": (32, 8), "TfLitePoolParams": (40, 4), "TfLiteSoftmaxParams": (4, 4),
        # cmsis_nn/pooling.cc OpData = {OpDataPooling; int buffer_idx}; softmax.cc CMSISNNSoftmaxParams
        # = {SoftmaxParams; int32 num_rows, row_size}; add.cc has its own OpData (60 B).
        "CmsisOpDataPooling": (36, 4), "CmsisSoftmaxParams": (64, 8), "CmsisOpDataAdd": (60, 4),
        "TfLiteStridedSliceParams": (24, 4), "TfLiteConcatenationParams": (8, 4), "NoParams": (0, 1),
        "OpDataStridedSlice": (84, 4), "OpDataPad": (56, 4), "OpDataConcatenation": (24, 4),
    },
}
# The `tflite_micro` wheel is built with USE_TFLM_COMPRESSION, which grows these structs
# (same probe, -DUSE_TFLM_COMPRESSION). Firmware builds leave compression off.
_COMPRESSION_STRUCTS: dict[int, dict[str, tuple[int, int]]] = {
    8: {"RecordingMicroAllocator": (272, 8), "SubgraphAllocations": (24, 8), "OpDataConv": (80, 8),
        "OpDataFullyConnected": (72, 8), "OpDataConcatenation": (80, 8)},
    4: {"RecordingMicroAllocator": (136, 4), "SubgraphAllocations": (12, 4), "OpDataConv": (64, 4),
        "OpDataFullyConnected": (56, 4)},
}
# GreedyMemoryPlanner::per_buffer_size(): BufferRequirements 16 + 3 ints + ListEntry 12.
_PLANNER_PER_BUFFER = 40
# MicroAllocator keeps room for this many scratch requests of the op being prepared.
_MAX_SCRATCH_PER_OP = 12
# The arena end handed to TFLM is rarely 16-aligned: the first persistent allocation aligns it down
# and every phase loses that much. Replays of real exports came out up to 20 B short without it.
_END_SLACK = 32
# Measured, not derived: in the planning phase the replay above comes out 40 B high on the two
# models where that phase binds (MLPerf Tiny AD and TFLM's hello_world, both bisected to the byte on
# the host runtime), so that phase keeps 8 B less than the end slack.
_PLANNING_SLACK = -8
# Measured, not derived: the host runtime's tail holds 16 B per FULLY_CONNECTED op more than the
# structs read from the pinned headers explain (AD: 10 FC ops, 160 B; hello_world: 3, 48 B; KWS, IC
# ResNet-8, micro_speech: 1, 16 B). Kept for Cortex-M too, where it errs on the safe side.
_FC_EXTRA_TAIL = 16

# The ops the arena model knows, with the builtin option struct the flatbuffer parser allocates for
# each (None: the op has no options struct) and the op data its kernel's Init allocates (None: no
# Init allocation), for the reference kernels (host runtime) and for CMSIS-NN (Cortex-M firmware;
# ops CMSIS-NN has no kernel for use the reference one). Sizes from `_STRUCTS`.
_OPS: dict[str, tuple[str | None, str | None, str | None]] = {
    # op: (builtin params, reference op data, CMSIS-NN op data)
    "CONV_2D": ("TfLiteConvParams", "OpDataConv", "CmsisOpDataConv"),
    "DEPTHWISE_CONV_2D": ("TfLiteDepthwiseConvParams", "OpDataConv", "CmsisOpDataConv"),
    "FULLY_CONNECTED": ("TfLiteFullyConnectedParams", "OpDataFullyConnected", "CmsisOpDataFullyConnected"),
    "ADD": ("TfLiteAddParams", "OpDataAdd", "CmsisOpDataAdd"),
    "MEAN": ("TfLiteReducerParams", "OpDataReduce", "OpDataReduce"),
    "RESHAPE": ("TfLiteReshapeParams", None, None),
    "AVERAGE_POOL_2D": ("TfLitePoolParams", "OpDataPooling", "CmsisOpDataPooling"),
    "MAX_POOL_2D": ("TfLitePoolParams", "OpDataPooling", "CmsisOpDataPooling"),
    "SOFTMAX": ("TfLiteSoftmaxParams", "SoftmaxParams", "CmsisSoftmaxParams"),
    "QUANTIZE": (None, "OpDataQuantizeReference", "OpDataQuantizeReference"),
    "DEQUANTIZE": (None, "DequantizeOpData", "DequantizeOpData"),
    # patch-based graphs (pipeline.supernet.patches): the same op data in both kernel sets
    "STRIDED_SLICE": ("TfLiteStridedSliceParams", "OpDataStridedSlice", "OpDataStridedSlice"),
    "PAD": ("NoParams", "OpDataPad", "OpDataPad"),
    "CONCATENATION": ("TfLiteConcatenationParams", "OpDataConcatenation", "OpDataConcatenation"),
}
SUPPORTED_OPS = tuple(sorted(_OPS))
# softmax_common.cc: int16 softmax keeps two 513-entry int16 lookup tables in persistent memory.
_SOFTMAX_INT16_LUT_BYTES = 2 * (-(-513 * 2 // 16) * 16)


def check_supported(graph: Graph) -> None:
    """Raise UnsupportedOpError naming the first op the arena model does not know."""
    for i, op in enumerate(graph.ops):
        if op.kind not in _OPS:
            raise UnsupportedOpError(
                f"op #{i} {op.kind} is not covered by ofa-mcu's arena model (it knows {', '.join(SUPPORTED_OPS)})",
                hint="measure this model's arena with `pipeline.export.measure_arena`, or file an issue "
                     "with the model")

RUNTIMES = ("host", "cortex-m")


def _up(n: int, a: int) -> int:
    return (n + a - 1) // a * a


@dataclass(frozen=True)
class ArenaEstimate:
    """Bytes of the TFLM arena: `total` is the smallest arena that works."""
    total: int
    head: int            # greedy plan of activations + scratch buffers
    tail: int            # persistent section after AllocateTensors
    scratch: int         # bytes of kernel scratch buffers (all ops, before planning overlap)
    binding_phase: str   # "invoke" | "planning" | "prepare": which phase needs `total`
    peak_op: int         # op index at which the planned head peaks


CH_IN_BLOCK_MVE = 124   # CMSIS-NN Include/arm_nnsupportfunctions.h


class CmsisBuffers(NamedTuple):
    scratch: tuple[int, ...]   # RequestScratchBufferInArena sizes, in request order (planned, op lifetime)
    persistent: int            # extra AllocatePersistentBuffer bytes beyond the op data (MVE kernel sums)


def _conv_s8(g, isa: str) -> int:
    """arm_convolve_wrapper_s8_get_buffer_size (CMSIS-NN at the commit TFLM pins, built with GCC)."""
    cin = g.in_shape[3]
    kh, kw, cin_f = g.filter_shape[1], g.filter_shape[2], g.filter_shape[3]
    if g.pad_h == 0 and g.pad_w == 0 and kh == 1 and kw == 1 and g.dilation_h == 1 and g.dilation_w == 1 \
            and cin == cin_f:
        return 0   # 1x1: the fast path's buffer is ARMCC-only; the strided path needs none
    cols = kw * kh * cin
    if isa == "mve":
        if g.in_shape[1] == 1 and g.dilation_w == 1 and kh == 1 and (g.stride_w * cin) % 4 == 0 and cin == cin_f:
            return _conv_1xn_mve(g)
        return 4 * ((cols + 15) // 16) * 16
    return 2 * (-(-cols // 4) * 4) * 2      # im2col of two columns in int16 (1xN sizes the same way)


def _conv_1xn_mve(g) -> int:
    in_x, pad_x, k_x, out_x, s_x, c = g.in_shape[2], g.pad_w, g.filter_shape[2], g.out_shape[2], g.stride_w, \
        g.in_shape[3]
    total_pad = (out_x - 1) * s_x + k_x - in_x
    asym = total_pad % 2
    right = max(1, (pad_x + asym + s_x - 1) // s_x) if pad_x + asym != 0 else 0
    left = max(1, (pad_x + s_x - 1) // s_x) if pad_x != 0 else 0
    if right + max(out_x - (right + left), 0) + left != out_x:
        return 4 * ((c * g.filter_shape[1] * k_x + 15) // 16) * 16
    pad_left = pad_x * c
    pad_right = right * c if asym else pad_left
    return max(k_x * c + pad_left, k_x * c - c + pad_right)


def _depthwise_s8(g, isa: str) -> int:
    """arm_depthwise_conv_wrapper_s8_get_buffer_size."""
    n, _, _, cin = g.in_shape
    kh, kw, cout = g.filter_shape[1], g.filter_shape[2], g.out_shape[3]
    if isa == "mve" and cin == 1 and cout > 1:
        # converted to a regular convolution: its buffer plus a transposed copy of the filter
        conv = _conv_s8(g._replace(filter_shape=(cout, kh, kw, 1)), "mve")
        return conv + cout * kh * kw
    if cin == cout and n == 1 and g.dilation_h == 1 and g.dilation_w == 1:
        if isa != "mve" and kh == 3 and kw == 3 and g.pad_h <= 1 and g.pad_w <= 1:
            return 0     # arm_depthwise_conv_3x3_s8 needs no buffer
        if isa == "mve":
            return 4 * CH_IN_BLOCK_MVE * kw * kh
        return cin * kw * kh * 2 if isa == "dsp" else 0
    return 0


def cmsis_nn_buffers(graph: Graph, op, core: str) -> CmsisBuffers:
    """Scratch and persistent buffers one CMSIS-NN kernel asks TFLM for in Prepare on `core`.

    The one CMSIS-NN scratch model of ofa-mcu: TFLM's kernels/cmsis_nn/*.cc Prepare (which buffers they
    request) with CMSIS-NN's arm_*_get_buffer_size formulas (Source/*/arm_*_get_buffer_sizes_s8.c and
    _s16.c, at the CMSIS-NN commit TFLM pins), GCC build, KERNELS_OPTIMIZED_FOR_SPEED (TFLM's default).
    Every request is planned by TFLM's greedy planner with the op's own lifetime, so buffers of different
    ops may share memory and buffers of one op are all live together: `arena_bytes` plans them all.
    tests/test_costs_scratch.py checks these formulas against CMSIS-NN's C functions when a TFLM tree
    with its downloads is given (TFLM_DIR)."""
    # The CMSIS-NN code path the core builds (boards/cores/<core>.yaml): "mve" (Helium, ARM_MATH_MVEI),
    # "dsp" (the DSP extension, ARM_MATH_DSP) or "none" (portable C).
    isa = cmsis_nn_kernels(core)
    kind = op.kind
    if kind not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D"):
        return CmsisBuffers((), 0)
    g = op_geometry(graph, op)
    t = graph.tensors
    int16 = g.in_itemsize == 2
    if kind == "CONV_2D":
        if len(g.in_shape) != 4:
            return CmsisBuffers((), 0)
        if int16:   # arm_convolve_wrapper_s16_get_buffer_size
            cols = g.in_shape[3] * g.filter_shape[1] * g.filter_shape[2]
            b = 4 * ((cols + 7) // 8) * 8 * 2 if isa == "mve" else 2 * cols * 2
        else:
            b = _conv_s8(g, isa)
        return CmsisBuffers((b,) if b > 0 else (), 0)
    if kind == "DEPTHWISE_CONV_2D":
        if int16 or len(g.in_shape) != 4:    # cmsis_nn/depthwise_conv.cc requests a buffer for int8 only
            return CmsisBuffers((), 0)
        b = _depthwise_s8(g, isa)
        return CmsisBuffers((b,) if b > 0 else (), 0)
    if kind == "AVERAGE_POOL_2D":
        # arm_avgpool_s8/s16_get_buffer_size: one int32 accumulator per channel on DSP cores only
        b = g.out_shape[-1] * 4 if isa == "dsp" else 0
        return CmsisBuffers((b,) if b > 0 else (), 0)
    # FULLY_CONNECTED
    if int16:
        return CmsisBuffers((), 0)                    # arm_fully_connected_s16_get_buffer_size: 0
    flt = t[op.inputs[1]]
    out_depth = g.out_shape[-1]
    accum = g.filter_shape[-1]
    if len(g.out_shape) > 2 and accum % 4 == 0:
        # conv 1x1 path; per-tensor weights are faked as per-channel in a scratch buffer
        return CmsisBuffers((out_depth * 4 * 2,) if flt.scales <= 1 else (), 0)
    if isa == "mve":
        # arm_fully_connected_s8_get_buffer_size_mve: kernel sums, precomputed into persistent memory
        # when the weights are constant (KERNELS_OPTIMIZED_FOR_SPEED), else a scratch buffer
        b = out_depth * 4
        return CmsisBuffers((), -(-b // ALIGN) * ALIGN) if flt.const else CmsisBuffers((b,), 0)
    return CmsisBuffers((), 0)


def cmsis_scratch_bytes(graph: Graph, op, core: str) -> int:
    """Bytes of CMSIS-NN scratch the op requests (all live while it runs), before 16-byte alignment."""
    return sum(cmsis_nn_buffers(graph, op, core).scratch)


class _OpFacts(NamedTuple):
    per_channel_bytes: int             # two 16-aligned int32 arrays (multiplier, shift) per channel
    mean_scratch: tuple[int, ...]      # MEAN's scratch requests (accumulators, index arrays)
    temp: tuple[int, int, int, int]    # Prepare temps: (plain, quantized, zero points 8-/4-aligned)


class _GraphFacts(NamedTuple):
    ops: tuple[_OpFacts, ...]
    sizes: tuple[int, ...]             # planned activations, 16-aligned, in tensor order
    firsts: tuple[int, ...]
    lasts: tuple[int, ...]
    kind_counts: tuple[tuple[str, int], ...]


def _graph_facts(graph: Graph) -> _GraphFacts:
    """Pointer-size independent parts of the replay, computed once per graph."""
    cached = graph.__dict__.get("_memory_facts")
    if cached is not None:
        return cached
    tensors, ops = graph.tensors, graph.ops
    op_facts = []
    for op in ops:
        per_channel = op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D") or (
            op.kind == "FULLY_CONNECTED" and tensors[op.inputs[1]].scales > 1)
        c = tensors[op.outputs[0]].shape[-1] if tensors[op.outputs[0]].shape else 1
        pc = 2 * (-(-4 * c // ALIGN) * ALIGN) if per_channel else 0
        if op.kind == "SOFTMAX" and tensors[op.inputs[0]].itemsize == 2:
            pc += _SOFTMAX_INT16_LUT_BYTES
        mean = (4 * c, 4 * len(tensors[op.inputs[0]].shape), 4 * 2) if op.kind == "MEAN" else ()
        plain = quant = zp8 = zp4 = 0
        for t in op.inputs + op.outputs:
            if t < 0:
                continue
            ten = tensors[t]
            if ten.scales == 0:        # no quantization parameters (axis, shape operands)
                plain += 1
            else:
                quant += 1
                zp8 += -(-(4 + 4 * ten.scales) // 8) * 8
                zp4 += 4 + 4 * ten.scales
        op_facts.append(_OpFacts(pc, mean, (plain, quant, zp8, zp4)))
    first, last = tensor_lifetimes(graph)
    act = [t for t in range(len(tensors)) if first[t] >= 0]
    facts = _GraphFacts(tuple(op_facts), tuple(-(-tensors[t].nbytes // ALIGN) * ALIGN for t in act),
                        tuple(first[t] for t in act), tuple(last[t] for t in act),
                        tuple((k, sum(1 for op in ops if op.kind == k)) for k in graph.op_kinds))
    graph.__dict__["_memory_facts"] = facts   # frozen dataclass: cache beside the fields
    return facts


def arena_bytes(graph: Graph, *, pointer_bytes: int = 8, runtime: str | None = None,
                core: str = "cortex-m4") -> ArenaEstimate:
    """Smallest TFLM arena for `graph` (bytes), with its head/tail split.

    pointer_bytes 8 with runtime "host" is the Python `tflite_micro` runtime; pointer_bytes 4 with
    runtime "cortex-m" is a CMSIS-NN firmware on `core`.
    """
    if pointer_bytes not in _STRUCTS:
        raise ValueError(f"pointer_bytes must be 4 or 8, got {pointer_bytes}")
    runtime = runtime or ("host" if pointer_bytes == 8 else "cortex-m")
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    S = dict(_STRUCTS[pointer_bytes])
    if runtime == "host":
        S.update(_COMPRESSION_STRUCTS[pointer_bytes])
    p = pointer_bytes
    cmsis = runtime == "cortex-m"
    tensors, ops = graph.tensors, graph.ops
    n_t, n_ops = len(tensors), len(ops)

    used = 0   # persistent bytes: each allocation aligns its start down from an aligned top

    def alloc(size: int, align: int) -> None:
        nonlocal used
        used = -(-(used + size) // align) * align

    # MicroAllocator::Create (plain) or RecordingMicroAllocator::Create (host runtime).
    names = (("SingleArenaBufferAllocator", "GreedyMemoryPlanner", "MicroAllocator") if cmsis else
             ("RecordingSingleArenaBufferAllocator", "GreedyMemoryPlanner", "RecordingMicroAllocator"))
    for name in names:
        alloc(*S[name])
    # StartModelAllocation.
    alloc(*S["MicroBuiltinDataAllocator"])
    alloc(*S["SubgraphAllocations"])
    alloc(S["TfLiteEvalTensor"][0] * n_t, S["TfLiteEvalTensor"][1])
    alloc(S["NodeAndRegistration"][0] * n_ops, S["NodeAndRegistration"][1])
    # Builtin option structs, op by op.
    check_supported(graph)
    for op in ops:
        params = _OPS[op.kind][0]
        if params:
            alloc(*S[params])
    # Kernel Init: op data, 16-aligned.
    op_data = {k: -(-S[v[2 if cmsis else 1]][0] // ALIGN) * ALIGN for k, v in _OPS.items()
               if v[2 if cmsis else 1]}
    facts = _graph_facts(graph)
    used += sum((op_data.get(kind, 0) + (_FC_EXTRA_TAIL if kind == "FULLY_CONNECTED" else 0)) * n
                for kind, n in facts.kind_counts)

    # Kernel Prepare: per-channel multipliers/shifts (tail), scratch requests (head), temporary
    # TfLiteTensors (head, freed after each op).
    req_size, req_align = S["ScratchBufferRequest"]
    tt_size, tt_align = S["TfLiteTensor"]
    # TfLiteTensor and TfLiteAffineQuantization sizes are multiples of the pointer alignment, so the
    # temp section stays aligned and each quantized temp tensor costs a fixed part plus its zero points.
    tt_q_size = tt_size + S["TfLiteAffineQuantization"][0]
    zp_key = 2 if tt_align == 8 else 3
    scratch: list[tuple[int, int]] = []   # (bytes, op index)
    prepare_need = 0
    for i, (op, f) in enumerate(zip(ops, facts.ops)):
        used += f.per_channel_bytes
        if f.mean_scratch:
            scratch += [(b, i) for b in f.mean_scratch]
        if cmsis:
            bufs = cmsis_nn_buffers(graph, op, core)
            scratch += [(b, i) for b in bufs.scratch]
            used += bufs.persistent
        # Temp tensors during Prepare: every input and output, each with its quantization arrays
        # (TfLiteTensor, TfLiteAffineQuantization, zero-point TfLiteIntArray; axis/shape: none).
        temp = -(-req_size * (len(scratch) + _MAX_SCRATCH_PER_OP) // req_align) * req_align
        temp += f.temp[0] * tt_size + f.temp[1] * tt_q_size + f.temp[zp_key]
        prepare_need = max(prepare_need, used + -(-temp // ALIGN) * ALIGN + _END_SLACK)
    # FinishModelAllocation: scratch handles, then the plan.
    if scratch:
        alloc(S["ScratchBufferHandle"][0] * len(scratch), S["ScratchBufferHandle"][1])

    # Lifetimes (micro_allocation_info.cc): inputs created at scope 0, op i runs at scope i+1,
    # graph outputs live to the end.
    sizes, firsts, lasts = list(facts.sizes), list(facts.firsts), list(facts.lasts)
    for b, i in scratch:
        sizes.append(-(-b // ALIGN) * ALIGN)
        firsts.append(i + 1)
        lasts.append(i + 1)
    head, offsets = greedy_plan(sizes, firsts, lasts)

    # Planning phase: request array + AllocationInfo temp + the planner's own arrays.
    plan_temp = _up(req_size * (len(scratch) + _MAX_SCRATCH_PER_OP), req_align)
    plan_temp = _up(plan_temp, p) + S["size_t"][0]
    plan_temp = _up(plan_temp, p) + S["AllocationInfo"][0] * (n_t + len(scratch))
    plan_temp = _up(plan_temp, ALIGN) + _PLANNER_PER_BUFFER * len(sizes)
    planning_need = used + _up(plan_temp, ALIGN) + _PLANNING_SLACK

    # After planning: input/output pointer arrays and persistent TfLiteTensors for them.
    for group in (graph.inputs, graph.outputs):
        alloc(p * len(group), ALIGN)
        for t in group:
            alloc(tt_size, tt_align)
            alloc(*S["TfLiteAffineQuantization"])
            alloc(4 + 4 * tensors[t].scales, 4)
    invoke_need = _up(head, ALIGN) + used + _END_SLACK

    total, phase = max((invoke_need, "invoke"), (planning_need, "planning"), (prepare_need, "prepare"))
    peak_time = 0
    best = -1
    for s, o, f in zip(sizes, offsets, firsts):
        if o + s > best:
            best, peak_time = o + s, f
    return ArenaEstimate(total=total, head=head, tail=used, scratch=sum(b for b, _ in scratch),
                         binding_phase=phase, peak_op=max(peak_time - 1, 0))
