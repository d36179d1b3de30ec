"""The progressive-shrinking schedule: phases in order, each naming which dimensions are elastic.

A phase's `elastic` maps a search-space dimension (resolutions, kernel_sizes, expand_ratios, depths,
width_mults) to the values sampled in that phase, or "all". A dimension not listed stays at the
space's maximum, so `{"resolutions": "all"}` trains the largest network at every resolution.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..errors import ConfigError
from ..supernet.space import SearchSpace, SubnetArch

DIMS = ("resolutions", "kernel_sizes", "expand_ratios", "depths", "width_mults")


@dataclass(frozen=True)
class Phase:
    name: str
    epochs: int
    lr: float
    elastic: dict = field(default_factory=lambda: {"resolutions": "all"})
    subnets_per_step: int = 1
    kd_weight: float = 0.0
    #: Re-sort channels by importance at the start of the phase; None: when expand or width is elastic.
    sort_channels: bool | None = None
    #: The "sandwich rule" of BigNAS: the phase's largest and smallest subnets are two of the subnets
    #: of every step, the rest sampled (OFA samples all of them uniformly). It keeps the extremes
    #: trained: the largest is the teacher's equal, the smallest is what the smallest boards need.
    sandwich: bool = False
    #: Distillation target: "fixed", a frozen copy of the largest network taken when distillation
    #: starts (OFA), or "inplace", the step's own largest subnet (BigNAS; needs `sandwich`).
    kd_teacher: str = "fixed"

    def allowed(self, space: SearchSpace) -> dict[str, tuple]:
        """Values sampled per dimension, as keyword arguments for `SearchSpace.sample`."""
        out = {}
        for dim in DIMS:
            full = getattr(space, dim)
            v = self.elastic.get(dim)
            if v is None:
                out[dim] = (max(full),)
            elif v == "all":
                out[dim] = tuple(full)
            else:
                out[dim] = tuple(sorted(v))
        return out

    def extreme(self, space: SearchSpace, resolution: int, pick=min) -> SubnetArch:
        """The smallest (pick=min) or largest (pick=max) subnet this phase samples, at `resolution`."""
        a = self.allowed(space)
        d = pick(a["depths"])
        n = len(space.stages)
        return SubnetArch(resolution, (pick(a["width_mults"]),) * n, ((pick(a["kernel_sizes"]),) * d,) * n,
                          ((pick(a["expand_ratios"]),) * d,) * n)

    @property
    def sorts_channels(self) -> bool:
        if self.sort_channels is not None:
            return self.sort_channels
        return "expand_ratios" in self.elastic or "width_mults" in self.elastic

    def validate(self, space: SearchSpace, where: str) -> None:
        def bad(name, msg):
            raise ConfigError(f"schedule {where} ('{self.name}'): field '{name}' {msg}")
        if not isinstance(self.epochs, int) or self.epochs < 1:
            bad("epochs", f"must be an integer >= 1, got {self.epochs!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            bad("lr", f"must be a positive number, got {self.lr!r}")
        if not isinstance(self.subnets_per_step, int) or self.subnets_per_step < 1:
            bad("subnets_per_step", f"must be an integer >= 1, got {self.subnets_per_step!r}")
        if self.sandwich and self.subnets_per_step < 2:
            bad("sandwich", "needs subnets_per_step >= 2 (the largest and the smallest subnet)")
        if self.kd_teacher not in ("fixed", "inplace"):
            bad("kd_teacher", f"must be \"fixed\" or \"inplace\", got {self.kd_teacher!r}")
        if self.kd_teacher == "inplace" and not self.sandwich:
            bad("kd_teacher", "\"inplace\" needs \"sandwich\": true (the largest subnet is the teacher)")
        if not (isinstance(self.kd_weight, (int, float)) and self.kd_weight >= 0):
            bad("kd_weight", f"must be >= 0, got {self.kd_weight!r}")
        if not isinstance(self.elastic, dict):
            bad("elastic", "must map dimension names to value lists or \"all\"")
        for dim, v in self.elastic.items():
            if dim not in DIMS:
                bad(f"elastic.{dim}", f"is not a dimension; use one of {list(DIMS)}")
            full = getattr(space, dim)
            if v == "all":
                continue
            if not isinstance(v, (list, tuple)) or not v:
                bad(f"elastic.{dim}", f"must be \"all\" or a non-empty list, got {v!r}")
            extra = [x for x in v if not any(math.isclose(float(x), float(f)) for f in full)]
            if extra:
                bad(f"elastic.{dim}", f"holds {extra}, not in the search space; allowed values: {list(full)}")


@dataclass(frozen=True)
class Schedule:
    phases: tuple[Phase, ...]
    momentum: float = 0.9
    weight_decay: float = 5e-5
    #: Fraction of the first phase's steps spent warming the learning rate up linearly.
    warmup_fraction: float = 0.05
    label_smoothing: float = 0.0
    #: Random translation by up to this fraction of the resolution (train-time augmentation).
    shift: float = 0.125
    kd_temperature: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "phases", tuple(
            p if isinstance(p, Phase) else _phase_from_dict(p, i) for i, p in enumerate(self.phases)))

    @property
    def total_epochs(self) -> int:
        return sum(p.epochs for p in self.phases)

    def validate(self, space: SearchSpace) -> "Schedule":
        if not self.phases:
            raise ConfigError("schedule: field 'phases' must list at least one phase")
        names = [p.name for p in self.phases]
        if len(set(names)) != len(names):
            raise ConfigError(f"schedule: phase names must be unique, got {names}")
        for i, p in enumerate(self.phases):
            p.validate(space, f"phases[{i}]")
        for name in ("momentum", "weight_decay", "warmup_fraction", "label_smoothing", "shift"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0 <= v < 1):
                raise ConfigError(f"schedule: field '{name}' must lie in [0, 1), got {v!r}")
        if not self.kd_temperature > 0:
            raise ConfigError(f"schedule: field 'kd_temperature' must be > 0, got {self.kd_temperature}")
        return self

    # -- serialisation ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["phases"] = [asdict(p) for p in self.phases]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Schedule":
        if not isinstance(d, dict):
            raise ConfigError("schedule: expected a JSON object with a 'phases' list")
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"schedule: unknown field(s) {sorted(unknown)}; known fields: {sorted(known)}")
        if "phases" not in d:
            raise ConfigError("schedule: field 'phases' is missing")
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path) -> "Schedule":
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"schedule file {path} not found")
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from None
        except ConfigError as e:
            raise ConfigError(f"{path}: {e.message}", e.hint) from None


def _phase_from_dict(d: dict, i: int) -> Phase:
    if not isinstance(d, dict):
        raise ConfigError(f"schedule: phases[{i}] must be an object")
    known = {f.name for f in fields(Phase)}
    unknown = set(d) - known
    if unknown:
        raise ConfigError(f"schedule: phases[{i}] has unknown field(s) {sorted(unknown)}; "
                          f"known fields: {sorted(known)}")
    missing = [k for k in ("name", "epochs", "lr") if k not in d]
    if missing:
        raise ConfigError(f"schedule: phases[{i}] is missing field(s) {missing}")
    return Phase(**d)


#: The OFA recipe as shares of one budget, in phase order: (name, share, lr, elastic dims added,
#: subnets per step, distillation teacher). Reasons in docs/TRAINING.md. The shares sum to 1.
BUDGET_PHASES = (
    # The full network first, at every resolution, to convergence within its share: every later phase
    # distils from it, so a weak teacher caps every subnet (issue 11: 10 of 30 epochs left it at 37%).
    ("largest", 0.45, 0.1, ("resolutions",), 1, None),
    # Elastic kernel: one subnet per step, KD from the frozen full network (OFA).
    ("kernel", 0.10, 0.03, ("kernel_sizes",), 1, "fixed"),
    # Elastic depth: two subnets per step, same teacher.
    ("depth", 0.10, 0.02, ("depths",), 2, "fixed"),
    # Elastic expand ratio: sandwich rule (largest + smallest + sampled), KD from the full network.
    ("expand", 0.15, 0.03, ("expand_ratios",), 4, "fixed"),
    # Elastic width last: everything elastic, sandwich rule with in-place distillation (BigNAS): the
    # step's own largest subnet teaches, so the teacher follows the shared weights as they move.
    ("width", 0.20, 0.03, ("width_mults",), 4, "inplace"),
)
#: The default budget in epochs (`ofa-mcu train` without --budget or --schedule).
DEFAULT_BUDGET_EPOCHS = 30


def phase_epochs(total: int, shares=None) -> list[int]:
    """Split `total` epochs over the phases by their shares (largest remainder, ties to the earlier
    phase); a phase rounded to 0 gets 1 epoch, taken from the longest. The parts add up to `total`."""
    shares = [s for _, s, *_ in BUDGET_PHASES] if shares is None else list(shares)
    n = len(shares)
    if isinstance(total, bool) or not isinstance(total, int) or total < n:
        raise ConfigError(f"a budget of {total!r} epochs cannot hold the {n} training phases",
                          hint=f"give --budget {n} or more epochs")
    raw = [s * total / sum(shares) for s in shares]
    counts = [int(math.floor(r)) for r in raw]
    for i in sorted(range(n), key=lambda i: (-(raw[i] - counts[i]), i))[: total - sum(counts)]:
        counts[i] += 1
    for i in range(n):
        if counts[i] == 0:
            counts[max(range(n), key=lambda j: (counts[j], -j))] -= 1
            counts[i] = 1
    return counts


def budget_schedule(space: SearchSpace, epochs: int | None = None, *,
                    phase_lengths: list[int] | None = None) -> Schedule:
    """The OFA recipe with phase lengths taken from one budget of `epochs` (BUDGET_PHASES shares), or
    explicit `phase_lengths` (one per phase; used by the minutes budget)."""
    lengths = phase_lengths if phase_lengths is not None else phase_epochs(
        DEFAULT_BUDGET_EPOCHS if epochs is None else epochs)
    if len(lengths) != len(BUDGET_PHASES):
        raise ConfigError(f"{len(lengths)} phase lengths for {len(BUDGET_PHASES)} phases")
    phases, elastic = [], {}
    for (name, _share, lr, dims, k, teacher), n in zip(BUDGET_PHASES, lengths):
        elastic = {**elastic, **{d: "all" for d in dims}}
        kw = {}
        if teacher is not None:
            kw = {"kd_weight": 1.0, "kd_teacher": teacher, "sandwich": k >= 2 and name != "depth"}
        phases.append(Phase(name, int(n), lr, dict(elastic), subnets_per_step=k, **kw))
    return Schedule(phases=tuple(phases))


def default_schedule(space: SearchSpace, *, scale: float = 1.0) -> Schedule:
    """The default: `budget_schedule` over DEFAULT_BUDGET_EPOCHS epochs (times `scale`)."""
    return budget_schedule(space, max(len(BUDGET_PHASES), round(DEFAULT_BUDGET_EPOCHS * scale)))
