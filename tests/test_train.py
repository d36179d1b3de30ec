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
