"""The catalog: for every board, the best subnet that fits, with predicted and measured costs.

    data = catalog_data("runs/d/supernet", list_boards(), "runs/d/catalog")   # plain dict, reusable
    write_catalog(data, "runs/d/catalog")       # catalog.json, catalog.md, pareto_<board>.png
    catalog(...)                                # both

Every board runs the search, then `select_and_verify` exports candidates until one's measured SRAM and
flash fit. Exports go to `<out>/exports/<arch id>/` and are shared, so an arch chosen for several
boards is exported once, and a rerun reuses every finished export.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

from .. import artifacts
from .._io import write_text
from ..errors import BudgetError, ConfigError
from ..supernet.space import SearchSpace

CATALOG_VERSION = 2   # 2: one row per (board, latency budget); predicted "acc"; predicted - measured


def _kib(n: float | int | None) -> str:
    return "-" if n is None else f"{n / 1024:.1f}"


def latency_budgets(latency_ms) -> list[float | None]:
    """`None`, one number, or a sequence of numbers / None (no latency budget) -> a list of budgets."""
    if latency_ms is None or isinstance(latency_ms, (int, float)):
        return [None if latency_ms is None else float(latency_ms)]
    out = [None if v is None else float(v) for v in latency_ms]
    if not out:
        raise ConfigError("no latency budget given", hint="pass None, a number, or a list such as [20, 50, 200]")
    return out


def deployment_id(board_id: str, latency_ms: float | None, several: bool) -> str:
    """`board` for a one-budget catalog; `board@50ms` (or `board@none`) when there are several budgets."""
    if not several:
        return board_id
    return f"{board_id}@none" if latency_ms is None else f"{board_id}@{latency_ms:g}ms"


def catalog_data(supernet_dir: str | Path, boards: Sequence, out_dir: str | Path, *,
                 latency_ms=None, seed: int = 0, predictor=None, num_samples: int = 300,
                 max_candidates: int = 5, search_kwargs: dict | None = None, export_kwargs: dict | None = None,
                 export_fn: Callable | None = None, log: Callable[[str], None] | None = None,
                 progress: bool = False) -> dict:
    """Search, export and verify for each (board, latency budget); return the catalog as a JSON-ready dict.

    `latency_ms`: None, one budget, or a list (None in it: no latency budget). Each (board, budget) is
    one deployment: one row, its own folder `boards/<board>[@<budget>ms]`, its own plot."""
    from .evolution import search
    from .predictor import get_predictor
    from .verify import prediction_error, select_and_verify

    say = log or (lambda msg: None)
    t_start = time.perf_counter()
    supernet_dir, out_dir = Path(supernet_dir), Path(out_dir)
    space = SearchSpace.load(supernet_dir / "space.json")
    budgets = latency_budgets(latency_ms)
    several = len(budgets) > 1
    if predictor is None:
        predictor = get_predictor(supernet_dir, num_samples=num_samples, seed=seed, progress=progress)
    rows: list[dict[str, Any]] = []
    for board in boards:
        for lat in budgets:
            dep = deployment_id(board.id, lat, several)
            t0 = time.perf_counter()
            row: dict[str, Any] = {"board": board.id, "deployment": dep, "latency_budget_ms": lat,
                                   "name": board.name, "core": board.core,
                                   "clock_mhz": board.clock_mhz, "usable_sram_bytes": board.usable_sram_bytes,
                                   "usable_flash_bytes": board.usable_flash_bytes, "emulated": board.emulated}
            try:
                res = search(space, board, predictor=predictor, latency_ms=lat, seed=seed,
                             **(search_kwargs or {}))
            except BudgetError as e:
                row.update({"fits": False, "error": e.message})
                rows.append(row)
                say(f"{dep}: {e.message}")
                continue
            row["search_seconds"] = round(res.seconds, 3)
            row["budget"] = res.budget.to_dict()
            row["objective"] = res.params.get("objective", "accuracy")
            row["tolerance_points"] = res.params.get("tolerance_points")
            row["pareto"] = [{"arch": str(c.arch), "predicted_acc": c.predicted_acc,
                              "latency_ms": c.costs.latency_ms, "sram_bytes": c.sram_bytes,
                              "flash_bytes": c.costs.flash_bytes} for c in res.pareto]
            say(f"{dep}: search {res.seconds:.1f} s, best {res.best.arch} "
                f"(predicted {100 * res.best.predicted_acc:.2f}%)")
            try:
                sel = select_and_verify(supernet_dir, board, out_dir / "boards" / dep, result=res,
                                        seed=seed, max_candidates=max_candidates,
                                        export_cache=out_dir / "exports", export_fn=export_fn,
                                        export_kwargs=export_kwargs, log=lambda m, d=dep: say(f"{d}: {m}"))
            except BudgetError as e:
                row.update({"fits": False, "error": e.message, "arch": str(res.best.arch)})
                rows.append(row)
                continue
            c, m = sel.candidate, sel.measured
            row.update({
                "fits": True, "arch": str(sel.arch), "arch_dict": sel.arch.to_dict(), "patches": c.patches,
                "predicted": {"acc": c.predicted_acc, "sram_bytes": c.sram_bytes,
                              "flash_bytes": c.costs.flash_bytes, "host_arena_bytes": c.costs.arena_host_bytes,
                              "arena_bytes_32bit": c.costs.arena_bytes, "model_bytes": c.costs.model_bytes,
                              "latency_ms": c.costs.latency_ms, "macs": c.costs.macs, "params": c.costs.params},
                "measured": m.to_dict(), "margins": sel.margins,
                "predicted_minus_measured_points": prediction_error(c.predicted_acc, m.int8_acc),
                "heldout_acc": sel.heldout_acc, "heldout_minus_measured_points": sel.heldout_minus_measured,
                "attempts": len(sel.attempts), "misses": [a for a in sel.attempts if not a.get("fits")],
                "export_dir": str(sel.export_dir), "seconds": round(time.perf_counter() - t0, 2)})
            rows.append(row)
    return {"version": CATALOG_VERSION, "supernet": str(supernet_dir), "latency_ms": budgets[0] if not several else None,
            "latency_budgets_ms": budgets, "seed": seed,
            "boards": rows, "distinct_archs": len({r["arch"] for r in rows if r.get("fits")}),
            "predictor_error": _error_summary(rows, "predicted_minus_measured_points",
                                              "predicted (float, predictor labels) minus measured int8 TFLite "
                                              "Micro accuracy on the test split, per pick"),
            "heldout_error": _error_summary(rows, "heldout_minus_measured_points",
                                            "the pick's float accuracy on the predictor's label images (holdout "
                                            "+ calibration, BN re-calibrated on train images) minus its measured "
                                            "int8 TFLite Micro accuracy on the test split"),
            "seconds": round(time.perf_counter() - t_start, 2)}


def _error_summary(rows: list[dict], key: str, what: str) -> dict:
    """Mean |error| and mean error in points over the rows that have `key`."""
    errs = [r[key] for r in rows if r.get(key) is not None]
    return {"mean_abs_points": round(sum(abs(e) for e in errs) / len(errs), 3) if errs else None,
            "mean_points": round(sum(errs) / len(errs), 3) if errs else None,
            "picks": len(errs), "what": what}


def _budget_text(data: dict) -> str:
    budgets = data.get("latency_budgets_ms") or [data.get("latency_ms")]
    named = ["none" if b is None else f"{b:g} ms" for b in budgets]
    if named == ["none"]:
        return ""
    return (", latency budget " if len(named) == 1 else ", latency budgets ") + ", ".join(named)


def catalog_markdown(data: dict) -> str:
    """A table an engineer can paste into a wiki: one row per (board, latency budget)."""
    from ..escape import md_code, md_text

    pe = data.get("predictor_error") or {}
    lines = ["# ofa-mcu catalog", "",
             f"Supernet {md_code(data['supernet'])}" + _budget_text(data)
             + ". SRAM is the firmware's tensor arena plus app buffers, sized from the exported model "
               "(arena measured on the host runtime); flash is the model file (measured) + TFLite Micro "
               "runtime + app code (flash model calibrated on linked builds). No firmware ran for this "
               "table. Latency is predicted by the cost model. Accuracy: int8 TFLite Micro on the host, test "
               "split; predicted: the accuracy predictor (float, labels measured on images disjoint from its "
               "BN re-calibration images); pred. - int8 is their difference in points.", "",
             "| board | latency budget | core | arch | int8 acc | pred. acc | pred. - int8 | "
             "SRAM KiB (used / budget) | flash KiB (used / budget) | latency ms (pred.) | MACs |",
             "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in data["boards"]:
        core = f"{r['core'].replace('cortex-m0plus', 'M0+').replace('cortex-m', 'M')} @ {r['clock_mhz']:g} MHz"
        lb = r.get("latency_budget_ms")
        lat_b = "none" if lb is None else f"{lb:g} ms"
        if not r.get("fits"):
            lines.append(f"| {md_text(r['board'])} | {lat_b} | {core} | no fit: {md_text(r.get('error', ''))} "
                         f"| | | | | | | |")
            continue
        m, p, b = r["measured"], r["predicted"], r["budget"]
        acc = "-" if m.get("int8_acc") is None else f"{100 * m['int8_acc']:.2f}%"
        err = r.get("predicted_minus_measured_points")
        lines.append(
            f"| {md_text(r['board'])} | {lat_b} | {core} | {md_code(r['arch'])} | {acc} | "
            f"{100 * p['acc']:.2f}% | {'-' if err is None else f'{err:+.2f}'} | "
            f"{_kib(m['sram_bytes'])} / {_kib(b['sram_bytes'])} | {_kib(m['flash_bytes'])} / "
            f"{_kib(b['flash_bytes'])} | {p['latency_ms']:.1f} | {p['macs'] / 1e6:.2f} M |")
    lines += ["", f"{data['distinct_archs']} distinct archs over {len(data['boards'])} deployments; "
                  f"{data['seconds']:.0f} s."]
    if pe.get("picks"):
        lines += ["", f"Predictor error over {pe['picks']} picks: mean |predicted - int8| "
                      f"{pe['mean_abs_points']:.2f} points, mean predicted - int8 {pe['mean_points']:+.2f} points."]
    he = data.get("heldout_error") or {}
    if he.get("picks"):
        lines += ["", f"Each pick measured on the held-out images (float; the search kept the archs the predictor "
                      f"rates highest, so its figure for a pick runs high): mean |held-out - int8| "
                      f"{he['mean_abs_points']:.2f} points, mean held-out - int8 {he['mean_points']:+.2f} points "
                      f"over {he['picks']} picks."]
    lines += ["", ""]
    return "\n".join(lines)


def pareto_plot(row: dict, path: str | Path) -> Path | None:
    """Pareto front of one board (predicted accuracy vs latency, colour = SRAM), the choice marked."""
    if not row.get("pareto"):
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = row["pareto"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    sc = ax.scatter([p["latency_ms"] for p in pts], [100 * p["predicted_acc"] for p in pts],
                    c=[p["sram_bytes"] / 1024 for p in pts], cmap="viridis", s=18)
    fig.colorbar(sc, ax=ax, label="SRAM (KiB, predicted)")
    if row.get("fits"):
        ax.scatter([row["predicted"]["latency_ms"]], [100 * row["predicted"]["acc"]], marker="*",
                   s=220, facecolors="none", edgecolors="red", linewidths=1.5, label="chosen")
        ax.legend(loc="lower right", fontsize=8)
        fig.text(0.01, 0.01, f"chosen: {row['arch']}", fontsize=6, color="dimgrey")
    if row.get("budget", {}).get("latency_ms"):
        ax.axvline(row["budget"]["latency_ms"], color="grey", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, predicted)")
    ax.set_ylabel("accuracy (%, predicted)")
    ax.set_title(f"{row.get('deployment', row['board'])}: Pareto front ({len(pts)} archs)", fontsize=10)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    from .._io import write_bytes
    return write_bytes(path, buf.getvalue())


def write_catalog(data: dict, out_dir: str | Path, *, markdown_extras: str = "") -> dict[str, Path]:
    out_dir = Path(out_dir)
    files = {"json": artifacts.write("catalog", out_dir, data),
             "md": write_text(out_dir / "catalog.md", catalog_markdown(data) + markdown_extras)}
    for r in data["boards"]:
        dep = r.get("deployment", r["board"])
        p = pareto_plot(r, out_dir / f"pareto_{dep}.png")
        if p is not None:
            files[f"png:{dep}"] = p
    return files


def catalog(supernet_dir: str | Path, boards: Sequence, out_dir: str | Path, *, latency_ms=None,
            **kwargs) -> dict:
    """catalog_data + write_catalog; returns the data dict."""
    data = catalog_data(supernet_dir, boards, out_dir, latency_ms=latency_ms, **kwargs)
    write_catalog(data, out_dir)
    return data
