"""Patch-based inference: the patched int8 model equals the unpatched one, and the planner replay of the
patched graph equals the TFLite Micro runtime's arena.

Real models throughout: int8 TFLite models converted by TensorFlow (`pipeline.costs.reference`) and
an `ofa-mcu export` of the tiny trained supernet, run in the real TFLite Micro Python runtime.
"""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.costs import arena_bytes, tflite_graph
from pipeline.costs.patches import choose_patches, patch_costs, patched_tflite_graph
from pipeline.errors import ConfigError
from pipeline.supernet import SearchSpace, StageSpec
from pipeline.supernet.patches import PatchSpec, split_points
from pipeline.supernet.space import SubnetArch

# Three channels, 32 px, a stride-1 last stage: residual adds, PADs at the border, k3/k5/k7 halos.
SPACE = SearchSpace(in_channels=3, num_classes=4, resolutions=(32,), stem_channels=8, stem_stride=2,
                    stages=(StageSpec(16, 2), StageSpec(24, 2), StageSpec(32, 1)),
                    kernel_sizes=(3, 5, 7), expand_ratios=(3, 6), depths=(1, 2), width_mults=(0.5, 1.0))
ARCHS = [SubnetArch.parse("r32-w100k3e6k5e3-w50k7e3k3e6-w100k3e3"),
         SubnetArch.parse("r32-w50k7e3-w100k5e6k3e3-w50k5e3")]
# (arch index, spec): grids that exercise PAD on every border, SAME kept at bottom/right, odd splits,
# residual crops (b2 ends after a block with an ADD), strips and columns.
CASES = [(0, "2x2@b1"), (0, "3x3@b2"), (0, "2x3@b3"), (1, "3x1@b1"), (1, "1x2@b0"), (1, "4x4@b0"), (1, "2x2@b2")]


def test_spec_parsing_and_errors():
    assert str(PatchSpec.parse("3x2@b1")) == "3x2@b1"
    assert PatchSpec.parse("OFF").enabled is False and PatchSpec.parse("1x1").enabled is False
    assert PatchSpec.parse("auto").mode == "auto"
    for bad in ("3", "3x", "axb", "0x2", "2x2@s1"):
        with pytest.raises(ConfigError, match="not a patch setting"):
            PatchSpec.parse(bad)
    # Split points end at block boundaries, never inside the last stage.
    assert [b for b, _ in split_points(SPACE, ARCHS[0])] == [0, 1, 2, 3, 4]
    with pytest.raises(ConfigError, match="cannot split after 9 blocks"):
        choose_patches(SPACE, ARCHS[0], "2x2@b9")
    with pytest.raises(ConfigError, match="do not fit"):
        choose_patches(SPACE, ARCHS[0], "9x9@b4")


def test_halo_recomputation_is_counted():
    plain = patch_costs(SPACE, ARCHS[0], None)
    c1 = patch_costs(SPACE, ARCHS[0], choose_patches(SPACE, ARCHS[0], "2x2@b1"))
    c3 = patch_costs(SPACE, ARCHS[0], choose_patches(SPACE, ARCHS[0], "2x2@b3"))
    assert plain.macs == c1.unpatched_macs
    # Deeper splits recompute more halo: more MACs and more estimated cycles.
    assert plain.macs < c1.macs < c3.macs
    assert 0 < c1.latency_overhead < c3.latency_overhead


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from pipeline.costs.reference import reference_tflites
    paths = reference_tflites(SPACE, ARCHS, tmp_path_factory.mktemp("patch_ref"))
    return [p.read_bytes() for p in paths]


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[f"a{a}-{s}" for a, s in CASES])
def test_patched_outputs_identical_and_graph_predicted(models, case):
    from pipeline.export.patches import allowed_violations, outputs_identical, patch_tflite
    from pipeline.tflite import inspect_tflite

    a, spec = case
    arch = ARCHS[a]
    plan = choose_patches(SPACE, arch, spec)
    plain = models[a]
    patched = patch_tflite(plain, plan)
    x = np.random.default_rng(a).integers(-128, 128, size=(24, 32, 32, 3), dtype=np.int8)
    assert outputs_identical(plain, patched, x) == len(x)
    info, plain_info = inspect_tflite(patched), inspect_tflite(plain)
    assert allowed_violations(info) == []
    # Every patch tensor keeps the quantization of the unpatched tensor it is a region of (so the
    # CONCATENATION of patch outputs needs no requantization and equals the unpatched tensor).
    for k, pt in enumerate(plan.tensors):
        t = next(t for t in info.tensors if t.name == f"patch{k}")
        full = plain_info.input if pt.like < 0 else plain_info.tensors[plain_info.ops[pt.like].outputs[0]]
        assert (t.scales, t.zero_points) == (full.scales, full.zero_points)
    # Weights are shared, not copied: only the int32 slice/pad operands are new constant bytes.
    new_consts = sum(t.nbytes for t in info.tensors if t.is_constant and t.dtype == "INT32" and
                     t.name.startswith("patches/"))
    assert info.weight_bytes - plain_info.weight_bytes == new_consts
    assert new_consts < 0.05 * plain_info.weight_bytes
    # The cost model's patched graph is the written one: same ops, same activation tensors.
    g = patched_tflite_graph(SPACE, arch, plan)
    assert [op.name for op in info.ops] == [op.kind for op in g.ops]
    acts = [[(i, tuple(info.tensors[i].shape)) for i in op.inputs + op.outputs if not info.tensors[i].is_constant]
            for op in info.ops]
    assert acts == [[(i, g.tensors[i].shape) for i in op.inputs + op.outputs if not g.tensors[i].const]
                    for op in g.ops]


@pytest.mark.slow
@pytest.mark.parametrize("case", [CASES[0], CASES[1], CASES[5]], ids=lambda c: f"a{c[0]}-{c[1]}")
def test_planner_replay_equals_runtime_arena(models, case, tmp_path):
    from pipeline.export import measure_arena
    from pipeline.export.patches import patch_tflite

    a, spec = case
    arch = ARCHS[a]
    plan = choose_patches(SPACE, arch, spec)
    path = tmp_path / "patched.tflite"
    path.write_bytes(patch_tflite(models[a], plan))
    measured = measure_arena(path)
    pred = arena_bytes(patched_tflite_graph(SPACE, arch, plan), pointer_bytes=8, runtime="host")
    assert pred.head == measured.head_bytes                     # the greedy plan itself is exact
    assert 0 <= pred.total - measured.min_arena_bytes <= 64, (pred, measured.min_arena_bytes)


@pytest.mark.slow
def test_patched_arena_below_unpatched_at_96px(tmp_path):
    """At 96 px the early stages set the peak; patching them must lower the measured arena."""
    from pipeline.costs.reference import reference_tflites
    from pipeline.export import measure_arena
    from pipeline.export.patches import outputs_identical, patch_tflite

    space = SearchSpace(in_channels=3, num_classes=2, resolutions=(96,))
    arch = SubnetArch.parse("r96-w35k3e6k3e3-w35k3e3k3e3-w50k3e3k3e3-w50k3e3k3e3")
    (p,) = reference_tflites(space, [arch], tmp_path)
    plan = choose_patches(space, arch, "auto")
    assert plan is not None
    path = tmp_path / "patched.tflite"
    path.write_bytes(patch_tflite(p.read_bytes(), plan))
    x = np.random.default_rng(0).integers(-128, 128, size=(4, 96, 96, 3), dtype=np.int8)
    assert outputs_identical(p.read_bytes(), path.read_bytes(), x) == len(x)
    plain, patched = measure_arena(p).min_arena_bytes, measure_arena(path).min_arena_bytes
    est = patch_costs(space, arch, plan)
    assert patched < 0.75 * plain, (plan.spec, patched, plain)
    assert abs(est.arena_bytes - patched) <= 64 and abs(est.unpatched_arena_bytes - plain) <= 64
    assert arena_bytes(tflite_graph(space, arch)).total == est.unpatched_arena_bytes


@pytest.mark.slow
def test_export_stage_patched_identical_on_whole_test_split(trained_supernet_dir, tmp_path):
    from pipeline._io import read_json
    from pipeline.export import export_subnet
    from pipeline.supernet import load_supernet

    space = load_supernet(trained_supernet_dir).space
    arch = space.largest()
    report = export_subnet(trained_supernet_dir, arch, tmp_path, patches="2x2@b1", num_calib=50)
    pt = report["patches"]
    assert pt["identical"] and pt["samples_compared"] == report["data"]["test_split"]
    assert pt["plan"]["spec"] == "2x2@b1"
    assert (tmp_path / "model_int8.unpatched.tflite").exists()
    assert read_json(tmp_path / "export_report.json")["patches"]["identical"]
    assert pt["arena_bytes"] == report["arena"]["min_arena_bytes"]


# -- search dimension ---------------------------------------------------------------------------------
SPACE96 = SearchSpace(in_channels=1, num_classes=4, resolutions=(64, 80, 96), stem_channels=24, stem_stride=2,
                      stages=(StageSpec(24, 2), StageSpec(32, 2), StageSpec(48, 2), StageSpec(64, 1)),
                      kernel_sizes=(3, 5), expand_ratios=(4, 6), depths=(1, 2), width_mults=(0.75, 1.0))


@pytest.mark.slow
def test_search_gives_a_256k_board_a_patched_96px_subnet():
    """No unpatched 96 px subnet of SPACE96 fits a 256 KiB board; with patches the search finds one."""
    from pipeline.boards import load_board
    from pipeline.costs import estimate
    from pipeline.search import search
    from pipeline.search.predictor import AccuracyPredictor, sample_archs
    from pipeline.supernet.space import macs

    import torch
    torch.set_num_threads(1)
    board = load_board("nucleo-f412zg")
    smallest96 = SubnetArch(96, *[getattr(SPACE96.smallest(), f) for f in ("widths", "kernels", "expands")])
    assert estimate(SPACE96, smallest96, board).sram_bytes > board.usable_sram_bytes
    # A real MLP predictor fitted to a stand-in for accuracy that rewards input resolution most.
    archs = sample_archs(SPACE96, 80, seed=5)
    y = np.log([macs(SPACE96, a) for a in archs])
    y = 0.4 * np.array([a.resolution for a in archs]) / 96 + 0.1 * (y - y.min()) / np.ptp(y)
    pred = AccuracyPredictor(SPACE96, hidden=32, seed=0).fit(archs, 0.45 + y, epochs=150)
    kw = dict(predictor=pred, population=16, generations=3, parents=4, n_mutate=8, n_crossover=8, seed=0)
    plain = search(SPACE96, board, **kw)
    assert plain.best.arch.resolution < 96 and plain.best.patches == "off"
    patched = search(SPACE96, board, patches="auto", **kw)
    best = patched.best
    assert best.arch.resolution == 96 and best.patches != "off"
    assert best.sram_bytes <= board.usable_sram_bytes
    assert patched.to_dict()["best"]["patches"] == best.patches


@pytest.mark.parametrize("command", ["export", "catalog"])
def test_bad_patches_value_is_a_config_error_before_any_work(command, tmp_path):
    import subprocess
    import sys

    args = {"export": ["--supernet", str(tmp_path), "--arch", "r24-w50k3e3", "--out", str(tmp_path / "o")],
            "catalog": ["--supernet", str(tmp_path), "--out", str(tmp_path / "o")]}[command]
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", command, *args, "--patches", "3by3"],
                       capture_output=True, text=True)
    assert r.returncode == 5, r.stderr
    assert "not a patch setting" in r.stderr + r.stdout and "Traceback" not in r.stderr
