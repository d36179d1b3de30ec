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

from dataclasses import dataclass
from typing import NamedTuple

from ..supernet.space import Layer, SearchSpace, SubnetArch, layers

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
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    layer: Layer | None      # the space layer it implements (None for RESHAPE)


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
            ops.append(Op(_CONV_KINDS[kind], (cur, wt, b), (out,), layer))
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
