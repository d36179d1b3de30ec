"""Accuracy predictor: an MLP on the OFA encoding, trained on BN-calibrated accuracies of sampled subnets.

    pred, report = train_predictor("runs/d/supernet", num_samples=400)   # samples cached, resumable
    pred.predict([arch1, arch2])                                          # -> np.ndarray of accuracies

The sample set lives in `<run>/predictor/samples.jsonl`, one line per measured subnet, appended as it
is measured: an interrupted run keeps what it measured and a rerun continues from there. Archs are
drawn from the space with a seeded generator, so the i-th sample is the same arch on every run.
Each MLP follows OFA (3 linear layers, ReLU, Adam 1e-3, output bias at the mean accuracy); 400 hidden
units fit ImageNet's 16K samples, 128 suit the few hundred samples of this tiny space. Five of them
form a bootstrap ensemble (see `AccuracyPredictor`). Targets are standardised; RMSE and Kendall tau
are reported on held-out archs, then the model is refit on all.

Honest labels: a subnet's label is its float accuracy on the holdout and calibration splits
(`LABEL_SPLITS`), with its BatchNorm statistics re-computed on a seeded subset of the *train* split
(`BN_SPLIT`, as OFA does with its 2,000 training images). The label images never set a BN statistic, so
a label is not flattered by statistics fitted to the very images it is measured on (it was: 180 holdout
images did both, and picks came out 2-4.6 points above their measured int8 accuracy). The test split is
left alone for the final int8 figure. `label_images` says how many images a label rests on; below
`MIN_LABEL_IMAGES` (one image > 0.2 points) the report and stderr say so.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .. import artifacts
from .._io import append_jsonl, atomic_path, read_json, read_jsonl, sha256_file, write_json
from ..errors import ArtifactError, ConfigError
from ..supernet.space import SearchSpace, SubnetArch
from .encoding import encode, feature_size

SAMPLES = "samples.jsonl"
BN_SPLIT = "train"                          # BatchNorm re-calibration images come from here ...
LABEL_SPLITS = ("holdout", "calibration")   # ... and the accuracy labels from these: disjoint splits
MIN_LABEL_IMAGES = 500                      # one image <= 0.2 points
MODEL = "predictor.pt"
META = "predictor.json"


def kendall_tau(a, b) -> float:
    """Kendall tau-b between two score vectors (ties counted as in scipy.stats.kendalltau)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    i, j = np.triu_indices(len(a), k=1)
    da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
    concordant_minus_discordant = float(np.sum(da * db))
    n_a, n_b = float(np.sum(da != 0)), float(np.sum(db != 0))
    if n_a == 0 or n_b == 0:
        return 0.0
    return concordant_minus_discordant / np.sqrt(n_a * n_b)


@dataclass
class AccuracyPredictor:
    """An ensemble of `n_models` MLPs, each fit on a bootstrap resample of the samples with its own seed.

    `predict` is the ensemble mean. `score` (what the search maximises) is mean - `risk` x std: an
    evolutionary search otherwise drifts to archs where one MLP extrapolates far above any measured
    accuracy (seen here: 99.8% predicted where no sample exceeded 92%); the disagreement of the
    members is largest exactly there.
    """
    space: SearchSpace
    hidden: int = 128
    n_layers: int = 3
    seed: int = 0
    states: list | None = field(default=None, repr=False)
    y_mean: float = 0.0
    y_std: float = 1.0
    n_models: int = 5
    risk: float = 1.0

    def _module(self):
        import torch.nn as nn
        dims = [feature_size(self.space)] + [self.hidden] * (self.n_layers - 1) + [1]
        mods: list = []
        for i in range(len(dims) - 1):
            mods.append(nn.Linear(dims[i], dims[i + 1]))
            if i < len(dims) - 2:
                mods.append(nn.ReLU())
        return nn.Sequential(*mods)

    def fit(self, archs: Sequence[SubnetArch], accs: Sequence[float], *, epochs: int = 300,
            lr: float = 1e-3, batch_size: int = 64, weight_decay: float = 1e-3) -> "AccuracyPredictor":
        import torch
        if len(archs) < 2:
            raise ConfigError(f"the accuracy predictor needs at least 2 samples, got {len(archs)}")
        x_all = torch.from_numpy(encode(self.space, archs))
        y = np.asarray(accs, dtype=np.float64)
        self.y_mean, self.y_std = float(y.mean()), float(max(y.std(), 1e-6))
        y_all = torch.from_numpy(((y - self.y_mean) / self.y_std).astype(np.float32))[:, None]
        self.states = []
        n = len(x_all)
        for k in range(self.n_models):
            gen = torch.Generator().manual_seed(self.seed * 1000 + k)
            # Member 0 sees every sample; the others a bootstrap resample.
            idx_all = torch.arange(n) if k == 0 else torch.randint(0, n, (n,), generator=gen)
            x, yt = x_all[idx_all], y_all[idx_all]
            net = self._module()
            with torch.no_grad():   # explicit seeded init: no global RNG
                for m in net:
                    if isinstance(m, torch.nn.Linear):
                        bound = 1.0 / np.sqrt(m.in_features)
                        m.weight.uniform_(-bound, bound, generator=gen)
                        m.bias.uniform_(-bound, bound, generator=gen)
                net[-1].bias.zero_()   # OFA: output bias at the mean accuracy (0 after standardising)
            opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
            for _ in range(epochs):
                perm = torch.randperm(n, generator=gen)
                for i in range(0, n, batch_size):
                    b = perm[i:i + batch_size]
                    opt.zero_grad()
                    loss = torch.nn.functional.mse_loss(net(x[b]), yt[b])
                    loss.backward()
                    opt.step()
            self.states.append({k2: v.detach().clone() for k2, v in net.state_dict().items()})
        self._nets = None
        return self

    def _members(self, archs: Sequence[SubnetArch]) -> np.ndarray:
        import torch
        if not self.states:
            raise ArtifactError("the accuracy predictor is not trained",
                                hint="call fit() or load a trained predictor")
        nets = getattr(self, "_nets", None)
        if nets is None:
            nets = []
            for st in self.states:
                net = self._module()
                net.load_state_dict(st)
                net.eval()
                nets.append(net)
            self._nets = nets
        x = torch.from_numpy(encode(self.space, archs))
        with torch.no_grad():
            out = np.stack([net(x).numpy()[:, 0] for net in nets]).astype(np.float64)
        return out * self.y_std + self.y_mean

    def predict(self, archs: Sequence[SubnetArch]) -> np.ndarray:
        """Predicted holdout accuracy per arch (ensemble mean, clipped to [0, 1])."""
        if not archs:
            return np.zeros(0)
        return np.clip(self._members(archs).mean(axis=0), 0.0, 1.0)

    def score(self, archs: Sequence[SubnetArch]) -> np.ndarray:
        """Pessimistic accuracy for ranking: mean - risk x std over the ensemble members."""
        if not archs:
            return np.zeros(0)
        m = self._members(archs)
        return np.clip(m.mean(axis=0) - self.risk * m.std(axis=0), 0.0, 1.0)

    # -- persistence ------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        import torch
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / MODEL) as tmp:
            torch.save(self.states, tmp)
        write_json(directory / META, {"space": self.space.to_dict(), "hidden": self.hidden,
                                      "n_layers": self.n_layers, "seed": self.seed, "n_models": self.n_models,
                                      "risk": self.risk, "y_mean": self.y_mean, "y_std": self.y_std})
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "AccuracyPredictor":
        import torch
        directory = Path(directory)
        meta = read_json(directory / META)
        if not (directory / MODEL).exists():
            raise ArtifactError(f"{directory / MODEL}: file not found")
        states = torch.load(directory / MODEL, map_location="cpu", weights_only=True)
        if isinstance(states, dict):   # a single-model file
            states = [states]
        return cls(SearchSpace.from_dict(meta["space"]), meta["hidden"], meta["n_layers"], meta["seed"],
                   states, meta["y_mean"], meta["y_std"], len(states), meta.get("risk", 1.0))


# -- the sample set ---------------------------------------------------------------------------------
def sample_archs(space: SearchSpace, n: int, seed: int) -> list[SubnetArch]:
    """The first `n` archs of the seeded sample sequence (distinct; smallest and largest first)."""
    rng = np.random.default_rng(seed)
    out, seen = [space.smallest(), space.largest()], {space.smallest(), space.largest()}
    tries = 0
    while len(out) < n and tries < 100 * n:
        a = space.sample(rng)
        tries += 1
        if a not in seen:
            seen.add(a)
            out.append(a)
    return out[:n]


def label_protocol(num_calib_images: int) -> str:
    """How a label is measured, stored with every sample row: rows of another protocol are not reused."""
    return f"bn:{BN_SPLIT}[{int(num_calib_images)}]/labels:{'+'.join(LABEL_SPLITS)}"


def collect_samples(supernet_dir: str | Path, out_dir: str | Path, num_samples: int, *, seed: int = 0,
                    data_spec: str | None = None, num_calib_images: int = 500,
                    progress: bool = False, evaluate_fn: Callable | None = None,
                    progress_every_s: float = 10.0) -> list[dict]:
    """Measure (or read back) the BN-calibrated label accuracy of `num_samples` seeded archs.

    Rows already in `out_dir/samples.jsonl` are reused; new ones are appended as they are measured.
    `evaluate_fn(arch) -> accuracy` replaces the supernet measurement (tests of the cache logic).
    `progress`: a tqdm bar when stderr is a terminal, else a line every `progress_every_s` seconds.
    """
    out_dir = Path(out_dir)
    path = out_dir / SAMPLES
    space = _space_of(supernet_dir)
    archs = sample_archs(space, num_samples, seed)
    weights = _weights_id(supernet_dir)
    protocol = label_protocol(num_calib_images)
    _drop_torn_tail(path)
    # Rows of another seed, other supernet weights (a retrained run) or another label protocol are not reused.
    done = {r["arch"]: r for r in read_jsonl(path) if r.get("seed") == seed and r.get("weights") == weights
            and r.get("protocol") == protocol}
    todo = [a for a in archs if str(a) not in done]
    if todo:
        measure = evaluate_fn or _supernet_evaluator(supernet_dir, data_spec, num_calib_images, seed)
        from ..progress import Progress
        bar = Progress("predictor samples", len(archs), initial=len(archs) - len(todo), unit="subnet",
                       enabled=progress, every_s=progress_every_s)
        for a in todo:
            t0 = time.perf_counter()
            acc = float(measure(a))
            row = {"arch": str(a), "label_acc": acc, "seed": seed, "weights": weights,
                   "protocol": protocol, "seconds": round(time.perf_counter() - t0, 3)}
            append_jsonl(path, row)
            done[str(a)] = row
            bar.update(len(done), f"{len(done)}/{len(archs)} subnets measured, last {100 * acc:.2f}%")
        bar.close()
    return [done[str(a)] for a in archs]


def _weights_id(supernet_dir: str | Path) -> str:
    """Short content hash of the supernet weights (space.json when there are no weights)."""
    d = Path(supernet_dir)
    f = d / "weights.pt" if (d / "weights.pt").exists() else d / "space.json"
    return sha256_file(f)[:16]


def _drop_torn_tail(path: Path) -> None:
    """Cut a half-written last line (a crash mid-append) so new rows start on a line of their own."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with atomic_path(path) as tmp:
            tmp.write_bytes(data[:cut])


def _space_of(supernet_dir: str | Path) -> SearchSpace:
    p = Path(supernet_dir) / "space.json"
    if not p.exists():
        raise ArtifactError(f"{p}: file not found", hint="pass the supernet directory (runs/NAME/supernet)")
    return SearchSpace.load(p)


def dataset_spec(supernet_dir: str | Path, data_spec: str | None = None) -> tuple[str, int]:
    """(dataset spec, data seed) recorded with the supernet, unless `data_spec` overrides it."""
    summary = artifacts.path("train summary", supernet_dir)
    rec = artifacts.read("train summary", summary) if summary.exists() else {}
    spec = data_spec or rec.get("data")
    if not spec:
        raise ConfigError(f"no dataset recorded in {summary}", hint="pass the dataset spec (--data)")
    return spec, int(rec.get("data_seed", 0) or 0)


def label_split(ds, resolution: int):
    """The images a predictor label is measured on: the `LABEL_SPLITS`, concatenated (uint8 x, y, indices)."""
    parts = [ds.split(name, resolution) for name in LABEL_SPLITS]
    return (np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]),
            np.concatenate([p.indices for p in parts]))


def bn_image_indices(ds, num_images: int, seed: int) -> np.ndarray:
    """Dataset indices of the BN re-calibration images: a seeded subset of `BN_SPLIT`."""
    idx = ds.split(BN_SPLIT).indices
    if len(idx) > num_images:
        idx = np.sort(np.random.default_rng(seed).choice(idx, num_images, replace=False))
    return idx


def label_info(ds, num_calib_images: int, seed: int = 0) -> dict:
    """What the labels rest on, for the report: splits, image counts, points per image, disjointness."""
    _, y, label_idx = label_split(ds, None)
    bn_idx = bn_image_indices(ds, num_calib_images, seed)
    n = int(len(y))
    info = {"label_splits": list(LABEL_SPLITS), "label_images": n,
            "points_per_image": round(100.0 / max(n, 1), 3), "bn_split": BN_SPLIT,
            "bn_images": int(len(bn_idx)), "disjoint": not bool(np.intersect1d(label_idx, bn_idx).size),
            "dataset_images": int(len(ds.y))}
    if n < MIN_LABEL_IMAGES:
        info["note"] = (f"labels rest on {n} images (one image = {100.0 / max(n, 1):.2f} points > 0.2): the "
                        f"dataset has {len(ds.y)} images and its {', '.join(LABEL_SPLITS)} splits hold {n}; "
                        f"the test split is kept for the final int8 figure")
    return info


def _supernet_evaluator(supernet_dir, data_spec, num_calib_images, seed) -> Callable[[SubnetArch], float]:
    import torch
    from ..data import load_dataset
    from ..supernet import load_supernet
    from ..train import calibrate_bn, evaluate, to_input

    torch.set_num_threads(1)
    supernet = load_supernet(supernet_dir)
    spec, data_seed = dataset_spec(supernet_dir, data_spec)
    ds = load_dataset(spec, seed=data_seed)
    bn_idx = bn_image_indices(ds, num_calib_images, seed)
    cache: dict[int, tuple] = {}

    def measure(arch: SubnetArch) -> float:
        supernet.space.check_arch(arch)
        if arch.resolution not in cache:
            from ..data.dataset import resize_images
            x, y, _ = label_split(ds, arch.resolution)
            size = supernet.space.input_size(arch.resolution)
            cache[arch.resolution] = (to_input(resize_images(ds.x[bn_idx], size)), x, y)
        x_bn, x, y = cache[arch.resolution]
        model = calibrate_bn(supernet.extract(arch), x_bn, batch_size=min(max(len(x_bn), 1), 512))
        return evaluate(model, x, y)
    return measure


_EVALUATORS: dict[tuple, Callable[[SubnetArch], float]] = {}


def heldout_accuracy(supernet_dir: str | Path, arch: SubnetArch, *, seed: int = 0,
                     data_spec: str | None = None, num_calib_images: int = 500) -> float | None:
    """Float accuracy of `arch` measured exactly as a predictor label is (BN re-calibrated on train images,
    accuracy on the holdout + calibration images), for the arch the search chose; None when the run has
    no trained weights to measure (a space only).

    The predictor's value for a pick is biased upwards: the search keeps the arch whose prediction is
    highest, so it keeps the ones the predictor over-rates (on builtin:shapes 13 of 14 picks came out 2-5
    points above their test accuracy). The pick's own measurement did not choose it, so it carries no such
    bias; the test split stays untouched for the final int8 figure. One evaluator (supernet and images
    loaded once) per supernet weights and data."""
    from ..supernet.store import WEIGHTS
    if not (Path(supernet_dir) / WEIGHTS).exists():
        return None
    key = (str(Path(supernet_dir).resolve()), _weights_id(supernet_dir), data_spec, num_calib_images, seed)
    if key not in _EVALUATORS:
        _EVALUATORS.clear()  # one supernet's evaluator at a time: it holds the supernet and images in memory
        _EVALUATORS[key] = _supernet_evaluator(supernet_dir, data_spec, num_calib_images, seed)
    return float(_EVALUATORS[key](arch))


# -- training entry point ---------------------------------------------------------------------------
def predictor_dir(supernet_dir: str | Path) -> Path:
    """`runs/NAME/predictor` beside `runs/NAME/supernet`."""
    return Path(supernet_dir).resolve().parent / "predictor"


def train_predictor(supernet_dir: str | Path, *, out_dir: str | Path | None = None, num_samples: int = 300,
                    test_fraction: float = 0.2, seed: int = 0, data_spec: str | None = None,
                    hidden: int = 128, epochs: int = 300, progress: bool = False,
                    evaluate_fn: Callable | None = None, num_calib_images: int = 500) -> tuple[AccuracyPredictor, dict]:
    """Collect samples (resumable), report held-out RMSE and Kendall tau, refit on all, save.

    The report's `labels` says which images the labels rest on (`label_info`); with `progress`, a note
    goes to stderr when they are fewer than `MIN_LABEL_IMAGES`."""
    import sys

    from ..data import load_dataset
    out_dir = Path(out_dir) if out_dir is not None else predictor_dir(supernet_dir)
    spec, data_seed = dataset_spec(supernet_dir, data_spec)
    labels = label_info(load_dataset(spec, seed=data_seed), num_calib_images, seed)
    if progress and labels.get("note"):
        print(f"predictor: {labels['note']}", file=sys.stderr, flush=True)
    rows = collect_samples(supernet_dir, out_dir, num_samples, seed=seed, data_spec=data_spec,
                           progress=progress, evaluate_fn=evaluate_fn, num_calib_images=num_calib_images)
    space = _space_of(supernet_dir)
    archs = [SubnetArch.parse(r["arch"]) for r in rows]
    accs = np.array([r["label_acc"] for r in rows])
    rng = np.random.default_rng(seed + 1)
    order = rng.permutation(len(archs))
    n_test = max(1, int(round(test_fraction * len(archs)))) if len(archs) >= 5 else 0
    test_idx, train_idx = order[:n_test], order[n_test:]
    report: dict = {"num_samples": len(archs), "seed": seed, "weights": _weights_id(supernet_dir),
                    "hidden": hidden, "epochs": epochs, "protocol": label_protocol(num_calib_images),
                    "labels": labels, "acc_mean": float(accs.mean()), "acc_std": float(accs.std()),
                    "acc_min": float(accs.min()), "acc_max": float(accs.max())}
    if n_test:
        held = AccuracyPredictor(space, hidden=hidden, seed=seed).fit(
            [archs[i] for i in train_idx], accs[train_idx], epochs=epochs)
        pred = held.predict([archs[i] for i in test_idx])
        true = accs[test_idx]
        report.update({"num_test": int(n_test),
                       "rmse": float(np.sqrt(np.mean((pred - true) ** 2))),
                       "kendall_tau": kendall_tau(pred, true),
                       "baseline_rmse_mean": float(np.sqrt(np.mean((accs[train_idx].mean() - true) ** 2)))})
    final = AccuracyPredictor(space, hidden=hidden, seed=seed).fit(archs, accs, epochs=epochs)
    final.save(out_dir)
    artifacts.write("predictor report", out_dir, report)
    return final, report


def load_predictor(supernet_dir: str | Path, directory: str | Path | None = None) -> AccuracyPredictor:
    d = Path(directory) if directory is not None else predictor_dir(supernet_dir)
    if not (d / META).exists():
        raise ArtifactError(f"no trained accuracy predictor in {d}",
                            hint="it is trained on first use by `ofa-mcu search`, or call train_predictor()")
    return AccuracyPredictor.load(d)


def get_predictor(supernet_dir: str | Path, *, num_samples: int = 300, seed: int = 0,
                  progress: bool = False, data_spec: str | None = None) -> AccuracyPredictor:
    """The saved predictor of this run if it covers `num_samples` and the current supernet weights;
    otherwise train one (resuming the cached samples)."""
    d = predictor_dir(supernet_dir)
    if (d / META).exists() and artifacts.exists("predictor report", d):
        rep = artifacts.read("predictor report", d)
        if (rep.get("num_samples", 0) >= num_samples and rep.get("seed") == seed
                and rep.get("weights") == _weights_id(supernet_dir) and rep.get("protocol") == label_protocol(500)):
            return AccuracyPredictor.load(d)
    pred, _ = train_predictor(supernet_dir, num_samples=num_samples, seed=seed, progress=progress,
                              data_spec=data_spec)
    return pred
