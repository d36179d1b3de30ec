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

Two runtimes are modelled:
- "host": the `tflite_micro` Python package (64-bit, RecordingMicroAllocator, reference kernels);
  this is what `pipeline.export.measure_arena` measures, so it is what the tests check against.
- "cortex-m": firmware built by ofa-mcu (32-bit, plain MicroAllocator, CMSIS-NN kernels, which add
  scratch buffers: see `cmsis_scratch_bytes`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from .graph import Graph
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

_BUILTIN_PARAMS = {"CONV_2D": "TfLiteConvParams", "DEPTHWISE_CONV_2D": "TfLiteDepthwiseConvParams",
                   "ADD": "TfLiteAddParams", "MEAN": "TfLiteReducerParams",
                   "FULLY_CONNECTED": "TfLiteFullyConnectedParams", "RESHAPE": "TfLiteReshapeParams",
                   "STRIDED_SLICE": "TfLiteStridedSliceParams", "PAD": "NoParams",
                   "CONCATENATION": "TfLiteConcatenationParams"}

# Op data each kernel's Init allocates (reference kernels in the host runtime, CMSIS-NN on Cortex-M;
# ADD and MEAN have the same op data in both).
_REF_OP_DATA = {"CONV_2D": "OpDataConv", "DEPTHWISE_CONV_2D": "OpDataConv", "ADD": "OpDataAdd",
                "MEAN": "OpDataReduce", "FULLY_CONNECTED": "OpDataFullyConnected"}
_CMSIS_OP_DATA = {"CONV_2D": "CmsisOpDataConv", "DEPTHWISE_CONV_2D": "CmsisOpDataConv", "ADD": "OpDataAdd",
                  "MEAN": "OpDataReduce", "FULLY_CONNECTED": "CmsisOpDataFullyConnected"}
# Patch-based graphs: same op data in both kernel sets (sizeof read as for the structs above).
_PATCH_OP_DATA = {"STRIDED_SLICE": "OpDataStridedSlice", "PAD": "OpDataPad",
                  "CONCATENATION": "OpDataConcatenation"}
_REF_OP_DATA.update(_PATCH_OP_DATA)
_CMSIS_OP_DATA.update(_PATCH_OP_DATA)

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


def cmsis_scratch_bytes(op_kind: str, layer, *, core: str) -> int:
    """Scratch buffer one CMSIS-NN int8 kernel requests (ARM-software/CMSIS-NN, 2023 sources).

    conv (arm_convolve_wrapper_s8_get_buffer_size): 1x1 with stride 1 and no padding -> 0
      (arm_convolve_1x1_s8_fast); otherwise im2col of two columns in int16:
      2 * align4(k*k*cin) * 2 bytes on DSP cores; MVE (M55): 4 * align8(k*k*cin) bytes.
    depthwise (arm_depthwise_conv_wrapper_s8_get_buffer_size): 3x3 with padding <= 1 -> 0 on non-MVE;
      otherwise cin*k*k*2 bytes on DSP cores (arm_depthwise_conv_s8_opt), 4*CH_IN_BLOCK_MVE(124)*k*k on
      MVE, 0 without DSP (Cortex-M0+ falls back to arm_depthwise_conv_s8).
    fully connected: 0 on DSP (arm_fully_connected_s8_get_buffer_size); MVE kernel sums are moved to
      persistent memory by TFLM; counted as out_channels*4 to stay safe.
    """
    if layer is None:
        return 0
    mve = core == "cortex-m55"
    dsp = core in ("cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55")
    k = layer.kernel
    cin = layer.in_shape[2]
    if op_kind == "CONV_2D":
        if k == 1 and layer.stride == 1:
            return 0
        cols = k * k * cin
        return 4 * _up(cols, 8) if mve else 2 * _up(cols, 4) * 2
    if op_kind == "DEPTHWISE_CONV_2D":
        pads_ok = max(layer.pad) <= 1
        if not mve and k == 3 and pads_ok:
            return 0
        if mve:
            return 4 * 124 * k * k
        return cin * k * k * 2 if dsp else 0
    if op_kind == "FULLY_CONNECTED":
        return layer.out_shape[2] * 4 if mve else 0
    return 0


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
        c = tensors[op.outputs[0]].shape[-1]
        pc = 2 * (-(-4 * c // ALIGN) * ALIGN) if per_channel else 0
        mean = (4 * c, 4 * len(tensors[op.inputs[0]].shape), 4 * 2) if op.kind == "MEAN" else ()
        plain = quant = zp8 = zp4 = 0
        for t in op.inputs + op.outputs:
            ten = tensors[t]
            if ten.role in ("axis", "shape"):
                plain += 1
            else:
                quant += 1
                zp8 += -(-(4 + 4 * ten.scales) // 8) * 8
                zp4 += 4 + 4 * ten.scales
        op_facts.append(_OpFacts(pc, mean, (plain, quant, zp8, zp4)))
    n_t, n_ops = len(tensors), len(ops)
    first = [-1] * n_t
    last = [-1] * n_t
    for t in graph.inputs:
        first[t] = last[t] = 0
    for i, op in enumerate(ops):
        for t in op.outputs:
            if first[t] < 0:
                first[t] = i + 1
        for t in op.inputs:
            last[t] = i + 1
        for t in op.outputs:
            last[t] = i + 1
    for t in graph.outputs:
        last[t] = n_ops
    act = [t for t, ten in enumerate(tensors) if not ten.const]
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
    for op in ops:
        alloc(*S[_BUILTIN_PARAMS[op.kind]])
    # Kernel Init: op data, 16-aligned.
    op_data = {k: -(-S[v][0] // ALIGN) * ALIGN for k, v in
               (_CMSIS_OP_DATA if cmsis else _REF_OP_DATA).items()}
    facts = _graph_facts(graph)
    used += sum(op_data.get(kind, 0) * n for kind, n in facts.kind_counts)

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
            sb = cmsis_scratch_bytes(op.kind, op.layer, core=core)
            if sb:
                scratch.append((sb, i))
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
    planning_need = used + _up(plan_temp, ALIGN) + _END_SLACK

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
