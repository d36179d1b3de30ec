"""The TFLite graph an arch exports to, described without converting anything.

`tflite_graph(space, arch)` lists the tensors and ops of the full-int8 model that `pipeline.export`
writes for `arch`, in the order the TFLite converter emits them: the input tensor first, then the
constants, then one activation per op in execution order (checked against real exports in
tests/test_costs_memory.py). The memory and flash models read this graph; they never see PyTorch.

Per-layer mapping (see `pipeline.supernet.space.layers`): conv / pw_expand / pw_project -> CONV_2D
(int8 filter per output channel, int32 bias), dw -> DEPTHWISE_CONV_2D, add -> ADD, pool -> MEAN over
H and W (plus a RESHAPE when the exporter keeps the pooled dims; nothing on a 1x1 map), fc -> FULLY_CONNECTED (int8 weights
per output channel, int32 bias). BatchNorm and ReLU6 fold into the convolutions; SAME padding is an op
attribute, so there are no PAD ops.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping, NamedTuple

from ..supernet.space import Layer, SearchSpace, SubnetArch, layers

_NO_OPTIONS: Mapping[str, Any] = MappingProxyType({})

# How the exporter writes global average pooling. "mean": MEAN(keep_dims=False) -> (1, C).
# "mean_reshape": MEAN(keep_dims=True) -> (1, 1, 1, C) then RESHAPE -> (1, C).
POOL_STYLES = ("mean", "mean_reshape")
DEFAULT_POOL_STYLE = "mean"
# TF 2.19's converter quantizes FULLY_CONNECTED weights per output channel unless told otherwise.
DEFAULT_FC_PER_CHANNEL = True


class Tensor(NamedTuple):
    shape: tuple[int, ...]
    itemsize: int            # 1 int8, 4 int32
    const: bool
    scales: int = 1          # quantization scales stored (per output channel for conv weights/biases)
    role: str = "act"        # act | weight | bias | axis | shape

    @property
    def nbytes(self) -> int:
        n = self.itemsize
        for d in self.shape:
            n *= d
        return n


class Op(NamedTuple):
    kind: str                # TFLite builtin name
    inputs: tuple[int, ...]  # -1 marks an omitted optional input
    outputs: tuple[int, ...]
    layer: Layer | None      # the space layer it implements (None for RESHAPE and for .tflite graphs)
    options: Mapping[str, Any] = _NO_OPTIONS   # builtin options as the .tflite reader names them


@dataclass(frozen=True)
class Graph:
    tensors: tuple[Tensor, ...]
    ops: tuple[Op, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]

    @property
    def op_kinds(self) -> tuple[str, ...]:
        return tuple(sorted({op.kind for op in self.ops}))


_CONV_KINDS = {"conv": "CONV_2D", "pw_expand": "CONV_2D", "pw_project": "CONV_2D",
               "dw": "DEPTHWISE_CONV_2D"}


def _identity_pool(layer: Layer) -> bool:
    return layer.in_shape[0] * layer.in_shape[1] == 1


def tflite_graph(space: SearchSpace, arch: SubnetArch, *, pool_style: str = DEFAULT_POOL_STYLE,
                 fc_per_channel: bool = DEFAULT_FC_PER_CHANNEL) -> Graph:
    """The exported graph for `arch` (tensor indices as in the .tflite file)."""
    return graph_from_layers(layers(space, arch), pool_style=pool_style, fc_per_channel=fc_per_channel)


def graph_from_layers(net: list[Layer], *, pool_style: str = DEFAULT_POOL_STYLE,
                      fc_per_channel: bool = DEFAULT_FC_PER_CHANNEL) -> Graph:
    if pool_style not in POOL_STYLES:
        raise ValueError(f"pool_style must be one of {POOL_STYLES}, got {pool_style!r}")
    # Constants come right after the input, activations after all constants: count constants first
    # so every index is known when the op is written.
    n_const = 0
    for layer in net:
        if layer.kind == "pool" and _identity_pool(layer):
            continue
        n_const += {"add": 0, "pool": 1 if pool_style == "mean" else 2}.get(layer.kind, 2)
    consts: list[Tensor] = []
    acts: list[Tensor] = [Tensor((1, *net[0].in_shape), 1, False)]
    ops: list[Op] = []
    layer_out: list[int] = []      # tensor index produced by each layer
    act_base = n_const             # activation j (j >= 1) has index act_base + j

    def const(t: Tensor) -> int:
        consts.append(t)
        return len(consts)

    def act(shape) -> int:
        acts.append(Tensor(tuple(shape), 1, False))
        return act_base + len(acts) - 1

    cur = 0
    for layer in net:
        h, w, c = layer.out_shape
        kind = layer.kind
        if kind in _CONV_KINDS:
            k = layer.kernel
            shape = (1, k, k, c) if kind == "dw" else (c, k, k, layer.in_shape[2])
            wt = const(Tensor(shape, 1, True, c, "weight"))
            b = const(Tensor((c,), 4, True, c, "bias"))
            out = act((1, h, w, c))
            ops.append(Op(_CONV_KINDS[kind], (cur, wt, b), (out,), layer,
                          {"padding": "SAME", "strideH": layer.stride, "strideW": layer.stride}))
        elif kind == "add":
            other = 0 if layer.residual_from == 0 else layer_out[layer.residual_from - 1]
            out = act((1, h, w, c))
            ops.append(Op("ADD", (other, cur), (out,), layer))
        elif kind == "pool" and _identity_pool(layer):
            # Mean over a 1x1 map is the identity: the converter drops it and FULLY_CONNECTED reads
            # the (1, 1, 1, C) tensor directly.
            layer_out.append(cur)
            continue
        elif kind == "pool":
            axis = const(Tensor((2,), 4, True, 0, "axis"))
            if pool_style == "mean":
                out = act((1, c))
                ops.append(Op("MEAN", (cur, axis), (out,), layer))
            else:
                mid = act((1, 1, 1, c))
                ops.append(Op("MEAN", (cur, axis), (mid,), layer))
                shp = const(Tensor((2,), 4, True, 0, "shape"))
                out = act((1, c))
                ops.append(Op("RESHAPE", (mid, shp), (out,), None))
        elif kind == "fc":
            q = c if fc_per_channel else 1
            wt = const(Tensor((c, layer.in_shape[2]), 1, True, q, "weight"))
            b = const(Tensor((c,), 4, True, q, "bias"))
            out = act((1, c))
            ops.append(Op("FULLY_CONNECTED", (cur, wt, b), (out,), layer))
        else:
            raise ValueError(f"unknown layer kind {kind!r}")
        cur = out
        layer_out.append(cur)
    assert len(consts) == n_const
    return Graph((acts[0], *consts, *acts[1:]), tuple(ops), (0,), (cur,))


_DTYPE_BYTES = {"INT8": 1, "UINT8": 1, "INT16": 2, "INT32": 4, "FLOAT32": 4, "INT64": 8, "BOOL": 1,
                "FLOAT16": 2, "UINT16": 2, "UINT32": 4, "INT4": 1}


def graph_from_tflite(info) -> Graph:
    """The Graph of a .tflite model's main subgraph (a `pipeline.tflite.ModelInfo`), for any model.

    Tensors keep their file order (the planner's tie-breaking follows it); a tensor without
    quantization parameters has `scales` 0 (TFLM allocates no quantization struct for it)."""
    from ..errors import UnsupportedOpError
    if info.num_subgraphs > 1:
        raise UnsupportedOpError(f"the model has {info.num_subgraphs} subgraphs (control flow); the cost "
                                 "models cover single-subgraph models only",
                                 hint="measure its arena with pipeline.export.measure_arena instead")
    tensors = []
    for t in info.tensors:
        if t.dtype not in _DTYPE_BYTES:
            raise UnsupportedOpError(f"tensor {t.index} ('{t.name}') has type {t.dtype}, which TFLite Micro's "
                                     "int8/int16 kernels do not take", hint="convert the model to full int8")
        if not t.is_constant and t.dtype in ("FLOAT32", "FLOAT16"):
            raise UnsupportedOpError(f"tensor {t.index} ('{t.name}') is a {t.dtype} activation: the cost models "
                                     "cover int8/int16 models (TFLite Micro's integer kernels)",
                                     hint="quantize the model to full int8 (or 16x8) first")
        role = "act" if not t.is_constant else ("bias" if t.dtype in ("INT32", "INT64") and len(t.shape) == 1
                                                 else "weight" if t.scales else "const")
        tensors.append(Tensor(tuple(int(d) for d in t.shape), _DTYPE_BYTES[t.dtype], bool(t.is_constant),
                              len(t.scales), role))
    ops = []
    for op in info.ops:
        if op.is_custom:
            raise UnsupportedOpError(f"op #{op.index} CUSTOM({op.name}) is a custom op, which the cost models "
                                     "do not know", hint="TFLite Micro runs builtin ops only unless you register "
                                     "a custom kernel; rebuild the model with builtins")
        ops.append(Op(op.name, tuple(op.inputs), tuple(op.outputs), None, dict(op.options)))
    return Graph(tuple(tensors), tuple(ops), tuple(info.inputs), tuple(info.outputs))


class Geometry(NamedTuple):
    """What a kernel's cost depends on, read off the op's tensors and options (NHWC shapes)."""
    macs: int
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    filter_shape: tuple[int, ...]
    kernel_h: int = 1
    kernel_w: int = 1
    stride_h: int = 1
    stride_w: int = 1
    pad_h: int = 0               # TFLM's padding.height: floor half of the SAME total
    pad_w: int = 0
    dilation_h: int = 1
    dilation_w: int = 1
    in_itemsize: int = 1


def same_pad(in_size: int, out_size: int, kernel: int, stride: int, dilation: int = 1) -> int:
    """TFLM ComputePaddingHeightWidth: the leading pad of TF SAME padding (the odd byte goes last)."""
    eff = (kernel - 1) * dilation + 1
    return max((out_size - 1) * stride + eff - in_size, 0) // 2


def op_geometry(graph: Graph, op: Op) -> Geometry:
    """MACs, shapes, kernel, stride, padding and dilation of one op, the same for both graph sources."""
    t = graph.tensors
    inp = t[op.inputs[0]] if op.inputs and op.inputs[0] >= 0 else None
    out = t[op.outputs[0]]
    in_shape = inp.shape if inp is not None else ()
    item = inp.itemsize if inp is not None else 1
    o = op.options
    if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(in_shape) == 4:
        flt = t[op.inputs[1]].shape
        kh, kw = flt[1], flt[2]
        n, oh, ow, cout = out.shape
        macs = n * oh * ow * cout * kh * kw * (flt[3] if op.kind == "CONV_2D" else 1)
        sh, sw = int(o.get("strideH", 1)), int(o.get("strideW", 1))
        dh, dw = int(o.get("dilationHFactor", 1)), int(o.get("dilationWFactor", 1))
        same = o.get("padding", "SAME") == "SAME"
        ph = same_pad(in_shape[1], oh, kh, sh, dh) if same else 0
        pw = same_pad(in_shape[2], ow, kw, sw, dw) if same else 0
        return Geometry(macs, in_shape, out.shape, flt, kh, kw, sh, sw, ph, pw, dh, dw, item)
    if op.kind == "FULLY_CONNECTED":
        flt = t[op.inputs[1]].shape
        out_depth = flt[0]
        batches = math.prod(out.shape) // max(out_depth, 1)
        return Geometry(batches * out_depth * flt[-1], in_shape, out.shape, flt, in_itemsize=item)
    if op.kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D") and len(in_shape) == 4:
        kh, kw = int(o.get("filterHeight", 1)), int(o.get("filterWidth", 1))
        sh, sw = int(o.get("strideH", 1)), int(o.get("strideW", 1))
        same = o.get("padding", "SAME") == "SAME"
        ph = same_pad(in_shape[1], out.shape[1], kh, sh) if same else 0
        pw = same_pad(in_shape[2], out.shape[2], kw, sw) if same else 0
        return Geometry(0, in_shape, out.shape, (), kh, kw, sh, sw, ph, pw, in_itemsize=item)
    return Geometry(0, in_shape, out.shape, (), in_itemsize=item)


def tensor_lifetimes(graph: Graph) -> tuple[list[int], list[int]]:
    """(first, last) scope of every tensor as TFLM's micro_allocation_info.cc assigns them: graph inputs
    are created at scope 0, op i runs at scope i + 1, graph outputs live to the last op; -1 for
    constants and unused tensors."""
    n_t, n_ops = len(graph.tensors), len(graph.ops)
    first = [-1] * n_t
    last = [-1] * n_t
    for t in graph.inputs:
        first[t] = last[t] = 0
    for i, op in enumerate(graph.ops):
        for t in op.outputs:
            if t >= 0 and first[t] < 0:
                first[t] = i + 1
        for t in (*op.inputs, *op.outputs):
            if t >= 0:
                last[t] = i + 1
    for t in graph.outputs:
        last[t] = n_ops
    for t, ten in enumerate(graph.tensors):
        if ten.const:
            first[t] = last[t] = -1
    return first, last


ARENA_ALIGN = 16   # MicroArenaBufferAlignment(): every planned buffer starts 16-aligned


def live_activation_bytes(graph: Graph) -> list[int]:
    """Per op: the activation bytes alive while it runs (inputs, outputs and every tensor made earlier
    and read later, such as a residual branch), each rounded up to the planner's 16-byte alignment.

    The one definition of "live activations" in ofa-mcu: the arena replay's lifetimes, MCUNet's peak
    SRAM when maximised over ops (`activation_floor_bytes`), and a lower bound of TFLM's planned head."""
    first, last = tensor_lifetimes(graph)
    live = [t for t in range(len(graph.tensors)) if first[t] >= 0]
    return live_bytes_per_op([-(-graph.tensors[t].nbytes // ARENA_ALIGN) * ARENA_ALIGN for t in live],
                             [first[t] for t in live], [last[t] for t in live], len(graph.ops))


def live_bytes_per_op(sizes, firsts, lasts, n_ops: int) -> list[int]:
    """Bytes alive at each op (scope i + 1) for buffers alive over [first, last] scopes, inclusive."""
    delta = [0] * (n_ops + 2)
    for size, f, la in zip(sizes, firsts, lasts):
        delta[max(f, 1)] += size
        delta[min(la, n_ops) + 1] -= size
    out, run = [], 0
    for scope in range(1, n_ops + 1):
        run += delta[scope]
        out.append(run)
    return out


def activation_floor_bytes(graph: Graph) -> int:
    """The largest live activation set of any op: no arena can be smaller than this plus bookkeeping."""
    per_op = live_activation_bytes(graph)
    return max(per_op) if per_op else 0
