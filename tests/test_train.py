"""Training: BN re-calibration, evaluation, schedules, resume, DDP, the CLI, and that PS learns."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from conftest import make_tiny_space
from pipeline.cli import main as cli_main
from pipeline.data import load_dataset
from pipeline.errors import ConfigError
from pipeline.supernet import build_supernet, load_supernet
from pipeline.train import (Phase, Schedule, TrainConfig, calibrate_bn, calibrated_subnet, default_schedule,
                            evaluate, to_input, train_supernet)

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]


def short_schedule() -> Schedule:
    """Three phases that exercise everything resume and DDP must carry: a frozen teacher, channel
    sorting at a phase start, several subnets per step with the sandwich rule and in-place
    distillation, elastic everything."""
    return Schedule(phases=(
        Phase("largest", 1, 0.1),
        Phase("kernel", 1, 0.03, {"resolutions": "all", "kernel_sizes": "all"}, kd_weight=1.0),
        Phase("all", 2, 0.03, {"resolutions": "all", "kernel_sizes": "all", "depths": "all",
                               "expand_ratios": "all", "width_mults": "all"},
              subnets_per_step=3, kd_weight=1.0, sandwich=True, kd_teacher="inplace"),
    ))


def config(out, **kw) -> TrainConfig:
    base = dict(data="builtin:digits", out=out, space=make_tiny_space(), schedule=short_schedule(),
                threads=1, quiet=True, epoch_eval=False, eval_images=100)
    base.update(kw)
    return TrainConfig(**base)


def weights(sn_dir: Path) -> dict:
    return torch.load(Path(sn_dir) / "weights.pt", weights_only=True)


# -- BN re-calibration and evaluation -------------------------------------------------------------
def test_calibrate_bn_gives_exact_statistics_whatever_the_batching(tiny_space):
    sn = build_supernet(tiny_space, seed=0)
    arch = tiny_space.sample(np.random.default_rng(0), resolutions=(16,))
    x = torch.rand(60, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    one = calibrate_bn(sn.extract(arch), x, batch_size=60)
    chunked = calibrate_bn(sn.extract(arch), x, batch_size=7)
    # The stem BN sees the same inputs either way: its statistics are the exact pooled ones.
    with torch.no_grad():
        conv_out = one.stem[:-2](x).double()  # pad + conv: the stem BN input
    assert torch.allclose(one.stem.bn.running_mean.double(), conv_out.mean((0, 2, 3)), atol=1e-6)
    assert torch.allclose(one.stem.bn.running_var.double(), conv_out.var((0, 2, 3), unbiased=False), atol=1e-6)
    assert torch.allclose(chunked.stem.bn.running_mean, one.stem.bn.running_mean, atol=1e-6)
    assert torch.allclose(chunked.stem.bn.running_var, one.stem.bn.running_var, atol=1e-6)
    # In one batch, eval output on the calibration images equals the train-mode (batch-stat) output.
    assert not one.training
    with torch.no_grad():
        evaluated = one(x)
        train_mode = one.train()(x)
    assert float((evaluated - train_mode).abs().max()) < 1e-4
    # Calibrating the supernet with the arch active gives the same statistics as calibrating the copy.
    sn.set_active(arch)
    calibrate_bn(sn, x, batch_size=60)
    assert torch.allclose(sn.extract(arch).stem.bn.running_var, one.stem.bn.running_var, atol=1e-6)


def test_evaluate_and_calibrated_subnet(tiny_space):
    ds = load_dataset("builtin:digits")
    sn = build_supernet(tiny_space, seed=0)
    arch = tiny_space.smallest()
    before = {k: v.clone() for k, v in sn.state_dict().items()}
    model = calibrated_subnet(sn, arch, ds, num_images=50)
    assert all(torch.equal(before[k], v) for k, v in sn.state_dict().items())  # supernet untouched
    assert not model.training and isinstance(model, nn.Module)
    test = ds.split("test", arch.resolution)
    acc = evaluate(model, test.x, test.y)
    assert 0.0 <= acc <= 1.0

    class Constant(nn.Module):
        def forward(self, x):
            return torch.zeros(x.shape[0], 10).index_fill_(1, torch.tensor([3]), 1.0)
    assert evaluate(Constant(), test.x, test.y) == pytest.approx(float(np.mean(test.y == 3)))
    assert to_input(test.x[:2]).shape == (2, 1, arch.resolution, arch.resolution)


# -- schedules ------------------------------------------------------------------------------------
def test_schedule_round_trip_and_named_errors(tiny_space, tmp_path):
    s = default_schedule(tiny_space)
    assert Schedule.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    s.validate(tiny_space)
    bad = s.to_dict()
    bad["phases"][1]["elastic"]["kernel_sizes"] = [3, 9]
    with pytest.raises(ConfigError, match=r"phases\[1\].*'elastic.kernel_sizes'.*\[9\].*allowed values: \[3, 5, 7\]"):
        Schedule.from_dict(bad).validate(tiny_space)
    bad = s.to_dict()
    bad["phases"][0]["epochs"] = 0
    with pytest.raises(ConfigError, match=r"'epochs'"):
        Schedule.from_dict(bad).validate(tiny_space)
    (tmp_path / "s.json").write_text('{"phases": [{"name": "x", "epochs": 1, "lr": 0.1, "colour": 1}]}')
    with pytest.raises(ConfigError, match="colour"):
        Schedule.load(tmp_path / "s.json")


# -- resume ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_resume_after_interruption_is_bit_identical(tmp_path):
    full = train_supernet(config(tmp_path / "full"))
    part = config(tmp_path / "part", stop_after_epochs=2)   # killed at the kernel -> all boundary
    train_supernet(part)
    assert not (tmp_path / "part/supernet/weights.pt").exists()
    with pytest.raises(Exception, match="already holds a training run"):
        train_supernet(config(tmp_path / "part"))
    train_supernet(config(tmp_path / "part", resume=True, stop_after_epochs=1))  # killed mid-phase
    resumed = train_supernet(config(tmp_path / "part", resume=True))
    a, b = weights(full), weights(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    strip = lambda rs: [{k: v for k, v in r.items() if not k.endswith("_s")} for r in rs]  # noqa: E731
    log_a = [json.loads(x) for x in (full / "log.jsonl").read_text().splitlines()]
    log_b = [json.loads(x) for x in (resumed / "log.jsonl").read_text().splitlines()]
    assert len(log_a) == 4 and strip(log_a) == strip(log_b)
    with pytest.raises(ConfigError, match="'seed'"):
        train_supernet(config(tmp_path / "part", resume=True, seed=1))


# -- DDP ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_process_gloo_ddp_matches_one_process(tmp_path):
    space, sched = tmp_path / "space.json", tmp_path / "schedule.json"
    space.write_text(make_tiny_space().to_json())
    sched.write_text(json.dumps(short_schedule().to_dict()))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "pipeline", "train", "--out", str(tmp_path / "ddp"), "--space", str(space),
           "--schedule", str(sched), "--quiet"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp/supernet/summary.json").read_text())
    assert summary["world_size"] == 2 and summary["bn_shards"] == 2
    assert summary["rank_max_abs_diff"] == 0.0  # ranks stayed in sync
    single = train_supernet(config(tmp_path / "one", schedule=sched, space=space, bn_shards=2,
                                   eval_images=500))
    a, b = weights(tmp_path / "ddp/supernet"), weights(single)
    diffs = {k: float((a[k].double() - b[k].double()).abs().max()) for k in a}
    assert max(diffs.values()) <= 1e-5, sorted(diffs.items(), key=lambda kv: -kv[1])[:5]
    # ... and the comparison can fail: BN over the whole batch is a different computation.
    whole = train_supernet(config(tmp_path / "whole", schedule=sched, space=space, bn_shards=1,
                                  eval_images=500))
    c = weights(whole)
    assert max(float((a[k].double() - c[k].double()).abs().max()) for k in a) > 1e-4


# -- the trained fixture and the CLI -------------------------------------------------------------
def test_progressive_shrinking_learns(trained_supernet_dir, tiny_space):
    summary = json.loads((trained_supernet_dir / "summary.json").read_text())
    assert summary["final"]["largest"]["test_acc"] >= 0.8
    ds = load_dataset(summary["data"], seed=summary["data_seed"])
    untrained = build_supernet(tiny_space, seed=0)
    trained = load_supernet(trained_supernet_dir)
    test = ds.split("test", 16)
    for arch in (tiny_space.smallest(), tiny_space.sample(np.random.default_rng(0), resolutions=(16,))):
        init_acc = evaluate(calibrated_subnet(untrained, arch, ds), test.x, test.y)
        acc = evaluate(calibrated_subnet(trained, arch, ds), test.x, test.y)
        assert acc >= init_acc + 0.3, (arch, init_acc, acc)
    for name in ("weights.pt", "space.json", "schedule.json", "log.jsonl", "checkpoints/last.pt"):
        assert (trained_supernet_dir / name).exists(), name
    assert (trained_supernet_dir.parent / "config.json").exists()


def test_cli_train_and_its_errors(tmp_path, capsys):
    space, sched = tmp_path / "space.json", tmp_path / "schedule.json"
    space.write_text(make_tiny_space().to_json())
    sched.write_text(json.dumps(Schedule(phases=(Phase("largest", 1, 0.1),)).to_dict()))
    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--space", str(space), "--schedule", str(sched), "--quiet"]
    assert cli_main(args) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("trained ") and "largest" in line and "smallest" in line
    assert cli_main(args) == 2                      # exists: needs --resume
    assert cli_main(args + ["--resume"]) == 0       # finished run: resume just re-reports
    assert cli_main(args + ["--resume", "--seed", "3"]) == 5
    assert cli_main(["train", "--data", "builtin:nope", "--out", str(tmp_path / "x")]) == 4
    (tmp_path / "bad.json").write_text('{"resolutions": [4]}')
    assert cli_main(["train", "--out", str(tmp_path / "y"), "--space", str(tmp_path / "bad.json")]) == 5
    err = capsys.readouterr().err
    assert "'resolutions'" in err
    rgb = make_tiny_space().to_dict()
    assert cli_main(["train", "--data", "builtin:digits-rgb", "--out", str(tmp_path / "z"),
                     "--space", str(space)]) == 5  # 1-channel space, 3-channel data
    assert "in_channels" in capsys.readouterr().err
    assert rgb["in_channels"] == 1


def test_divergence_stops_with_a_named_error(tmp_path):
    sched = Schedule(phases=(Phase("largest", 1, 1e6),), momentum=0.0)
    with pytest.raises(ConfigError, match="diverged.*'largest'") as e:
        train_supernet(config(tmp_path / "run", schedule=sched))
    assert "lr" in e.value.hint


# -- the budget recipe ----------------------------------------------------------------------------
def test_budget_to_phase_epochs_arithmetic():
    from pipeline.train.schedule import BUDGET_PHASES, phase_epochs

    shares = [s for _, s, *_ in BUDGET_PHASES]
    assert sum(shares) == pytest.approx(1.0)
    assert max(shares) == shares[0] and 0.4 <= shares[0] <= 0.5      # the full network gets the largest share
    assert phase_epochs(30) == [14, 3, 3, 4, 6]
    assert phase_epochs(100) == [45, 10, 10, 15, 20]
    assert phase_epochs(5) == [1, 1, 1, 1, 1]
    for total in range(5, 400):
        parts = phase_epochs(total)
        assert sum(parts) == total and min(parts) >= 1, total
        assert all(abs(p - s * total) <= 1.0 + 1e-9 for p, s in zip(parts, shares)) or total < 20, total
    for bad in (4, 0, -3, 2.5, True):
        with pytest.raises(ConfigError, match="cannot hold the 5 training phases"):
            phase_epochs(bad)


def test_budget_parsing_and_schedule_structure(tiny_space):
    from pipeline.errors import UsageError
    from pipeline.train.loop import parse_budget, resolve_schedule
    from pipeline.train.schedule import budget_schedule

    assert parse_budget("40") == ("epochs", 40) and parse_budget(" 30m ") == ("minutes", 30.0)
    assert parse_budget("2.5M") == ("minutes", 2.5)
    for bad in ("", "abc", "4", "0", "-1m", "nanm", "infm", "30s", "1e3"):
        with pytest.raises(UsageError, match="is not a training budget"):
            parse_budget(bad)
    s = budget_schedule(tiny_space, 20)
    assert [p.name for p in s.phases] == ["largest", "kernel", "depth", "expand", "width"]
    assert s.total_epochs == 20 and s.phases[0].epochs == 9
    elastic = [set(p.elastic) for p in s.phases]
    assert elastic[0] == {"resolutions"} and all(a < b for a, b in zip(elastic, elastic[1:]))
    assert elastic[-1] == {"resolutions", "kernel_sizes", "depths", "expand_ratios", "width_mults"}
    assert s.phases[0].kd_weight == 0 and all(p.kd_weight > 0 for p in s.phases[1:])
    assert [p.kd_teacher for p in s.phases[1:]] == ["fixed", "fixed", "fixed", "inplace"]
    assert [p.sandwich for p in s.phases] == [False, False, False, True, True]
    assert resolve_schedule(None, tiny_space) == default_schedule(tiny_space) == budget_schedule(tiny_space, 30)
    with pytest.raises(UsageError, match="--budget and --schedule"):
        resolve_schedule(s, tiny_space, 20)


def test_distillation_terms():
    """Soft cross-entropy pulls towards the teacher (zero gradient at the teacher's logits); in-place
    distillation makes the step's first (largest) subnet the teacher of the others."""
    from pipeline.train.recipe import StepLoss, soft_cross_entropy

    t = torch.tensor([[2.0, -1.0, 0.5]])
    same = t.clone().requires_grad_(True)
    soft_cross_entropy(same, t, 2.0).backward()
    assert float(same.grad.abs().max()) < 1e-6
    other = torch.zeros(1, 3, requires_grad=True)
    soft_cross_entropy(other, t, 2.0).backward()
    assert other.grad[0, 0] < 0 < other.grad[0, 1]           # raises the teacher's top class
    space = make_tiny_space()
    sn = build_supernet(space, seed=0).train()
    x = torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    y = torch.arange(8) % 10
    big, small = space.largest(), space.smallest()
    big, small = [type(big)(16, a.widths, a.kernels, a.expands) for a in (big, small)]
    loss_fn = StepLoss(sn, 0.0, 1.0)
    with torch.no_grad():
        inplace, _ = loss_fn([(x, y, None)], [big, small], 1.0, 1.0, inplace_kd=True)
        sn.set_active(big)
        lb = sn(x)
        sn.set_active(small)
        ls = sn(x)
        import torch.nn.functional as F
        want = F.cross_entropy(lb, y) + F.cross_entropy(ls, y) + soft_cross_entropy(ls, lb, 1.0)
        plain, _ = loss_fn([(x, y, None)], [big, small], 1.0, 1.0, inplace_kd=False)
    assert float(inplace) == pytest.approx(float(want), rel=1e-5)
    assert float(plain) == pytest.approx(float(F.cross_entropy(lb, y) + F.cross_entropy(ls, y)), rel=1e-5)


def _digits_small(tmp_path) -> str:
    """A 300-image slice of the digits (so a whole budget run takes seconds)."""
    d = load_dataset("builtin:digits")
    path = tmp_path / "digits300.npz"
    np.savez(path, x=d.x[:300], y=d.y[:300])
    return f"npz:{path}"


def test_budget_run_goes_through_every_phase_and_resumes(tmp_path):
    data = _digits_small(tmp_path)
    cfg = dict(data=data, space=make_tiny_space(), schedule=None, budget="5", batch_size=32)
    part = config(tmp_path / "b", stop_after_epochs=3, **cfg)
    train_supernet(part)
    with pytest.raises(ConfigError, match="'budget'"):   # a resume must keep the budget
        train_supernet(config(tmp_path / "b", resume=True, **{**cfg, "budget": "6"}))
    sn = train_supernet(config(tmp_path / "b", resume=True, **cfg))
    log = [json.loads(x) for x in (sn / "log.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in log] == ["largest", "kernel", "depth", "expand", "width"]
    sched = json.loads((sn / "schedule.json").read_text())
    assert [p["epochs"] for p in sched["phases"]] == [1, 1, 1, 1, 1]
    assert json.loads((tmp_path / "b/config.json").read_text())["budget"] == "5"
    for i, name in enumerate(["largest", "kernel", "depth", "expand", "width"]):
        assert (sn / "checkpoints" / f"phase-{i}-{name}.pt").exists()
    # the same run without interruption ends with the same weights
    full = train_supernet(config(tmp_path / "f", **cfg))
    a, b = weights(full), weights(sn)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_minutes_budget_measures_phases_and_resume_keeps_them(tmp_path, capsys):
    data = _digits_small(tmp_path)
    cfg = dict(data=data, space=make_tiny_space(), schedule=None, budget="0.05m", batch_size=32, quiet=False)
    train_supernet(config(tmp_path / "m", stop_after_epochs=1, **cfg))
    err = capsys.readouterr().err
    assert "budget 0.05 min: measured largest" in err and "s/epoch" in err
    recorded = json.loads((tmp_path / "m/config.json").read_text())
    lengths = [p["epochs"] for p in recorded["schedule"]["phases"]]
    assert len(lengths) == 5 and min(lengths) >= 1
    sn = train_supernet(config(tmp_path / "m", resume=True, **cfg))   # no new measurement on resume
    assert "measured" not in capsys.readouterr().err
    assert json.loads((sn / "schedule.json").read_text()) == recorded["schedule"]
    assert len((sn / "log.jsonl").read_text().splitlines()) == sum(lengths)


# -- per-board fine-tune --------------------------------------------------------------------------
def test_finetune_keeps_or_improves_holdout_and_changes_weights(trained_supernet_dir, tiny_space):
    from pipeline.export.stage import export_key
    from pipeline.train.finetune import finetune_subnet

    summary = json.loads((trained_supernet_dir / "summary.json").read_text())
    ds = load_dataset(summary["data"], seed=summary["data_seed"])
    sn = load_supernet(trained_supernet_dir)
    arch = tiny_space.smallest()
    base, info0 = finetune_subnet(sn, arch, ds, 0)
    assert info0.epochs == 0 and info0.holdout_acc_after == info0.holdout_acc_before
    tuned, info = finetune_subnet(sn, arch, ds, 2, schedule=Schedule.load(trained_supernet_dir / "schedule.json"))
    hold = ds.split("holdout", arch.resolution)
    assert info.holdout_acc_before == pytest.approx(evaluate(base, hold.x, hold.y))
    assert info.holdout_acc_after == pytest.approx(evaluate(tuned, hold.x, hold.y))
    assert info.holdout_acc_after >= info.holdout_acc_before, info
    a, b = base.state_dict(), tuned.state_dict()
    changed = [k for k in a if a[k].dtype.is_floating_point and not torch.equal(a[k], b[k])]
    assert any(k.endswith("conv.weight") for k in changed)
    # the supernet itself is untouched, and the same call gives the same weights (seeded)
    again, _ = finetune_subnet(sn, arch, ds, 2, schedule=Schedule.load(trained_supernet_dir / "schedule.json"))
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in b.items())
    assert torch.equal(load_supernet(trained_supernet_dir).stem.weight, sn.stem.weight)
    # the export cache key follows the fine-tune setting; 0 keeps the key of an export without it
    k0 = export_key(trained_supernet_dir, arch)
    assert export_key(trained_supernet_dir, arch, finetune_epochs=0) == k0
    assert len({k0, export_key(trained_supernet_dir, arch, finetune_epochs=2),
                export_key(trained_supernet_dir, arch, finetune_epochs=3)}) == 3


@pytest.mark.slow
def test_export_with_finetune_records_it_and_keys_it(trained_supernet_dir, tiny_space, tmp_path):
    """The real export stage with --finetune-epochs: fine-tuned weights are what gets converted."""
    from pipeline.export import export_subnet
    from pipeline.export.stage import export_key
    from pipeline.search.verify import _export

    arch = tiny_space.smallest()
    lines = []
    rep = export_subnet(trained_supernet_dir, str(arch), tmp_path / "ft", finetune_epochs=1,
                        progress=lambda check, line: lines.append(check))
    assert rep["passed"] and rep["finetune"]["epochs"] == 1 and rep["timings_s"]["finetune"] > 0
    assert "finetune" in lines
    assert rep["cache_key"] == export_key(trained_supernet_dir, arch, finetune_epochs=1) != export_key(
        trained_supernet_dir, arch)
    # the float accuracy the crosscheck measured is the fine-tuned model's, not the supernet's subnet's
    summary = json.loads((trained_supernet_dir / "summary.json").read_text())
    ds = load_dataset(summary["data"], seed=summary["data_seed"])
    test = ds.split("test", arch.resolution)
    plain = evaluate(calibrated_subnet(load_supernet(trained_supernet_dir), arch, ds), test.x, test.y)
    assert rep["accuracy"]["float"] != pytest.approx(plain, abs=1e-9)
    # the search's export cache passes the setting through and reuses the export only under its key
    calls = []

    def export_fn(sn, a, out, **kw):   # stands in for export_subnet (run for real above): records the call
        calls.append(kw)
        out.mkdir(parents=True, exist_ok=True)
        (out / "model_int8.tflite").write_bytes(b"m")
        (out / "export_report.json").write_text(json.dumps({"passed": True, "cache_key": export_key(sn, a, **kw)}))

    _export(trained_supernet_dir, arch, tmp_path / "cache", export_fn, seed=0)
    _export(trained_supernet_dir, arch, tmp_path / "cache", export_fn, seed=0, finetune_epochs=2)
    _export(trained_supernet_dir, arch, tmp_path / "cache", export_fn, seed=0, finetune_epochs=2)
    assert [c.get("finetune_epochs") for c in calls] == [None, 2]
