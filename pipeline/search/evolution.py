"""Evolutionary search for the most accurate subnet that fits a board's SRAM, flash and latency budgets.

OFA's evolution finder (mit-han-lab/once-for-all, ofa/nas/search_algorithm/evolution.py): a population
of feasible archs; each generation keeps the `parents` best by predicted accuracy and adds
`n_mutate` mutants (each gene resampled with probability `mutation_prob`) and `n_crossover`
children (each gene from one of two parents), every child re-drawn until it is feasible. Several
constraints instead of OFA's one; a Pareto front (accuracy up, latency down, SRAM down) over every
feasible arch evaluated; one seeded `np.random.Generator`, so a seed gives the same result.

Generations default to 40 instead of OFA's 500: on the default space the best score stopped moving
after about 30 generations (6 runs on 3 boards, 60 generations each), and 40 keep a board under ~5 s.

Genes: resolution, per stage width and depth, and a kernel and an expand ratio for every block slot
up to the largest depth (slots past a stage's depth are carried along unused, as in OFA).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..costs import Costs, estimate, quick_costs
from ..costs.latency import LatencyModel, load_calibration
from ..errors import BudgetError, ConfigError
from ..supernet.space import SearchSpace, SubnetArch

SRAM_MODELS = ("firmware", "device")
OBJECTIVES = ("accuracy", "latency", "energy")
DEFAULT_TOLERANCE_POINTS = 1.0   # --objective latency|energy without --tolerance


@dataclass(frozen=True)
class Budget:
    sram_bytes: int
    flash_bytes: int
    latency_ms: float | None = None

    def to_dict(self) -> dict:
        return {"sram_bytes": self.sram_bytes, "flash_bytes": self.flash_bytes, "latency_ms": self.latency_ms}


@dataclass(frozen=True)
class Candidate:
    arch: SubnetArch
    predicted_acc: float     # the predictor's estimate (ensemble mean)
    costs: Costs
    sram_bytes: int          # the figure compared with the SRAM budget (see SRAM_MODELS)
    fitness: float = math.nan   # what the search ranked by (pessimistic estimate); nan if not searched
    patches: str = "off"     # patch-based inference plan (pipeline.supernet.patches), "off" if none

    def margins(self, budget: Budget) -> dict:
        m = {"sram_bytes": budget.sram_bytes - self.sram_bytes,
             "flash_bytes": budget.flash_bytes - self.costs.flash_bytes}
        m["latency_ms"] = None if budget.latency_ms is None else budget.latency_ms - self.costs.latency_ms
        return m

    def to_dict(self, budget: Budget | None = None) -> dict:
        d = {"arch": self.arch.to_dict(), "predicted_acc": self.predicted_acc, "fitness": self.fitness,
             "sram_bytes": self.sram_bytes, "costs": self.costs.to_dict(), "patches": self.patches}
        if budget is not None:
            d["margins"] = self.margins(budget)
        return d


@dataclass
class SearchResult:
    board: str
    budget: Budget
    best: Candidate
    ranked: list[Candidate]          # feasible archs by predicted accuracy, best first (fallbacks)
    pareto: list[Candidate]          # non-dominated in (accuracy up, latency down, SRAM down)
    history: list[float]             # best predicted accuracy after each generation
    evaluated: int
    seconds: float
    params: dict = field(default_factory=dict)

    @property
    def margins(self) -> dict:
        return self.best.margins(self.budget)

    def to_dict(self, *, top: int = 20) -> dict:
        return {"board": self.board, "budget": self.budget.to_dict(),
                "best": self.best.to_dict(self.budget), "margins": self.margins,
                "ranked": [c.to_dict(self.budget) for c in self.ranked[:top]],
                "pareto": [c.to_dict() for c in self.pareto],
                "history": self.history, "evaluated": self.evaluated, "seconds": round(self.seconds, 3),
                "params": self.params}


def resolve_budget(board, *, sram_bytes: int | None = None, flash_bytes: int | None = None,
                   latency_ms: float | None = None) -> Budget:
    """The board's usable SRAM / flash, tightened by any budget given; a latency budget if given."""
    for name, v in (("sram_bytes", sram_bytes), ("flash_bytes", flash_bytes), ("latency_ms", latency_ms)):
        if v is not None and v <= 0:
            raise ConfigError(f"budget {name} must be positive, got {v}")
    sram = board.usable_sram_bytes if sram_bytes is None else min(int(sram_bytes), board.usable_sram_bytes)
    flash = board.usable_flash_bytes if flash_bytes is None else min(int(flash_bytes), board.usable_flash_bytes)
    return Budget(sram, flash, None if latency_ms is None else float(latency_ms))


# -- genotype ----------------------------------------------------------------------------------------
class _Genes:
    """Arch <-> gene vector: [res, (width, depth) per stage, (kernel, expand) per slot]."""

    def __init__(self, space: SearchSpace):
        self.space = space
        self.n_st, self.dmax = len(space.stages), space.max_depth
        self.choices: list[tuple] = [space.resolutions]
        for _ in range(self.n_st):
            self.choices += [space.width_mults, space.depths]
        for _ in range(self.n_st * self.dmax):
            self.choices += [space.kernel_sizes, space.expand_ratios]
        self.sizes = np.array([len(c) for c in self.choices])
        self._memo: dict[bytes, SubnetArch] = {}   # genes -> arch (building a SubnetArch validates every field)

    def random(self, rng: np.random.Generator) -> np.ndarray:
        return (rng.random(len(self.sizes)) * self.sizes).astype(np.int64)

    def from_arch(self, arch: SubnetArch) -> np.ndarray:
        s = self.space
        g = [s.resolutions.index(arch.resolution)]
        for i in range(self.n_st):
            g += [min(range(len(s.width_mults)), key=lambda j: abs(s.width_mults[j] - arch.widths[i])),
                  s.depths.index(len(arch.kernels[i]))]
        for i in range(self.n_st):
            for b in range(self.dmax):
                k = arch.kernels[i][b] if b < len(arch.kernels[i]) else arch.kernels[i][-1]
                e = arch.expands[i][b] if b < len(arch.expands[i]) else arch.expands[i][-1]
                g += [s.kernel_sizes.index(k), s.expand_ratios.index(e)]
        return np.array(g, dtype=np.int64)

    def to_arch(self, g: np.ndarray) -> SubnetArch:
        key = np.asarray(g, dtype=np.int64).tobytes()
        arch = self._memo.get(key)
        if arch is None:
            arch = self._memo[key] = self._to_arch(g)
        return arch

    def _to_arch(self, g: np.ndarray) -> SubnetArch:
        s = self.space
        widths, kernels, expands = [], [], []
        for i in range(self.n_st):
            widths.append(s.width_mults[g[1 + 2 * i]])
            d = s.depths[g[2 + 2 * i]]
            base = 1 + 2 * self.n_st + 2 * i * self.dmax
            kernels.append(tuple(s.kernel_sizes[g[base + 2 * b]] for b in range(d)))
            expands.append(tuple(s.expand_ratios[g[base + 2 * b + 1]] for b in range(d)))
        return SubnetArch(s.resolutions[g[0]], tuple(widths), tuple(kernels), tuple(expands))


def _pareto(cands: Sequence[Candidate]) -> list[Candidate]:
    """Non-dominated candidates: higher predicted accuracy, lower latency, lower SRAM (by accuracy)."""
    if not cands:
        return []
    pts = np.array([(-c.predicted_acc, c.costs.latency_ms, c.sram_bytes) for c in cands], dtype=np.float64)
    order = np.lexsort((pts[:, 2], pts[:, 1], pts[:, 0]))
    front: list[int] = []
    F = np.empty((0, 3))
    for i in order:
        p = pts[i]
        # Sorted by accuracy first, so only an earlier (no less accurate) point can dominate p.
        if len(F) and np.any(np.all(F <= p, axis=1)):
            continue
        front.append(int(i))
        F = np.vstack([F, p])
    return [cands[i] for i in front]


def smallest_costs(space: SearchSpace, board, *, calibration=None, sram_model: str = "firmware") -> dict:
    """Costs of the smallest arch, the least SRAM / flash / latency any arch of the space needs."""
    c = estimate(space, space.smallest(), board, calibration=calibration)
    sram = c.sram_bytes if sram_model == "firmware" else c.arena_bytes + (c.sram_bytes - c.firmware_arena_bytes)
    return {"arch": str(space.smallest()), "sram_bytes": sram, "flash_bytes": c.flash_bytes,
            "latency_ms": c.latency_ms}


def _budget_error(space, board, budget: Budget, calibration, sram_model) -> BudgetError:
    least = smallest_costs(space, board, calibration=calibration, sram_model=sram_model)
    bad = []
    if least["sram_bytes"] > budget.sram_bytes:
        bad.append(f"SRAM: needs at least {least['sram_bytes'] / 1024:.1f} KiB, budget "
                   f"{budget.sram_bytes / 1024:.1f} KiB")
    if least["flash_bytes"] > budget.flash_bytes:
        bad.append(f"flash: needs at least {least['flash_bytes'] / 1024:.1f} KiB, budget "
                   f"{budget.flash_bytes / 1024:.1f} KiB")
    if budget.latency_ms is not None and least["latency_ms"] > budget.latency_ms:
        bad.append(f"latency: needs at least {least['latency_ms']:.2f} ms, budget {budget.latency_ms:.2f} ms")
    return BudgetError(
        f"no subnet fits board '{board.id}': " + "; ".join(bad)
        + f" (smallest arch {least['arch']}: SRAM {least['sram_bytes'] / 1024:.1f} KiB, flash "
          f"{least['flash_bytes'] / 1024:.1f} KiB, latency {least['latency_ms']:.2f} ms)",
        hint="relax the violated budget, pick a larger board, or train a supernet with a smaller space")


def search(space: SearchSpace, board, *, predictor, latency_ms: float | None = None,
           sram_bytes: int | None = None, flash_bytes: int | None = None, population: int = 100,
           generations: int = 40, parents: int = 25, mutation_prob: float = 0.1, n_mutate: int = 50,
           n_crossover: int = 50, seed: int = 0, calibration: Any = None, sram_model: str = "firmware",
           max_tries: int = 200, keep_ranked: int = 50, patches: str = "off",
           objective: str = "accuracy", tolerance: float | None = None,
           progress: Callable[[int, int, float], None] | None = None, progress_lines: bool = False,
           progress_every_s: float = 5.0) -> SearchResult:
    """Most accurate (predicted) arch within the board's budgets, or the cheapest one close to it.

    objective "accuracy" (default): the arch with the best predicted accuracy (the ensemble's
    pessimistic score, `AccuracyPredictor.score`). "latency" / "energy": first the most accurate as
    above, then a second evolution (same length) for the lowest predicted latency / energy per inference
    among archs whose score is within `tolerance` points (default 1.0) of that best; `ranked` then lists
    those archs cheapest first, followed by the rest by score. Energy = latency x the board's active
    power (datasheet), so on one board it orders archs as latency does; it needs `active_power_mw`.

    sram_model "firmware" (default) compares the arena the generated firmware will reserve (codegen's
    rule on the 64-bit arena) + app buffers with the SRAM budget; "device" uses the 32-bit CMSIS-NN
    replay instead (the true need, for users who size the arena themselves).
    `progress(generation, generations, best)` is called after every generation; `progress_lines` prints
    a line to stderr every `progress_every_s` seconds (pipeline.progress) for logs and pipes.
    patches: "off", "auto" or a fixed "RxC[@bK]": an arch whose unpatched model exceeds the SRAM budget
    is costed again as a patched model (`pipeline.costs.patches`), so patching is one more search
    dimension (split depth and grid chosen per arch); the candidate records its plan in `patches`.
    """
    from ..supernet.patches import PatchSpec
    patch_spec = PatchSpec.parse(patches)
    if sram_model not in SRAM_MODELS:
        raise ConfigError(f"sram_model must be one of {SRAM_MODELS}, got {sram_model!r}")
    if parents > population or population < 2 or parents < 1:
        raise ConfigError(f"need 1 <= parents ({parents}) <= population ({population}) and population >= 2")
    if not 0.0 <= mutation_prob <= 1.0:
        raise ConfigError(f"mutation_prob must be in [0, 1], got {mutation_prob}")
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if tolerance is not None and (not math.isfinite(tolerance) or tolerance < 0):
        raise ConfigError(f"tolerance must be a finite number of points >= 0, got {tolerance}")
    if objective == "accuracy" and tolerance:
        raise ConfigError("a tolerance needs a cost to minimise: use objective latency or energy",
                          hint="--objective latency --tolerance 1 picks the fastest arch within 1 point")
    if objective == "energy" and not getattr(board, "active_power_mw", None):
        raise ConfigError(f"board '{board.id}' has no active power figure (active_power_mw), so no energy "
                          f"estimate", hint="use --objective latency, or add run current to the board file")
    if objective != "accuracy" and tolerance is None:
        tolerance = DEFAULT_TOLERANCE_POINTS
    t0 = time.perf_counter()
    budget = resolve_budget(board, sram_bytes=sram_bytes, flash_bytes=flash_bytes, latency_ms=latency_ms)
    lat_model: LatencyModel = load_calibration(calibration, board.core, board.id)
    rng = np.random.default_rng(seed)
    genes = _Genes(space)
    costs: dict[SubnetArch, Candidate | None] = {}   # None: infeasible
    acc_cache: dict[SubnetArch, float] = {}

    def sram_of(c: Costs) -> int:
        if sram_model == "firmware":
            return c.sram_bytes
        return c.arena_bytes + (c.sram_bytes - c.firmware_arena_bytes)

    def feasible(arch: SubnetArch) -> bool:
        if arch in costs:
            return costs[arch] is not None
        lat, flash, sram_floor = quick_costs(space, arch, board, calibration=lat_model)
        if (flash > budget.flash_bytes or (sram_floor > budget.sram_bytes and not patch_spec.enabled)
                or (budget.latency_ms is not None and lat > budget.latency_ms)):
            costs[arch] = None
            return False

        def fits(c: Costs) -> bool:
            return (sram_of(c) <= budget.sram_bytes and c.flash_bytes <= budget.flash_bytes
                    and (budget.latency_ms is None or c.latency_ms <= budget.latency_ms))
        c = estimate(space, arch, board, calibration=lat_model)
        plan_spec = "off"
        if not fits(c) and patch_spec.enabled and sram_of(c) > budget.sram_bytes:
            from ..costs.patches import patched_estimate, search_plan
            plan = search_plan(space, arch, str(patch_spec), board.core)
            if plan is not None:
                c, plan_spec = patched_estimate(space, arch, board, plan, calibration=lat_model), plan.spec
        ok = fits(c)
        costs[arch] = Candidate(arch, math.nan, c, sram_of(c), patches=plan_spec) if ok else None
        return ok

    smallest = space.smallest()
    if not feasible(smallest):
        raise _budget_error(space, board, budget, lat_model, sram_model)

    def draw(make: Callable[[], np.ndarray]) -> np.ndarray:
        for _ in range(max_tries):
            g = make()
            if feasible(genes.to_arch(g)):
                return g
        return genes.from_arch(smallest)

    # Initial population: random feasible archs. Under a tight budget few random archs fit (1-3% at 50 ms
    # on a 64 MHz M4), and 200 draws per member cost a minute; so after `random_tries` misses a member is
    # a mutant (30% of genes redrawn) of a feasible member found so far (the smallest arch at first).
    random_tries = 20

    def draw_initial(found: list[np.ndarray]) -> np.ndarray:
        for _ in range(random_tries):
            g = genes.random(rng)
            if feasible(genes.to_arch(g)):
                return g
        base = found or [genes.from_arch(smallest)]

        def near() -> np.ndarray:
            p = base[rng.integers(len(base))]
            return np.where(rng.random(len(p)) < 0.3, genes.random(rng), p)
        return draw(near)

    pop: list[np.ndarray] = []
    for _ in range(population):
        pop.append(draw_initial(pop))

    # Fitness: the predictor's `score` when it has one (a pessimistic ensemble estimate, see
    # predictor.AccuracyPredictor), else its prediction. Candidates report the plain prediction too.
    fitness_fn = getattr(predictor, "score", None) or predictor.predict
    mean_cache: dict[SubnetArch, float] = {}

    def evaluate(archs: list[SubnetArch]) -> None:
        new = sorted({a for a in archs if a not in acc_cache}, key=str)
        if new:
            for a, f, m in zip(new, fitness_fn(new), predictor.predict(new)):
                acc_cache[a] = float(f)
                mean_cache[a] = float(m)

    def score(gs: list[np.ndarray]) -> np.ndarray:
        archs = [genes.to_arch(g) for g in gs]
        evaluate(archs)
        return np.array([acc_cache[a] for a in archs])

    def evolve(pop: list[np.ndarray], rank: Callable[[list[np.ndarray]], np.ndarray], phase: str,
               accept: Callable[[SubnetArch], bool] = lambda a: True) -> list[float]:
        """OFA's loop: keep the `parents` best by `rank` (higher is better), add mutants and crossovers
        that are feasible and pass `accept` (else a parent is kept). Returns the best rank per generation."""
        hist: list[float] = []
        vals = rank(pop)
        for gen in range(generations):
            order = np.argsort(-vals, kind="stable")[:parents]
            par = [pop[i] for i in order]

            def ok(g: np.ndarray) -> bool:
                a = genes.to_arch(g)
                return feasible(a) and accept(a)

            def pick(make: Callable[[], np.ndarray]) -> np.ndarray:
                for _ in range(max_tries):
                    g = make()
                    if ok(g):
                        return g
                return par[rng.integers(len(par))]

            def mutate() -> np.ndarray:
                p = par[rng.integers(len(par))]
                mask = rng.random(len(p)) < mutation_prob
                return np.where(mask, genes.random(rng), p)

            def cross() -> np.ndarray:
                a, b = par[rng.integers(len(par))], par[rng.integers(len(par))]
                return np.where(rng.random(len(a)) < 0.5, a, b)

            children = [pick(mutate) for _ in range(n_mutate)] + [pick(cross) for _ in range(n_crossover)]
            pop = par + children
            vals = rank(pop)
            hist.append(float(vals.max()))
            if progress:
                progress(gen + 1, generations, hist[-1])
            if lines is not None:
                best = (f"best {100 * hist[-1]:.2f}% predicted" if phase == "accuracy" else
                        f"cheapest {-hist[-1]:.2f} {'ms' if objective == 'latency' else 'uJ'} within "
                        f"{tolerance:g} points")
                lines.update(gen + 1, f"{phase} generation {gen + 1}/{generations}, {len(costs)} archs "
                                      f"evaluated, {best}")
        return hist

    lines = None
    if progress_lines:
        from ..progress import ProgressLines
        lines = ProgressLines(f"search {board.id}", generations, every_s=progress_every_s, eta=False)

    history = evolve(pop, score, "accuracy")

    def cost_of(a: SubnetArch) -> float:
        lat = costs[a].costs.latency_ms
        return lat if objective == "latency" else lat * float(board.active_power_mw)   # ms x mW = uJ

    reference = None
    if objective != "accuracy":
        # The most accurate arch found sets the accuracy floor; phase 2 minimises the cost above it.
        evaluate([a for a, c in costs.items() if c is not None])
        reference = max((a for a, c in costs.items() if c is not None),
                        key=lambda a: (acc_cache[a], -costs[a].sram_bytes, str(a)))
        floor = acc_cache[reference] - tolerance / 100.0 - 1e-12

        def within(a: SubnetArch) -> bool:
            evaluate([a])
            return acc_cache[a] >= floor

        def cheap(gs: list[np.ndarray]) -> np.ndarray:
            archs = [genes.to_arch(g) for g in gs]
            evaluate(archs)
            return np.array([-cost_of(a) if acc_cache[a] >= floor else -math.inf for a in archs])

        pool = sorted((a for a, c in costs.items() if c is not None and acc_cache[a] >= floor), key=cost_of)
        pop2 = [genes.from_arch(a) for a in pool[:population]]
        pop2 += [genes.from_arch(reference)] * (population - len(pop2))
        if lines is not None:
            lines = ProgressLines(f"search {board.id}", generations, every_s=progress_every_s, eta=False)
        history += evolve(pop2, cheap, objective, accept=within)

    feasible = [arch for arch, cand in costs.items() if cand is not None]
    evaluate(feasible)
    feasible_cands = [Candidate(a, mean_cache[a], costs[a].costs, costs[a].sram_bytes, acc_cache[a],
                                costs[a].patches) for a in feasible]
    # Best fitness first; ties broken by lower SRAM, then by id, so the order is reproducible.
    feasible_cands.sort(key=lambda c: (-c.fitness, c.sram_bytes, str(c.arch)))
    ref_cand = feasible_cands[0]
    if reference is not None:
        ref_cand = next(c for c in feasible_cands if c.arch == reference)
        close = [c for c in feasible_cands if c.fitness >= floor]
        close.sort(key=lambda c: (cost_of(c.arch), -c.fitness, str(c.arch)))
        rest = [c for c in feasible_cands if c.fitness < floor]
        feasible_cands = close + rest
    params = {"population": population, "generations": generations, "parents": parents,
              "mutation_prob": mutation_prob, "n_mutate": n_mutate, "n_crossover": n_crossover,
              "seed": seed, "sram_model": sram_model, "latency_model": lat_model.source,
              "patches": str(patch_spec), "objective": objective, "tolerance_points": tolerance}
    if reference is not None:
        params["most_accurate"] = {"arch": str(ref_cand.arch), "fitness": ref_cand.fitness,
                                   "predicted_acc": ref_cand.predicted_acc,
                                   "latency_ms": ref_cand.costs.latency_ms, objective: cost_of(ref_cand.arch),
                                   "within_tolerance": len(close)}
    return SearchResult(
        board=board.id, budget=budget, best=feasible_cands[0], ranked=feasible_cands[:keep_ranked],
        pareto=_pareto(feasible_cands), history=history, evaluated=len(costs),
        seconds=time.perf_counter() - t0, params=params)
