"""Costs of patch-based inference: the patched graph, its arena and latency, and the patch choice.

`patched_tflite_graph(space, arch, plan)` is the graph `pipeline.export.patches.patch_tflite`
writes, built with the same transform (`pipeline.supernet.patches.rewrite_graph`) from the plain
`tflite_graph`, so `memory.arena_bytes` replays TFLM's planner on exactly the runtime's graph (tests:
planner head == measured head). Patched convolutions carry a `Layer` with the patch shapes and VALID
padding, so `latency.graph_cycles` counts the MACs of every halo row recomputed, and the slices, pads
and concatenations as ops of class "other".

`choose_patches` turns a `PatchSpec` into a plan: a fixed grid and split as given; a grid without a
split, or `auto`, by search over split points (and grids) for the smallest estimated arena whose
estimated latency overhead stays within `max_overhead`.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ..supernet.patches import PatchPlan, PatchSpec, patch_plan, rewrite_graph, split_points
from ..supernet.space import SearchSpace, SubnetArch, layers
from .graph import Graph, Op, Tensor, tflite_graph
from .latency import default_latency_model, graph_cycles
from .memory import arena_bytes

#: Grids `auto` tries (rows, cols); TFLM's CONCATENATION takes at most 10 inputs.
AUTO_GRIDS = ((2, 2), (3, 3), (4, 4), (2, 1), (3, 2), (4, 3), (5, 5))
#: The search's cheaper `auto`: the grids and split depths that won on the 96-160 px scans
#: (benchmarks/README.md, patch-based inference): a few grids, at most the first two blocks.
SEARCH_GRIDS = ((2, 2), (3, 2), (3, 3), (4, 3))
SEARCH_MAX_BLOCKS = 2
MAX_OVERHEAD = 0.15


def patched_tflite_graph(space: SearchSpace, arch: SubnetArch, plan: PatchPlan) -> Graph:
    """The patched graph (tensor indices as in the patched .tflite)."""
    plain = tflite_graph(space, arch)
    rg = rewrite_graph(plan, op_io=[(op.inputs, op.outputs) for op in plain.ops],
                       is_const=[t.const for t in plain.tensors], op_kinds=[op.kind for op in plain.ops],
                       graph_input=plain.inputs[0], graph_output=plain.outputs[0])
    tensors = []
    for key, val in rg.tensors:
        if key == "old":
            tensors.append(plain.tensors[val])
        elif key == "const":
            tensors.append(Tensor(tuple(val.shape), 4, True, 0, "shape"))
        else:
            tensors.append(Tensor(plan.tensors[val].shape, 1, False))
    ops = []
    for rop in rg.ops:
        if rop.plan_op is not None and rop.plan_op.kind == "LAYER":
            layer = plan.patched_layer(rop.plan_op)
        elif rop.source_op is not None:
            layer = plain.ops[rop.source_op].layer
        else:
            layer = None
        ops.append(Op(rop.kind, rop.inputs, rop.outputs, layer))
    return Graph(tuple(tensors), tuple(ops), rg.inputs, rg.outputs)


@dataclass(frozen=True)
class PatchCosts:
    plan: PatchPlan | None
    arena_bytes: int           # host runtime replay (pointer_bytes 8)
    unpatched_arena_bytes: int
    cycles: float              # default latency model of `core`
    unpatched_cycles: float
    macs: int
    unpatched_macs: int

    @property
    def arena_ratio(self) -> float:
        return self.arena_bytes / self.unpatched_arena_bytes

    @property
    def latency_overhead(self) -> float:
        return self.cycles / self.unpatched_cycles - 1.0

    def to_dict(self) -> dict:
        return {"patches": self.spec, "arena_bytes": self.arena_bytes,
                "unpatched_arena_bytes": self.unpatched_arena_bytes, "arena_ratio": round(self.arena_ratio, 4),
                "latency_overhead": round(self.latency_overhead, 4),
                "mac_overhead": round(self.macs / self.unpatched_macs - 1.0, 4)}

    @property
    def spec(self) -> str:
        if self.plan is None:
            return "off"
        return self.plan.spec


def patch_costs(space: SearchSpace, arch: SubnetArch, plan: PatchPlan | None, *, pointer_bytes: int = 8,
                core: str = "cortex-m4") -> PatchCosts:
    runtime = "host" if pointer_bytes == 8 else "cortex-m"
    plain = tflite_graph(space, arch)
    model = default_latency_model(core)
    base_arena = arena_bytes(plain, pointer_bytes=pointer_bytes, runtime=runtime, core=core).total
    base_cyc = sum(graph_cycles(plain, model))
    base_macs = sum(ly.macs for ly in layers(space, arch))
    if plan is None:
        return PatchCosts(None, base_arena, base_arena, base_cyc, base_cyc, base_macs, base_macs)
    g = patched_tflite_graph(space, arch, plan)
    return PatchCosts(plan, arena_bytes(g, pointer_bytes=pointer_bytes, runtime=runtime, core=core).total,
                      base_arena, sum(graph_cycles(g, model)), base_cyc, plan.macs, base_macs)


def _candidates(space: SearchSpace, arch: SubnetArch, spec: PatchSpec, grids=AUTO_GRIDS,
                max_blocks: int | None = None):
    net = layers(space, arch)
    points = split_points(space, arch)
    if max_blocks is not None and spec.blocks is None:
        points = [p for p in points if p[0] <= max_blocks]
    if spec.mode == "grid" and spec.blocks is not None:
        points = [p for p in points if p[0] == spec.blocks]
        if not points:
            from ..errors import ConfigError
            raise ConfigError(f"--patches {spec}: cannot split after {spec.blocks} blocks; allowed: "
                              f"{[b for b, _ in split_points(space, arch)]}",
                              hint="blocks of the last stage are never patched")
    grids = [(spec.rows, spec.cols)] if spec.mode == "grid" else grids
    for blocks, stop in points:
        h, w, _ = net[stop - 1].out_shape
        for r, c in grids:
            if (r <= h and c <= w) or len(points) == 1:   # a fixed split: patch_plan says why not
                yield patch_plan(net, stop, r, c, blocks)


def choose_patches(space: SearchSpace, arch: SubnetArch, spec: "PatchSpec | str", *,
                   max_overhead: float = MAX_OVERHEAD, pointer_bytes: int = 8,
                   core: str = "cortex-m4", grids=AUTO_GRIDS, max_blocks: int | None = None
                   ) -> PatchPlan | None:
    """The plan for `spec` (None for `off`, or when `auto` finds nothing that lowers the arena)."""
    spec = PatchSpec.parse(spec)
    if not spec.enabled:
        return None
    if spec.mode == "grid" and spec.blocks is not None:
        return next(_candidates(space, arch, spec))
    scored = [patch_costs(space, arch, p, pointer_bytes=pointer_bytes, core=core)
              for p in _candidates(space, arch, spec, grids, max_blocks)]
    if not scored:
        return None
    within = [c for c in scored if c.latency_overhead <= max_overhead]
    if spec.mode == "auto":
        within = [c for c in within if c.arena_bytes < c.unpatched_arena_bytes]
        if not within:
            return None
    pool = within or scored
    return min(pool, key=lambda c: (c.arena_bytes, c.cycles)).plan


@lru_cache(maxsize=65536)
def search_plan(space: SearchSpace, arch: SubnetArch, spec: str = "auto", core: str = "cortex-m4"
                ) -> PatchPlan | None:
    """The plan the search gives `arch` (cached): `auto` over SEARCH_GRIDS / SEARCH_MAX_BLOCKS,
    ranked by the 32-bit Cortex-M replay, or the fixed spec."""
    return choose_patches(space, arch, spec, pointer_bytes=4, core=core, grids=SEARCH_GRIDS,
                          max_blocks=SEARCH_MAX_BLOCKS)


def patched_estimate(space: SearchSpace, arch: SubnetArch, board, plan: PatchPlan | None, *,
                     calibration=None):
    """`estimate()` of the patched model (a `Costs`), with the same SRAM accounting: the firmware arena is
    the 32-bit CMSIS-NN replay of the patched graph plus the fixed slack (`firmware_arena_bytes`)."""
    from .arena import firmware_arena_bytes
    from .estimate import _KIND_CORE, APP_SRAM_BYTES, Costs, _latency_model, estimate
    from .flash import APP_CODE_BYTES, model_bytes, runtime_code_bytes

    if plan is None:
        return estimate(space, arch, board, calibration=calibration)
    g = patched_tflite_graph(space, arch, plan)
    core = _KIND_CORE[board.cmsis_nn_kernels]
    host = arena_bytes(g, pointer_bytes=8, runtime="host").total
    dev = arena_bytes(g, pointer_bytes=4, runtime="cortex-m", core=core).total
    fw = firmware_arena_bytes(dev)
    cycles = sum(graph_cycles(g, _latency_model(board, calibration)))
    mb = model_bytes(g)
    runtime = runtime_code_bytes(g.op_kinds, board.core)
    return Costs(arena_bytes=dev, sram_bytes=fw + APP_SRAM_BYTES, model_bytes=mb,
                 flash_bytes=mb + runtime + APP_CODE_BYTES, latency_ms=cycles / board.clock_hz * 1e3,
                 macs=plan.macs, params=sum(ly.params for ly in plan.net), arena_host_bytes=host,
                 firmware_arena_bytes=fw, runtime_code_bytes=runtime, cycles=int(round(cycles)))
