"""Never emit a model that does not fit: export the best candidates in turn and check measured costs.

`select_and_verify` searches (or takes the ranked candidates of a search), exports the most accurate
candidate with `pipeline.export.export_subnet`, and checks against the board:

  SRAM  = kTensorArenaSize the firmware will declare, computed by pipeline/codegen/arena.py from the
          *measured* 64-bit TFLM minimum and the real model's CMSIS-NN scratch buffers (the documented
          64 -> 32-bit rule: 32-bit bookkeeping is smaller, so the 64-bit figure is kept as headroom),
          + the app's RAM (pipeline.costs.APP_SRAM_BYTES)   <= SRAM budget
  flash = the real .tflite size + TFLM runtime code for its ops + app code  <= flash budget
  and the export's own gates (int8 accuracy drop, TFLM bit-exact) passed.

A candidate that misses is logged to `verify.jsonl` (what was predicted, what was measured, why) and
the next one is exported. The winner's files are copied to `out_dir` (model_int8.tflite, model.onnx,
export_report.json) with `search.json` describing the choice. Exports are kept under
`exports/<arch id>/` (or `export_cache`), so an arch shared by several boards is exported once.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .. import artifacts
from .._io import append_jsonl, write_bytes
from ..costs import APP_SRAM_BYTES, runtime_code_bytes
from ..costs.flash import APP_CODE_BYTES, is_image_input
from ..errors import AccuracyGateError, ArtifactError, BudgetError, ConfigError, ExportError
from ..supernet.space import SearchSpace, SubnetArch
from .evolution import Budget, Candidate, SearchResult, search

EXPORT_REPORT = artifacts.filename("export report")


@dataclass
class Measured:
    host_arena_bytes: int
    firmware_arena_bytes: int
    sram_bytes: int
    model_bytes: int
    flash_bytes: int
    int8_acc: float | None
    float_acc: float | None
    op_kinds: tuple[str, ...]

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass
class Selection:
    board: str
    arch: SubnetArch
    candidate: Candidate
    measured: Measured
    budget: Budget
    export_dir: Path
    attempts: list[dict] = field(default_factory=list)
    search: SearchResult | None = None
    heldout_acc: float | None = None   # the pick measured on the predictor's label images (float)

    @property
    def heldout_minus_measured(self) -> float | None:
        """Held-out (float, label images) minus measured (int8 TFLite Micro, test split) accuracy, in points."""
        return prediction_error(self.heldout_acc, self.measured.int8_acc)

    @property
    def margins(self) -> dict:
        return {"sram_bytes": self.budget.sram_bytes - self.measured.sram_bytes,
                "flash_bytes": self.budget.flash_bytes - self.measured.flash_bytes,
                "latency_ms": (None if self.budget.latency_ms is None
                               else self.budget.latency_ms - self.candidate.costs.latency_ms)}

    @property
    def predicted_minus_measured(self) -> float | None:
        """Predicted (float, predictor labels) minus measured (int8 TFLite Micro, test split) accuracy, in points."""
        return prediction_error(self.candidate.predicted_acc, self.measured.int8_acc)

    def to_dict(self) -> dict:
        return {"board": self.board, "arch": self.arch.to_dict(), "budget": self.budget.to_dict(),
                "predicted": self.candidate.to_dict(self.budget), "measured": self.measured.to_dict(),
                "predicted_minus_measured_points": self.predicted_minus_measured,
                "heldout_acc": self.heldout_acc, "heldout_minus_measured_points": self.heldout_minus_measured,
                "measured_margins": self.margins, "export_dir": str(self.export_dir),
                "attempts": self.attempts,
                "search": None if self.search is None else self.search.to_dict(top=10)}


def prediction_error(predicted_acc: float | None, int8_acc: float | None) -> float | None:
    """Predicted minus measured int8 accuracy in points (None when either is missing)."""
    if predicted_acc is None or int8_acc is None or predicted_acc != predicted_acc:
        return None
    return round(100.0 * (float(predicted_acc) - float(int8_acc)), 3)


def measured_costs(export_dir: Path, board) -> Measured:
    """SRAM / flash of an exported model on `board`, from its files (see module docstring)."""
    from ..codegen.arena import plan_arena
    from ..codegen.ops import op_label
    from ..tflite.model_info import read_tflite

    report = artifacts.read("export report", export_dir)
    host = int(report["arena"]["min_arena_bytes"])
    info, data = read_tflite(export_dir / "model_int8.tflite")
    fw = plan_arena(info, board.core, host).bytes
    kinds = tuple(sorted({op_label(op) for op in info.ops}))
    image = is_image_input(info.input.shape, info.input.dtype)
    flash = len(data) + runtime_code_bytes(kinds, board.core, image_input=image) + APP_CODE_BYTES
    acc = report.get("accuracy", {})
    return Measured(host, fw, fw + APP_SRAM_BYTES, len(data), flash, acc.get("int8_tflm"), acc.get("float"), kinds)


def _export(supernet_dir: Path, arch: SubnetArch, cache: Path, export_fn: Callable | None,
            **export_kwargs) -> Path:
    """Export `arch` into `cache/<id>` unless a passed export with the same key (weights, space, arch,
    export settings incl. patches: `export_key`) is already there; a stale one (retrained supernet) is replaced."""
    from ..export.stage import export_key

    patches = str(export_kwargs.get("patches", "off"))
    ft = int(export_kwargs.get("finetune_epochs") or 0)
    # A patched or fine-tuned export is another model of the same arch: its own directory (absolute: the
    # conversion worker runs elsewhere), so a plain and a fine-tuned export never overwrite each other.
    d = Path(cache).resolve() / (str(arch) + ("" if patches == "off" else f"+patches{patches}")
                                 + (f"+ft{ft}" if ft else ""))
    supernet_dir = Path(supernet_dir).resolve()
    rep = d / EXPORT_REPORT
    if rep.exists() and (d / "model_int8.tflite").exists():
        r = artifacts.read("export report", rep, fields=("passed",))
        if r.get("passed") and r.get("cache_key") == export_key(supernet_dir, arch, **export_kwargs):
            return d
    if export_fn is None:
        from ..export import export_subnet as export_fn
    export_fn(supernet_dir, arch, d, **export_kwargs)
    return d


def _heldout(supernet_dir: Path, arch: SubnetArch, seed: int, export_kwargs: dict | None,
             say: Callable[[str], None]) -> float | None:
    """The pick's held-out accuracy (`predictor.heldout_accuracy`), or None when it would not describe the
    deployed model (fine-tuned weights) or the run has no trained weights to measure."""
    from .predictor import heldout_accuracy

    if (export_kwargs or {}).get("finetune_epochs"):
        return None
    try:
        return heldout_accuracy(supernet_dir, arch, seed=seed)
    except (ArtifactError, ConfigError) as e:
        say(f"no held-out accuracy for {arch}: {e.message}")
        return None


def select_and_verify(supernet_dir: str | Path, board, out_dir: str | Path, *, predictor=None,
                      latency_ms: float | None = None, sram_bytes: int | None = None,
                      flash_bytes: int | None = None, seed: int = 0, max_candidates: int = 5,
                      result: SearchResult | None = None, candidates: list[SubnetArch] | None = None,
                      export_cache: str | Path | None = None, export_fn: Callable | None = None,
                      search_kwargs: dict | None = None, export_kwargs: dict | None = None,
                      log: Callable[[str], None] | None = None) -> Selection:
    """Export candidates best-first until one's measured SRAM and flash fit `board`.

    `result` reuses a finished search; `candidates` gives the archs to try in order (their predicted
    figures are still computed); otherwise the search runs here. Raises BudgetError when none of the
    first `max_candidates` fits (the attempts are in `out_dir/verify.jsonl`).
    """
    from ..costs import estimate
    from .predictor import get_predictor

    say = log or (lambda msg: None)
    supernet_dir, out_dir = Path(supernet_dir), Path(out_dir)
    space = SearchSpace.load(supernet_dir / "space.json")
    # Absolute paths: the export's conversion worker runs in another working directory.
    supernet_dir, out_dir = supernet_dir.resolve(), out_dir.resolve()
    cache = (Path(export_cache) if export_cache is not None else out_dir / "exports").resolve()
    if candidates is not None:
        if predictor is None:
            predictor = get_predictor(supernet_dir, seed=seed)
        accs = predictor.predict(candidates)
        fit = getattr(predictor, "score", predictor.predict)(candidates)
        budget_src = result.budget if result is not None else None
        from .evolution import resolve_budget
        budget = budget_src or resolve_budget(board, sram_bytes=sram_bytes, flash_bytes=flash_bytes,
                                              latency_ms=latency_ms)
        sram_model = (search_kwargs or {}).get("sram_model", "firmware")
        ranked = []
        for a, acc, f in zip(candidates, accs, fit):
            c = estimate(space, a, board)
            s = c.sram_bytes if sram_model == "firmware" else c.arena_bytes + APP_SRAM_BYTES
            ranked.append(Candidate(a, float(acc), c, s, float(f)))
    else:
        if result is None:
            if predictor is None:
                predictor = get_predictor(supernet_dir, seed=seed)
            result = search(space, board, predictor=predictor, latency_ms=latency_ms, sram_bytes=sram_bytes,
                            flash_bytes=flash_bytes, seed=seed, **(search_kwargs or {}))
        budget, ranked = result.budget, result.ranked
    attempts: list[dict] = []
    log_path = out_dir / "verify.jsonl"
    for cand in ranked[:max_candidates]:
        t0 = time.perf_counter()
        entry: dict[str, Any] = {"board": board.id, "arch": str(cand.arch), "patches": cand.patches,
                                 "predicted_acc": cand.predicted_acc,
                                 "predicted": {"sram_bytes": cand.sram_bytes,
                                               "flash_bytes": cand.costs.flash_bytes,
                                               "host_arena_bytes": cand.costs.arena_host_bytes,
                                               "latency_ms": cand.costs.latency_ms}}
        try:
            kw = dict(export_kwargs or {})
            if cand.patches != "off":   # the search costed it patched: export it patched
                kw["patches"] = cand.patches
            d = _export(supernet_dir, cand.arch, cache, export_fn, seed=seed, **kw)
        except (AccuracyGateError, ExportError) as e:
            entry.update({"fits": False, "reason": f"export failed: {e.message}",
                          "seconds": round(time.perf_counter() - t0, 2)})
            attempts.append(entry)
            append_jsonl(log_path, entry)
            say(f"miss {cand.arch}: {entry['reason']}")
            continue
        m = measured_costs(d, board)
        reasons = []
        if m.sram_bytes > budget.sram_bytes:
            reasons.append(f"SRAM {m.sram_bytes} B measured (predicted {cand.sram_bytes} B) > budget "
                           f"{budget.sram_bytes} B")
        if m.flash_bytes > budget.flash_bytes:
            reasons.append(f"flash {m.flash_bytes} B measured (predicted {cand.costs.flash_bytes} B) > budget "
                           f"{budget.flash_bytes} B")
        entry.update({"measured": m.to_dict(), "fits": not reasons, "reason": "; ".join(reasons),
                      "export_dir": str(d), "seconds": round(time.perf_counter() - t0, 2)})
        attempts.append(entry)
        append_jsonl(log_path, entry)
        if reasons:
            say(f"miss {cand.arch}: {entry['reason']}; trying the next candidate")
            continue
        for name in ("model_int8.tflite", "model.onnx", EXPORT_REPORT):
            if (d / name).exists():
                write_bytes(out_dir / name, (d / name).read_bytes())
        sel = Selection(board.id, cand.arch, cand, m, budget, d, attempts, result,
                        heldout_acc=_heldout(supernet_dir, cand.arch, seed, export_kwargs, say))
        artifacts.write("search result", out_dir, sel.to_dict())
        err = sel.predicted_minus_measured
        held = ""
        if sel.heldout_minus_measured is not None:
            held = (f", {100 * sel.heldout_acc:.2f}% on held-out images (float, "
                    f"{sel.heldout_minus_measured:+.2f} points)")
        acc = ("" if err is None else f"; accuracy {100 * cand.predicted_acc:.2f}% predicted ({err:+.2f} points)"
               f"{held}, {100 * m.int8_acc:.2f}% int8 measured (test split)")
        say(f"fits {cand.arch}: SRAM {m.sram_bytes} / {budget.sram_bytes} B, flash {m.flash_bytes} / "
            f"{budget.flash_bytes} B{acc}")
        return sel
    raise BudgetError(
        f"none of the {min(len(ranked), max_candidates)} best candidates for board '{board.id}' fits once "
        f"exported (see {log_path})",
        hint="raise max_candidates, or relax the budget; the log lists predicted vs measured costs")
