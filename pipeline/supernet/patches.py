"""Patch-based inference (MCUNetV2) as a plan over `layers(space, arch)`: geometry only, no TFLite.

The layers before a split point run on R x C spatial patches of the split tensor, each with the
receptive-field halo it needs; the rest of the network runs once on the concatenated patches. Every
patch branch is a chain of standard TFLite ops:

- STRIDED_SLICE of the model input (the patch's region, halo included, clipped to the image);
- per layer, the *same* op with VALID padding; where the patch touches the true image border the
  SAME padding the unpatched layer would apply there is made explicit with a PAD (int8 PAD fills with
  the tensor's zero point, exactly what a SAME-padded int8 convolution reads outside the image),
  or, when SAME on the patch pads exactly those sides by those amounts (e.g. the bottom/right
  patches of a stride-2 3x3 conv on an even size), the op keeps SAME and needs no PAD;
- a STRIDED_SLICE crop where a tensor was computed on a larger region than a consumer reads (the
  residual input of an ADD, which needs no halo);
- CONCATENATION of the patch outputs along W per patch row, then along H.

Every patch tensor is a region of a tensor of the unpatched graph and keeps its quantization, and
every int8 kernel computes an output pixel from its receptive field alone, so the patched int8 model
computes bit for bit what the unpatched one does (tests/test_patches.py checks it on real models).

`PatchSpec` is the user-facing choice (`off`, `auto`, `RxC` or `RxC@bK`: patch the stem and the
first K inverted-residual blocks); `patch_plan` is the geometry; `rewrite_graph` turns a plan plus the
plain op list into the patched op list, and is the one transform both the exporter
(`pipeline.export.patches`) and the cost model (`pipeline.costs.graph.patched_tflite_graph`) run,
so the replayed planner sees exactly the graph the runtime gets.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from ..errors import ConfigError
from .space import Layer, SearchSpace, SubnetArch, layers, same_padding

INPUT = -1   # plan reference to the model's (full) input tensor
SPLIT = -2   # plan reference to the full split tensor (output of the last CONCATENATION)

_SPEC_RE = re.compile(r"^(\d+)x(\d+)(?:@b(\d+))?$")


@dataclass(frozen=True)
class PatchSpec:
    """How to patch: `rows` x `cols` patches of the output of the first `blocks` inverted-residual
    blocks (0: the stem alone).

    mode "off" (no patching), "auto" (let `choose_patches` decide) or "grid" (rows, cols given;
    blocks None = let `choose_patches` pick the split)."""
    mode: str = "off"
    rows: int = 1
    cols: int = 1
    blocks: int | None = None

    @classmethod
    def parse(cls, text: "str | PatchSpec | None") -> "PatchSpec":
        if isinstance(text, PatchSpec):
            return text
        t = (text or "off").strip().lower()
        if t in ("off", "none", "0"):
            return cls("off")
        if t == "auto":
            return cls("auto")
        m = _SPEC_RE.match(t)
        if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
            raise ConfigError(f"--patches '{text}' is not a patch setting",
                              hint="use off, auto, RxC (e.g. 3x3) or RxC@bK (patch the stem and the "
                                   "first K blocks)")
        rows, cols = int(m.group(1)), int(m.group(2))
        blocks = int(m.group(3)) if m.group(3) is not None else None
        if rows * cols == 1:
            return cls("off")
        return cls("grid", rows, cols, blocks)

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def __str__(self) -> str:
        if self.mode != "grid":
            return self.mode
        return f"{self.rows}x{self.cols}" + (f"@b{self.blocks}" if self.blocks is not None else "")

    def to_dict(self) -> dict:
        return {"spec": str(self), "rows": self.rows, "cols": self.cols, "blocks": self.blocks}


def split_points(space: SearchSpace, arch: SubnetArch) -> list[tuple[int, int]]:
    """(blocks, stop) pairs where a patched prefix may end: after the stem (0 blocks) and after each
    inverted-residual block but those of the last stage; `stop` is the number of layers in the
    prefix. Block ends keep every residual on one side of the split."""
    net = layers(space, arch)
    out = [(0, 1)]
    names = [ly.name.split(".")[0] for ly in net]
    last_stage = len(space.stages) - 1
    n = 0
    for i, ly in enumerate(net[:-1]):
        if re.fullmatch(r"s\d+b\d+", names[i]) and names[i + 1] != names[i]:
            if names[i].startswith(f"s{last_stage}b"):
                break
            n += 1
            out.append((n, i + 1))
    return out


# -- geometry -------------------------------------------------------------------------------------
Region = tuple[int, int, int, int]   # (h0, h1, w0, w1), half-open, in full-tensor coordinates


@dataclass(frozen=True)
class PlanTensor:
    shape: tuple[int, int, int, int]   # (1, h, w, c)
    like: int                          # layer whose output it is a region of (-1: the model input)


@dataclass(frozen=True)
class PlanOp:
    kind: str                          # STRIDED_SLICE | PAD | LAYER | CONCATENATION
    inputs: tuple[int, ...]            # plan tensor ids, INPUT or SPLIT
    output: int
    layer: int | None = None           # LAYER: index into the net
    begin: tuple[int, int] = (0, 0)    # STRIDED_SLICE: (h, w) start inside its input
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)   # PAD: top, bottom, left, right; LAYER with
    #                                    `same`: the border padding SAME applies to the patch
    axis: int = 0                      # CONCATENATION
    same: bool = False                 # LAYER: keep SAME padding (it pads the patch exactly as needed)


@dataclass(frozen=True)
class PatchPlan:
    rows: int
    cols: int
    blocks: int
    stop: int                          # layers [0, stop) run per patch
    tensors: tuple[PlanTensor, ...]
    ops: tuple[PlanOp, ...]
    net: tuple[Layer, ...] = field(repr=False, default=())

    def patched_layer(self, op: PlanOp) -> Layer:
        """The net's layer with the patch's shapes and VALID padding (what the LAYER op computes)."""
        ly = self.net[op.layer]
        shape_in = self.tensors[op.inputs[-1]].shape[1:] if op.inputs[-1] >= 0 else ly.in_shape
        shape_out = self.tensors[op.output].shape[1:]
        return Layer(ly.kind, ly.name, tuple(shape_in), tuple(shape_out), ly.kernel, ly.stride,
                     op.pads if op.same else (0, 0, 0, 0), ly.relu6, ly.residual_from)

    @property
    def macs(self) -> int:
        """MACs of the patched network: patch branches (halos recomputed) plus the unpatched rest."""
        branch = sum(self.patched_layer(op).macs for op in self.ops if op.kind == "LAYER")
        return branch + sum(ly.macs for ly in self.net[self.stop:])

    @property
    def spec(self) -> str:
        return f"{self.rows}x{self.cols}@b{self.blocks}"

    def to_dict(self) -> dict:
        counts: dict[str, int] = {}
        for op in self.ops:
            counts[op.kind] = counts.get(op.kind, 0) + 1
        return {"spec": self.spec, "rows": self.rows, "cols": self.cols, "blocks": self.blocks,
                "stop_layer": self.stop,
                "split_tensor": list(self.net[self.stop - 1].out_shape), "op_counts": counts}


def _split(n: int, parts: int) -> list[tuple[int, int]]:
    """`parts` nearly equal half-open intervals covering [0, n), larger ones first."""
    base, extra = divmod(n, parts)
    out, a = [], 0
    for i in range(parts):
        b = a + base + (1 if i < extra else 0)
        out.append((a, b))
        a = b
    return out


def _inputs_of(net: Sequence[Layer], j: int) -> tuple[int, ...]:
    """Tensor ids (producing layer, -1 = model input) layer j reads, in TFLite input order."""
    if net[j].kind == "add":
        return (net[j].residual_from - 1, j - 1)
    return (j - 1,)


def _needed(ly: Layer, out: Region, in_h: int, in_w: int) -> tuple[Region, tuple[int, int, int, int]]:
    """Input region (clipped to the tensor) and border padding a layer needs for output region `out`."""
    h0, h1, w0, w1 = out
    if ly.kind == "add" or ly.kernel == 1 and ly.stride == 1:
        return out, (0, 0, 0, 0)
    k, s = ly.kernel, ly.stride
    pt, _, pl, _ = ly.pad
    a_h, b_h = h0 * s - pt, (h1 - 1) * s - pt + k
    a_w, b_w = w0 * s - pl, (w1 - 1) * s - pl + k
    clipped = (max(a_h, 0), min(b_h, in_h), max(a_w, 0), min(b_w, in_w))
    pads = (max(-a_h, 0), max(b_h - in_h, 0), max(-a_w, 0), max(b_w - in_w, 0))
    return clipped, pads


def _hull(a: Region | None, b: Region) -> Region:
    if a is None:
        return b
    return (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))


def patch_plan(net: Sequence[Layer], stop: int, rows: int, cols: int, blocks: int = 0) -> PatchPlan:
    """The patched prefix of `net`: layers [0, stop) on rows x cols patches of layer stop-1's output."""
    net = tuple(net)
    if not 1 <= stop < len(net):
        raise ConfigError(f"patch split after layer {stop} is outside the network (1..{len(net) - 1})")
    sh, sw, _ = net[stop - 1].out_shape
    if rows > sh or cols > sw:
        raise ConfigError(f"{rows}x{cols} patches do not fit the {sh}x{sw} split tensor",
                          hint="use fewer patches or split after fewer blocks")
    for j in range(stop, len(net)):
        if any(0 <= t < stop - 1 for t in _inputs_of(net, j)):
            raise ConfigError(f"layer {net[j].name} reads a tensor inside the patched prefix: "
                              f"split at a block boundary")
    tensors: list[PlanTensor] = []
    ops: list[PlanOp] = []

    def new(shape, like) -> int:
        tensors.append(PlanTensor(tuple(int(d) for d in shape), like))
        return len(tensors) - 1

    def in_shape(t: int) -> tuple[int, int, int]:
        return net[0].in_shape if t < 0 else net[t].out_shape

    row_outs = []
    for (r0, r1) in _split(sh, rows):
        patch_outs = []
        for (c0, c1) in _split(sw, cols):
            # Backward: the region of every prefix tensor this patch needs (hull over consumers).
            need: dict[int, Region] = {stop - 1: (r0, r1, c0, c1)}
            reads: dict[int, list[tuple[Region, tuple[int, int, int, int]]]] = {}
            for j in range(stop - 1, -1, -1):
                out = need[j]
                for t in _inputs_of(net, j):
                    h, w, _ = in_shape(t)
                    region, pads = _needed(net[j], out, h, w)
                    need[t] = _hull(need.get(t), region)
                    reads.setdefault(j, []).append((region, pads))
            # Forward: emit the branch.
            have: dict[int, int] = {}

            def region_tensor(t: int, region: Region) -> int:
                """Plan tensor holding `region` of tensor t (crop of what was computed if smaller)."""
                src = need[t]
                if region == src:
                    return have[t]
                c = in_shape(t)[2]
                out_id = new((1, region[1] - region[0], region[3] - region[2], c), t)
                ops.append(PlanOp("STRIDED_SLICE", (have[t],), out_id,
                                  begin=(region[0] - src[0], region[2] - src[2])))
                return out_id

            h0, h1, w0, w1 = need[-1]
            have[-1] = new((1, h1 - h0, w1 - w0, net[0].in_shape[2]), -1)
            ops.append(PlanOp("STRIDED_SLICE", (INPUT,), have[-1], begin=(h0, w0)))
            for j in range(stop):
                ins = []
                same = False
                for t, (region, pads) in zip(_inputs_of(net, j), reads[j]):
                    x = region_tensor(t, region)
                    ly = net[j]
                    if any(pads) and ly.kind != "add":
                        same = (same_padding(region[1] - region[0], ly.kernel, ly.stride) == pads[:2]
                                and same_padding(region[3] - region[2], ly.kernel, ly.stride) == pads[2:])
                    if any(pads) and not same:
                        c = in_shape(t)[2]
                        shp = tensors[x].shape
                        padded = new((1, shp[1] + pads[0] + pads[1], shp[2] + pads[2] + pads[3], c), t)
                        ops.append(PlanOp("PAD", (x,), padded, pads=pads))
                        x = padded
                    ins.append(x)
                o = need[j]
                have[j] = new((1, o[1] - o[0], o[3] - o[2], net[j].out_shape[2]), j)
                ops.append(PlanOp("LAYER", tuple(ins), have[j], layer=j, same=same,
                                  pads=reads[j][-1][1] if same else (0, 0, 0, 0)))
            patch_outs.append(have[stop - 1])
        if cols > 1:
            strip = SPLIT if rows == 1 else new((1, r1 - r0, sw, net[stop - 1].out_shape[2]), stop - 1)
            ops.append(PlanOp("CONCATENATION", tuple(patch_outs), strip, axis=2))
            row_outs.append(strip)
        else:
            row_outs.append(patch_outs[0])
    if rows > 1:
        ops.append(PlanOp("CONCATENATION", tuple(row_outs), SPLIT, axis=1))
    return PatchPlan(rows, cols, blocks, stop, tuple(tensors), tuple(ops), net)


# -- the one graph transform (used by the exporter and by the cost model) ----------------------------
@dataclass(frozen=True)
class NewConst:
    """An int32 operand the patched graph adds: slice begin/end/strides or PAD paddings."""
    values: tuple[tuple[int, ...], ...] | tuple[int, ...]
    shape: tuple[int, ...]


@dataclass(frozen=True)
class RewrittenOp:
    kind: str                      # builtin name; LAYER ops keep the original op's kind
    inputs: tuple[int, ...]        # indices into RewrittenGraph.tensors
    outputs: tuple[int, ...]
    source_op: int | None          # original op index (LAYER ops and ops after the split)
    plan_op: PlanOp | None = None
    valid_padding: bool = False    # a patched conv whose border padding is explicit (or absent)


@dataclass(frozen=True)
class RewrittenGraph:
    """Tensors are ("old", original index) | ("const", NewConst) | ("act", plan tensor id)."""
    tensors: tuple[tuple[str, object], ...]
    ops: tuple[RewrittenOp, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


def rewrite_graph(plan: PatchPlan, *, op_io: Sequence[tuple[Sequence[int], Sequence[int]]],
                  is_const: Sequence[bool], op_kinds: Sequence[str], graph_input: int,
                  graph_output: int) -> RewrittenGraph:
    """Apply `plan` to a plain graph given as per-op (inputs, outputs) tensor indices.

    The first `plan.stop` ops must be the prefix layers in order (one op per layer). Tensor order of
    the result: the input, the original constants, the new constants, then activations in the order
    ops produce them (the order the TFLite converter uses, and the planner's tie-break order)."""
    stop = plan.stop
    kinds = {"conv": "CONV_2D", "pw_expand": "CONV_2D", "pw_project": "CONV_2D",
             "dw": "DEPTHWISE_CONV_2D", "add": "ADD"}
    for j in range(stop):
        if op_kinds[j] != kinds.get(plan.net[j].kind):
            raise ConfigError(f"op #{j} is {op_kinds[j]}, but layer {plan.net[j].name} should be "
                              f"{kinds.get(plan.net[j].kind)}: the model is not the arch's graph",
                              hint="patch the model exported for this arch")
    split_tensor = op_io[stop - 1][1][0]
    consts = [i for i, c in enumerate(is_const) if c]
    const_keys: dict[NewConst, int] = {}
    new_consts: list[NewConst] = []

    def const(c: NewConst) -> tuple[str, NewConst]:
        if c not in const_keys:
            const_keys[c] = len(new_consts)
            new_consts.append(c)
        return ("const", c)

    # First pass: ops with symbolic tensor keys.
    sym_ops: list[tuple[str, tuple, tuple, int | None, PlanOp | None, bool]] = []

    def act_key(ref: int):
        if ref == INPUT:
            return ("old", graph_input)
        if ref == SPLIT:
            return ("old", split_tensor)
        return ("act", ref)

    for pop in plan.ops:
        ins = tuple(act_key(r) for r in pop.inputs)
        out = act_key(pop.output)
        if pop.kind == "STRIDED_SLICE":
            shp = plan.tensors[pop.output].shape
            b = (0, pop.begin[0], pop.begin[1], 0)
            e = (1, b[1] + shp[1], b[2] + shp[2], shp[3])
            ins += (const(NewConst(b, (4,))), const(NewConst(e, (4,))), const(NewConst((1, 1, 1, 1), (4,))))
            sym_ops.append(("STRIDED_SLICE", ins, (out,), None, pop, False))
        elif pop.kind == "PAD":
            t, bo, l, r = pop.pads
            ins += (const(NewConst(((0, 0), (t, bo), (l, r), (0, 0)), (4, 2))),)
            sym_ops.append(("PAD", ins, (out,), None, pop, False))
        elif pop.kind == "CONCATENATION":
            sym_ops.append(("CONCATENATION", ins, (out,), None, pop, False))
        else:
            src = pop.layer
            orig_in, orig_out = op_io[src]
            if plan.net[src].kind == "add":
                full = ins
            else:
                full = (ins[0],) + tuple(("old", i) for i in orig_in[1:])
            sym_ops.append((op_kinds[src], full, (out,), src, pop, plan.net[src].kind != "add" and not pop.same))
    for k in range(stop, len(op_io)):
        ins, outs = op_io[k]
        sym_ops.append((op_kinds[k], tuple(("old", i) for i in ins), tuple(("old", i) for i in outs),
                        k, None, False))

    # Second pass: number the tensors.
    order: list[tuple[str, object]] = [("old", graph_input)] + [("old", i) for i in consts if i != graph_input]
    order += [("const", c) for c in new_consts]
    index = {key: n for n, key in enumerate(order)}
    for _, ins, outs, *_ in sym_ops:
        for key in outs:
            if key not in index:
                index[key] = len(order)
                order.append(key)
    ops = []
    for kind, ins, outs, src, pop, valid in sym_ops:
        ops.append(RewrittenOp(kind, tuple(index[k] if k[1] != -1 else -1 for k in ins),
                               tuple(index[k] for k in outs), src, pop, valid))
    return RewrittenGraph(tuple(order), tuple(ops), (index[("old", graph_input)],),
                          (index[("old", graph_output)],))


def halo_overhead(space: SearchSpace, arch: SubnetArch, plan: PatchPlan) -> float:
    """Extra MACs of the patched network over the plain one (0.10 = 10% more)."""
    plain = sum(ly.macs for ly in layers(space, arch))
    return plan.macs / plain - 1.0
