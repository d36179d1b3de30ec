"""Progressive-shrinking training of the OFA supernet: `train_supernet(cfg)`.

Determinism: every random choice of an epoch (data order, augmentation, resolution and subnets per
step) comes from generators seeded by (seed, phase, epoch), so a checkpoint needs only the weights,
the optimizer, the teacher and the position to continue bit-identically.

BatchNorm and data parallelism: the global batch is cut into `bn_shards` equal shards, and BN
normalises each shard with its own statistics (per-rank BN, no SyncBatchNorm). Under torchrun the
ranks take disjoint shards; in one process the shards run one after the other. Both compute the same
mean gradient in the same order, so a 1-process run with `bn_shards=N` reproduces an N-rank run
(bit-identically on CPU in our tests; the contract is a tolerance of 1e-5).
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .. import artifacts
from .._io import append_jsonl, atomic_path, write_json, write_text
from ..data import Dataset, load_dataset
from ..errors import ConfigError, UsageError
from ..supernet.model import OFASupernet, build_supernet
from ..supernet.sorting import sort_expand_channels, sort_width_channels
from ..supernet.space import SearchSpace, default_space, resolution_note, spectrogram_fields
from ..supernet.store import load_state, save_supernet
from .bn import calibrate_bn
from .distributed import DistInfo, init_distributed, shutdown
from .evaluate import calibrated_subnet, evaluate, to_input
from .recipe import StepLoss, epoch_generators, lr_at, make_optimizer, shift_images, skip_unused
from .schedule import BUDGET_PHASES, Schedule, budget_schedule

CHECKPOINT = "last.pt"


@dataclass
class TrainConfig:
    data: str = "builtin:digits"
    out: str | Path = "runs/digits"          # the run directory; the supernet goes to out/supernet
    space: SearchSpace | str | Path | None = None      # None: the default space for the data
    schedule: Schedule | str | Path | None = None      # None: budget_schedule(space, budget)
    budget: str | int | None = None          # "EPOCHS" or "Nm" minutes (phase lengths: BUDGET_PHASES)
    seed: int = 0
    threads: int = 1
    batch_size: int = 64                     # global batch, over all ranks
    resume: bool = False
    quiet: bool = False
    bn_shards: int | None = None             # None: the number of ranks
    data_seed: int = 0                       # split seed; every later stage loads the data with it
    eval_images: int = 500                   # BN re-calibration images per evaluation
    epoch_eval: bool = True                  # log BN-calibrated holdout accuracy after each epoch
    stop_after_epochs: int | None = field(default=None, repr=False)  # test hook: stop as if killed

    def describe(self, space: SearchSpace, schedule: Schedule, bn_shards: int, world: int) -> dict:
        return {"data": self.data, "data_seed": self.data_seed, "seed": self.seed,
                **({"budget": str(self.budget)} if self.budget is not None else {}),
                "batch_size": self.batch_size, "bn_shards": bn_shards, "world_size": world,
                "threads": self.threads, "eval_images": self.eval_images,
                "space": space.to_dict(), "schedule": schedule.to_dict()}


# -- config resolution ----------------------------------------------------------------------------
def resolve_space(spec, ds: Dataset) -> SearchSpace:
    if spec is None:
        # A spectrogram dataset (audio features) gets a fixed non-square input; images follow their size
        # (supernet.space.default_space: native 48/64/96 px used, larger ones downscaled with a message).
        if ds.features:
            return SearchSpace(in_channels=ds.channels, num_classes=ds.num_classes,
                               **spectrogram_fields(*ds.native_resolution))
        space = default_space(ds.native_resolution, ds.channels, ds.num_classes)
    else:
        space = spec if isinstance(spec, SearchSpace) else SearchSpace.load(spec)
    for name, want in (("in_channels", ds.channels), ("num_classes", ds.num_classes)):
        if getattr(space, name) != want:
            raise ConfigError(f"search space: field '{name}' = {getattr(space, name)} but dataset "
                              f"'{ds.spec}' has {want}", hint=f"set \"{name}\": {want} in the space file")
    note = None if ds.features else resolution_note(space, ds.native_resolution)
    if note:
        print(f"note: {note}", file=sys.stderr, flush=True)
    return space


def parse_budget(text) -> tuple[str, float]:
    """`--budget`: "40" (epochs) -> ("epochs", 40); "30m" (minutes of wall time) -> ("minutes", 30.0)."""
    t = str(text).strip().lower()
    try:
        if t.endswith("m"):
            v = float(t[:-1])
            if math.isfinite(v) and v > 0:
                return "minutes", v
        else:
            v = int(t)
            if v >= len(BUDGET_PHASES):
                return "epochs", v
    except ValueError:
        pass
    raise UsageError(f"--budget {text!r} is not a training budget",
                     hint=f"give a whole number of epochs >= {len(BUDGET_PHASES)} (e.g. 40) or minutes "
                          "with an m (e.g. 30m)")


def resolve_schedule(spec, space: SearchSpace, budget=None) -> Schedule:
    """The schedule file or object; else the budget recipe (`budget` in epochs; None: the default)."""
    if spec is not None and budget is not None:
        raise UsageError("--budget and --schedule both given",
                         hint="a schedule file sets every phase length itself; pass one or the other")
    if spec is None:
        schedule = budget_schedule(space, None if budget is None else int(budget))
    elif isinstance(spec, Schedule):
        schedule = spec
    else:
        schedule = Schedule.load(spec)
    return schedule.validate(space)


def minutes_schedule(space: SearchSpace, minutes: float, seconds_per_epoch: list[float]) -> Schedule:
    """The budget recipe whose phases take their shares of `minutes` of wall time, given each phase's
    measured seconds per epoch (at least one epoch per phase)."""
    lengths = [max(1, int(share * minutes * 60.0 / max(sec, 1e-9)))
               for (_, share, *_), sec in zip(BUDGET_PHASES, seconds_per_epoch)]
    return budget_schedule(space, phase_lengths=lengths)


def _probe_epoch_seconds(space: SearchSpace, xs: dict, ys: torch.Tensor, cfg: "TrainConfig", steps: int,
                         monitor) -> list[float]:
    """Seconds one epoch of each budget phase takes here: a few timed steps of each on a throwaway
    copy of the supernet (the real run's weights and generators are untouched), plus one evaluation."""
    probe = budget_schedule(space, phase_lengths=[1] * len(BUDGET_PHASES))
    supernet = build_supernet(space, seed=cfg.seed).train()
    teacher = _make_teacher(supernet)
    loss_fn = StepLoss(supernet, probe.label_smoothing, probe.kd_temperature)
    opt = make_optimizer(supernet, probe, 0.01)
    np_rng, gen = epoch_generators(cfg.seed, 10_000, 0)
    eval_s = 0.0
    if monitor is not None:
        t = time.perf_counter()
        monitor(supernet)
        supernet.train()
        eval_s = time.perf_counter() - t
    out = []
    for phase in probe.phases:
        allowed = phase.allowed(space)
        times = []
        for k in range(3):  # the first step warms caches up; the other two are timed
            t = time.perf_counter()
            res = int(allowed["resolutions"][np_rng.integers(len(allowed["resolutions"]))])
            archs = [space.sample(np_rng, **{**allowed, "resolutions": (res,)}) for _ in range(phase.subnets_per_step)]
            if phase.sandwich:
                archs[:2] = [phase.extreme(space, res, max), phase.extreme(space, res, min)]
            idx = torch.randint(0, len(ys), (cfg.batch_size,), generator=gen)
            x, y = xs[res][idx], ys[idx]
            tl = None
            if phase.kd_weight > 0 and phase.kd_teacher == "fixed":
                with torch.no_grad():
                    tl = teacher(x)
            opt.zero_grad(set_to_none=True)
            loss, _ = loss_fn([(x, y, tl)], archs, phase.kd_weight, 1.0, phase.kd_teacher == "inplace")
            loss.backward()
            opt.step()
            if k:
                times.append(time.perf_counter() - t)
        out.append(float(np.mean(times)) * steps + eval_s)
    return out


def _make_teacher(supernet: OFASupernet) -> OFASupernet:
    teacher = copy.deepcopy(supernet)
    teacher.set_active(supernet.space.largest())
    for p in teacher.parameters():
        p.requires_grad_(False)
    # Train mode: BN uses batch statistics, like the net it was when it stopped training.
    return teacher.train()


class _Monitor:
    """BN-calibrated holdout accuracy of the largest and smallest subnet (rank 0 only)."""

    def __init__(self, ds: Dataset, space: SearchSpace, num_images: int, seed: int):
        self.space = space
        rng = np.random.default_rng(seed)
        train = ds.split("train")
        self.calib_idx = np.sort(rng.choice(len(train), min(num_images, len(train)), replace=False))
        self.ds = ds
        self.archs = {"largest": space.largest(), "smallest": space.smallest()}
        self._cache: dict[int, tuple] = {}

    def _data(self, res: int):
        if res not in self._cache:
            calib = to_input(self.ds.split("train", res).x[self.calib_idx])
            hold = self.ds.split("holdout", res)
            self._cache[res] = (calib, hold.x, hold.y)
        return self._cache[res]

    def __call__(self, supernet: OFASupernet) -> dict[str, float]:
        out = {}
        for name, arch in self.archs.items():
            calib, hx, hy = self._data(arch.resolution)
            model = calibrate_bn(supernet.extract(arch), calib, batch_size=len(calib))
            out[f"holdout_acc_{name}"] = round(evaluate(model, hx, hy), 4)
        return out


def _check_resume_config(recorded: dict, now: dict, path: Path) -> None:
    for key in ("data", "data_seed", "seed", "budget", "batch_size", "bn_shards", "space", "schedule"):
        if recorded.get(key) != now.get(key):
            raise ConfigError(f"--resume: field '{key}' differs from the interrupted run ({path})",
                              hint="resume with the same options, or train into a new --out")


def _final_report(supernet: OFASupernet, ds: Dataset, cfg: TrainConfig) -> dict:
    test = {}
    out = {}
    for name, arch in (("largest", supernet.space.largest()), ("smallest", supernet.space.smallest())):
        if arch.resolution not in test:
            test[arch.resolution] = ds.split("test", arch.resolution)
        model = calibrated_subnet(supernet, arch, ds, num_images=cfg.eval_images, seed=cfg.seed)
        t = test[arch.resolution]
        out[name] = {"arch": str(arch), "test_acc": round(evaluate(model, t.x, t.y), 4)}
    return out


# -- the entry point ------------------------------------------------------------------------------
def train_supernet(cfg: TrainConfig) -> Path:
    """Train (or resume) a supernet with progressive shrinking; return `cfg.out/supernet`."""
    torch.set_num_threads(max(1, int(cfg.threads)))
    info = init_distributed()
    try:
        return _train(cfg, info)
    finally:
        shutdown(info)


def _train(cfg: TrainConfig, info: DistInfo) -> Path:
    t_start = time.perf_counter()
    ds = load_dataset(cfg.data, seed=cfg.data_seed)
    space = resolve_space(cfg.space, ds)
    budget = parse_budget(cfg.budget) if cfg.budget is not None else None
    by_minutes = budget is not None and budget[0] == "minutes"
    schedule = None if by_minutes else resolve_schedule(cfg.schedule, space,
                                                         None if budget is None else budget[1])
    if by_minutes and cfg.schedule is not None:
        resolve_schedule(cfg.schedule, space, budget)  # the same "both given" error as for epochs
    shards = cfg.bn_shards or info.world_size
    if shards % info.world_size:
        raise ConfigError(f"bn_shards = {shards} is not a multiple of the {info.world_size} ranks",
                          hint="use a multiple of --nproc_per_node, or leave it unset")
    if cfg.batch_size % shards:
        raise ConfigError(f"batch size {cfg.batch_size} does not split into {shards} equal BN shards")
    train = ds.split("train")
    steps = len(train) // cfg.batch_size
    if steps < 1:
        raise ConfigError(f"batch size {cfg.batch_size} exceeds the {len(train)} training images",
                          hint="lower --batch-size")

    run_dir = Path(cfg.out)
    sn_dir = run_dir / "supernet"
    ckpt_path = sn_dir / "checkpoints" / CHECKPOINT
    if ckpt_path.exists() and not cfg.resume:
        raise UsageError(f"{run_dir} already holds a training run",
                         hint="pass --resume to continue it, or choose another --out")
    xs = {r: to_input(ds.split("train", r).x) for r in space.resolutions}
    ys = torch.from_numpy(train.y)
    monitor = _Monitor(ds, space, min(cfg.eval_images, 200), cfg.seed) if info.is_main and cfg.epoch_eval else None
    if by_minutes:
        recorded = (artifacts.read("train config", run_dir)
                    if ckpt_path.exists() and artifacts.exists("train config", run_dir) else {})
        if recorded.get("budget") == str(cfg.budget) and recorded.get("schedule"):
            # Resume keeps the phase lengths derived when the run started (they depend on this
            # machine's speed then), so the continued run is the same schedule.
            schedule = Schedule.from_dict(recorded["schedule"]).validate(space)
        else:
            t_probe = time.perf_counter()
            secs = _probe_epoch_seconds(space, xs, ys, cfg, steps, monitor)
            left = budget[1] - (time.perf_counter() - t_probe) / 60.0
            schedule = minutes_schedule(space, max(left, 0.0), secs)
            if not cfg.quiet and info.is_main:
                print(f"budget {budget[1]:g} min: measured " + ", ".join(
                    f"{p.name} {s:.1f} s/epoch" for p, s in zip(schedule.phases, secs)) +
                    " -> epochs " + ", ".join(f"{p.name} {p.epochs}" for p in schedule.phases),
                    file=sys.stderr, flush=True)
            if info.enabled:  # every rank must run the same schedule: rank 0's measurement decides
                import torch.distributed as dist
                lengths = torch.tensor([p.epochs for p in schedule.phases])
                dist.broadcast(lengths, 0)
                schedule = budget_schedule(space, phase_lengths=[int(v) for v in lengths])
    described = cfg.describe(space, schedule, shards, info.world_size)
    ckpt = None
    if ckpt_path.exists():
        _check_resume_config(artifacts.read("train config", run_dir), described, artifacts.path("train config", run_dir))
        ckpt = load_state(ckpt_path)
    if info.is_main:
        artifacts.write("train config", run_dir, described)
        write_json(sn_dir / "space.json", space.to_dict())
        write_json(sn_dir / "schedule.json", schedule.to_dict())

    supernet = build_supernet(space, seed=cfg.seed)
    teacher: OFASupernet | None = None
    start_phase, start_epoch, history, elapsed_before = 0, 0, [], 0.0
    if ckpt is not None:
        supernet.load_state_dict(ckpt["model"])
        if ckpt.get("teacher") is not None:
            teacher = _make_teacher(supernet)
            teacher.load_state_dict(ckpt["teacher"])
        start_phase, start_epoch = int(ckpt["phase"]), int(ckpt["epoch"])
        history, elapsed_before = list(ckpt["history"]), float(ckpt["elapsed"])
        if info.is_main:  # the log is rebuilt from the checkpoint: no line of a lost epoch survives
            write_text(sn_dir / "log.jsonl", "".join(json.dumps(r) + "\n" for r in history))
    elif info.is_main and (sn_dir / "log.jsonl").exists():
        (sn_dir / "log.jsonl").unlink()
    supernet.train()

    step_loss = StepLoss(supernet, schedule.label_smoothing, schedule.kd_temperature)
    model: nn.Module = step_loss
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP
        # Every rank samples the same subnets, so the unused parameters agree across ranks.
        model = DDP(step_loss, find_unused_parameters=True, broadcast_buffers=False)
    show_bar = info.is_main and not cfg.quiet and sys.stderr.isatty()
    from tqdm import tqdm

    epochs_run = 0
    shard_size = cfg.batch_size // shards
    mine = [j for j in range(shards) if j % info.world_size == info.rank]
    scale = info.world_size / shards  # DDP averages over ranks; undo that, then average over shards
    for pi in range(start_phase, len(schedule.phases)):
        phase = schedule.phases[pi]
        allowed = phase.allowed(space)
        first_epoch = start_epoch if pi == start_phase else 0
        if first_epoch == 0:
            if phase.sorts_channels:
                sort_width_channels(supernet)
                sort_expand_channels(supernet)
            if phase.kd_weight > 0 and phase.kd_teacher == "fixed" and teacher is None:
                teacher = _make_teacher(supernet)
        optimizer = make_optimizer(supernet, schedule, phase.lr)
        if ckpt is not None and pi == start_phase and first_epoch > 0:
            optimizer.load_state_dict(ckpt["optimizer"])
        total = phase.epochs * steps
        for epoch in range(first_epoch, phase.epochs):
            t0 = time.perf_counter()
            np_rng, gen = epoch_generators(cfg.seed, pi, epoch)
            order = torch.randperm(len(train), generator=gen)
            loss_sum, correct, seen = 0.0, 0, 0
            bar = tqdm(total=steps, desc=f"{phase.name} {epoch + 1}/{phase.epochs}", leave=False,
                       disable=not show_bar, file=sys.stderr)
            for step in range(steps):
                idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
                res = int(allowed["resolutions"][np_rng.integers(len(allowed["resolutions"]))])
                archs = [space.sample(np_rng, **{**allowed, "resolutions": (res,)})
                         for _ in range(phase.subnets_per_step)]
                if phase.sandwich:
                    archs[:2] = [phase.extreme(space, res, max), phase.extreme(space, res, min)]
                x = shift_images(xs[res][idx], int(round(schedule.shift * res)), gen)
                y = ys[idx]
                lr = lr_at(schedule, pi, phase, epoch * steps + step, total)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                optimizer.zero_grad(set_to_none=True)
                # One backward per BN shard, shards of a rank accumulated locally (no_sync) and the
                # last one synchronised: a rank's gradient is then built exactly as in one process,
                # and scaling by powers of two keeps the 1-process and DDP sums bit-identical.
                for i, j in enumerate(mine):
                    xj, yj = x[j * shard_size:(j + 1) * shard_size], y[j * shard_size:(j + 1) * shard_size]
                    tj = None
                    if teacher is not None and phase.kd_weight > 0 and phase.kd_teacher == "fixed":
                        with torch.no_grad():
                            tj = teacher(xj)
                    last = i == len(mine) - 1
                    with (model.no_sync() if info.enabled and not last else contextlib.nullcontext()):
                        loss, ok = model([(xj, yj, tj)], archs, phase.kd_weight, scale,
                                         phase.kd_teacher == "inplace")
                        if not torch.isfinite(loss):
                            raise ConfigError(
                                f"training diverged: the loss is {float(loss.detach())} in phase '{phase.name}' "
                                f"(epoch {epoch + 1}, step {step + 1})",
                                hint=f"lower that phase's lr ({phase.lr}) in the schedule and train "
                                     "into a new --out")
                        loss.backward()
                    n = len(yj) * len(archs)
                    loss_sum += float(loss.detach()) / scale / len(archs) * n
                    correct += ok
                    seen += n
                skip_unused(supernet)
                optimizer.step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
            bar.close()
            record = {"phase": phase.name, "phase_index": pi, "epoch": epoch + 1,
                      "global_epoch": sum(p.epochs for p in schedule.phases[:pi]) + epoch + 1,
                      "lr_end": round(lr, 6), "loss": round(loss_sum / seen, 5),
                      "train_acc": round(correct / seen, 4)}
            if info.is_main:
                if monitor is not None:
                    record.update(monitor(supernet))
                    supernet.train()
                record["epoch_time_s"] = round(time.perf_counter() - t0, 2)
                record["elapsed_s"] = round(elapsed_before + time.perf_counter() - t_start, 2)
                history.append(record)
                done_phase = epoch + 1 == phase.epochs
                state = {"format": 1, "phase": pi + 1 if done_phase else pi,
                         "epoch": 0 if done_phase else epoch + 1,
                         "model": supernet.state_dict(), "optimizer": optimizer.state_dict(),
                         "teacher": teacher.state_dict() if teacher is not None else None,
                         "history": history, "elapsed": record["elapsed_s"]}
                with atomic_path(ckpt_path) as tmp:
                    torch.save(state, tmp)
                if done_phase:  # the weights at each phase end, for benchmarks and inspection
                    with atomic_path(sn_dir / "checkpoints" / f"phase-{pi}-{phase.name}.pt") as tmp:
                        torch.save({"model": supernet.state_dict()}, tmp)
                append_jsonl(sn_dir / "log.jsonl", record)
                if not cfg.quiet and not show_bar:
                    extra = "".join(f" {k[12:]}={v:.3f}" for k, v in record.items() if k.startswith("holdout_acc"))
                    print(f"[{record['global_epoch']}/{schedule.total_epochs}] {phase.name} "
                          f"epoch {epoch + 1}/{phase.epochs} loss={record['loss']:.3f} "
                          f"train_acc={record['train_acc']:.3f}{extra and ' holdout' + extra} "
                          f"({record['epoch_time_s']:.1f}s)", file=sys.stderr, flush=True)
            epochs_run += 1
            if cfg.stop_after_epochs is not None and epochs_run >= cfg.stop_after_epochs:
                return sn_dir

    rank_diff = _rank_divergence(supernet) if info.enabled else 0.0
    if info.is_main:
        # Store BN statistics of the largest subnet so the saved weights evaluate sensibly as they are.
        supernet.set_active(space.largest())
        calibrate_bn(supernet, xs[max(space.resolutions)][:cfg.eval_images], batch_size=cfg.eval_images)
        save_supernet(supernet, sn_dir)
        final = _final_report(supernet, ds, cfg)
        wall = elapsed_before + time.perf_counter() - t_start
        summary = {"data": ds.spec, "data_seed": cfg.data_seed, "dataset": ds.describe(),
                   "fingerprint": ds.fingerprint(), "seed": cfg.seed, "threads": cfg.threads,
                   "world_size": info.world_size, "bn_shards": shards, "batch_size": cfg.batch_size,
                   "epochs": schedule.total_epochs, "final": final, "wall_time_s": round(wall, 1),
                   "rank_max_abs_diff": rank_diff,
                   "torch": torch.__version__}
        artifacts.write("train summary", sn_dir, summary)
    return sn_dir


def _rank_divergence(supernet: OFASupernet) -> float:
    """Largest difference of any weight between ranks (0.0 when DDP kept them in sync)."""
    import torch.distributed as dist

    flat = torch.cat([p.detach().reshape(-1) for p in supernet.parameters()])
    hi, lo = flat.clone(), flat.clone()
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    return float((hi - lo).abs().max())


def final_summary_line(sn_dir: Path) -> str:
    s = artifacts.read("train summary", sn_dir)
    f = s["final"]
    return (f"trained {sn_dir}: largest {f['largest']['test_acc'] * 100:.1f}% / smallest "
            f"{f['smallest']['test_acc'] * 100:.1f}% test accuracy after BN re-calibration, "
            f"{s['wall_time_s']:.0f} s")
