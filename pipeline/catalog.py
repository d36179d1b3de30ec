"""`ofa-mcu catalog`: the best verified model for every board, as catalog.json / .md / .html and plots,
with the compute the Once-for-All approach saves, measured on this run.

Orchestration only: the search, export and verification per board are `pipeline.search.catalog`; this
adds per-inference energy (cost-model latency x the board's datasheet active power, an estimate) and
the amortization account: one supernet training plus one search per board (measured) against training
each board's model from scratch (a few trainings measured here, extrapolated to every board).
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Sequence

from . import _io, artifacts

# No power meter is readable on this kind of machine (no RAPL in /sys/class/powercap), so CPU energy
# uses a documented assumption: a server core at full load draws about its share of the package TDP,
# e.g. AMD EPYC 7763: 280 W TDP / 64 cores = 4.4 W per busy core.
ASSUMED_WATTS_PER_CORE = 4.4
ASSUMED_WATTS_SOURCE = "assumption: 4.4 W per busy core (AMD EPYC 7763, 280 W TDP / 64 cores); no power meter here"


def _measured_power_w() -> float | None:
    """Package power from RAPL when the machine exposes it (it does not in this sandbox)."""
    base = Path("/sys/class/powercap/intel-rapl:0/energy_uj")
    if not base.exists():
        return None
    try:
        e0, t0 = int(base.read_text()), time.perf_counter()
        time.sleep(0.5)
        return (int(base.read_text()) - e0) / 1e6 / (time.perf_counter() - t0)
    except (OSError, ValueError):
        return None


def _energy_per_inference(data: dict, boards: Sequence) -> None:
    by_id = {b.id: b for b in boards}
    for r in data["boards"]:
        b = by_id[r["board"]]
        if r.get("fits") and b.active_power_mw:
            lat = r["predicted"]["latency_ms"]
            r["energy_uj_per_inference"] = lat * b.active_power_mw  # mW x ms = uJ
            r["energy_kind"] = "estimated"
            r["energy_note"] = (f"{lat:.2f} ms (cost model) x {b.active_power_mw:g} mW "
                                f"({b.active_power_source})")


def _compute_account(supernet_dir: Path, data: dict, scratch: list[dict], n_boards: int) -> dict:
    summary = artifacts.read("train summary", supernet_dir)
    procs = int(summary.get("world_size", 1)) * int(summary.get("threads", 1))
    train_s = float(summary["wall_time_s"]) * procs
    search_s = sum(r.get("seconds", 0.0) for r in data["boards"])  # search + export + verify per board
    predictor_s = float(data.get("predictor_seconds", 0.0))
    ofa_s = train_s + predictor_s + search_s
    scratch_mean = sum(s["seconds"] for s in scratch) / len(scratch) if scratch else float("nan")
    # Training from scratch still needs the export and verification a board's model gets here.
    export_mean = search_s / max(n_boards, 1)
    per_board_scratch = scratch_mean + export_mean
    scratch_total = per_board_scratch * n_boards
    power = _measured_power_w()
    watts = power if power is not None else ASSUMED_WATTS_PER_CORE
    wkind = "measured" if power is not None else "estimated"
    kwh = lambda s: s * watts / 3.6e6  # noqa: E731
    rows = {
        "supernet training (CPU-s)": {"value": round(train_s, 1), "kind": "measured",
                                      "note": f"wall time x {procs} process-thread(s), summary.json"},
        "accuracy predictor samples (CPU-s)": {"value": round(predictor_s, 1), "kind": "measured",
                                               "note": "BN-calibrated holdout accuracies, this run (0 if cached)"},
        "search + export + verify, all boards (CPU-s)": {"value": round(search_s, 1), "kind": "measured",
                                                         "note": f"{n_boards} deployments (board x latency budget), this run"},
        "ofa-mcu total (CPU-s)": {"value": round(ofa_s, 1), "kind": "measured", "note": "sum of the above"},
        "from-scratch training per model (CPU-s)": {
            "value": round(scratch_mean, 1), "kind": "measured",
            "note": f"mean of {len(scratch)} catalog archs trained alone for as many epochs as the whole supernet schedule: "
                    + ", ".join(f"{s['arch']} {s['seconds']:.0f} s ({100 * s['test_acc']:.1f}%)" for s in scratch)},
        "from scratch, all boards (CPU-s)": {"value": round(scratch_total, 1), "kind": "estimated",
                                             "note": f"({scratch_mean:.0f} s training + {export_mean:.0f} s export) "
                                                     f"x {n_boards} deployments, extrapolated from the measured trainings"},
        "amortization ratio (scratch / ofa-mcu)": {"value": round(scratch_total / ofa_s, 2) if ofa_s else None,
                                                   "kind": "estimated", "note": f"for N = {n_boards} deployments"},
        "break-even number of boards": {
            "value": (round(train_s / max(per_board_scratch - export_mean, 1e-9), 1)
                      if per_board_scratch > export_mean else None),
            "kind": "estimated", "note": "boards after which one supernet costs less than per-board training"},
        "ofa-mcu energy (kWh)": {"value": round(kwh(ofa_s), 5), "kind": wkind,
                                 "note": f"{watts:g} W per busy core" + ("" if power else f"; {ASSUMED_WATTS_SOURCE}")},
        "from-scratch energy, all boards (kWh)": {"value": round(kwh(scratch_total), 5), "kind": "estimated",
                                                  "note": "same power figure"},
    }
    return {"rows": rows, "watts_per_core": watts, "watts_kind": wkind, "n_boards": n_boards,
            "note": "CPU-seconds are wall time x threads on this machine (2 cores, no GPU). The from-scratch "
                    "figure extrapolates a few measured trainings to every board; the OFA figure is the whole "
                    "measured cost of this catalog."}


def _scratch_trainings(supernet_dir: Path, data: dict, count: int, seed: int) -> list[dict]:
    """Train `count` distinct catalog archs from scratch (smallest and largest by MACs first)."""
    from .data import load_dataset
    from .supernet.space import SearchSpace, SubnetArch
    from .train import Schedule
    from .train.scratch import train_scratch

    rows = [r for r in data["boards"] if r.get("fits")]
    archs = sorted({r["arch"]: r["predicted"]["macs"] for r in rows}.items(), key=lambda kv: kv[1])
    picks = [archs[0][0]] + ([archs[-1][0]] if len(archs) > 1 else [])
    picks += [a for a, _ in archs[1:-1]]
    picks = picks[:count]
    if not picks:
        return []
    space = SearchSpace.load(supernet_dir / "space.json")
    schedule = Schedule.load(supernet_dir / "schedule.json")
    summary = artifacts.read("train summary", supernet_dir)
    ds = load_dataset(summary["data"], seed=int(summary.get("data_seed", 0)))
    # The same budget the supernet had: a baseline trained for fewer epochs would flatter the supernet.
    epochs = schedule.total_epochs
    out = []
    for a in picks:
        acc, secs = train_scratch(space, SubnetArch.parse(a), ds, schedule, epochs=epochs,
                                  batch_size=int(summary.get("batch_size", 64)), seed=seed)
        out.append({"arch": a, "seconds": secs, "test_acc": acc, "epochs": epochs})
    return out


def _markdown_extras(data: dict) -> str:
    lines = ["## Energy per inference (estimated)", "",
             "| board | latency ms (cost model) | active power mW (datasheet) | energy µJ / inference |",
             "|---|---:|---:|---:|"]
    for r in data["boards"]:
        if r.get("energy_uj_per_inference") is not None:
            mw = r["energy_uj_per_inference"] / r["predicted"]["latency_ms"]
            lines.append(f"| {r.get('deployment', r['board'])} | {r['predicted']['latency_ms']:.2f} | {mw:.2f} | "
                         f"{r['energy_uj_per_inference']:.1f} |")
    c = data.get("compute")
    if c:
        lines += ["", "## Compute: one supernet for every board vs one training per board", "",
                  "| quantity | value | kind | how |", "|---|---:|---|---|"]
        lines += [f"| {k} | {v['value']} | {v['kind']} | {v['note']} |" for k, v in c["rows"].items()]
        lines += ["", c["note"]]
    return "\n".join(lines) + "\n"


def build_catalog(supernet_dir: str | os.PathLike, boards: Sequence, out_dir: str | os.PathLike, *,
                  latency_ms=None, seed: int = 0, num_samples: int = 300,
                  max_candidates: int = 5, scratch_count: int = 2, log=print, progress: bool = False,
                  patches: str = "off", objective: str = "accuracy", tolerance: float | None = None,
                  finetune_epochs: int = 0) -> dict:
    """Catalog over `boards` x latency budgets (`latency_ms`: None, a number or a list; see
    pipeline.search.catalog), plus energy per inference and the compute account, as json/md/html."""
    from .report.html import catalog_html
    from .search.catalog import catalog_data, write_catalog
    from .search.predictor import get_predictor

    supernet_dir, out_dir = Path(supernet_dir), Path(out_dir)
    t0 = time.perf_counter()
    predictor = get_predictor(supernet_dir, num_samples=num_samples, seed=seed, progress=progress)
    predictor_s = time.perf_counter() - t0
    search_kwargs = {"patches": patches} if patches != "off" else {}
    if objective != "accuracy":
        search_kwargs.update(objective=objective, tolerance=tolerance)
    data = catalog_data(supernet_dir, boards, out_dir, latency_ms=latency_ms, seed=seed, predictor=predictor,
                   max_candidates=max_candidates, log=log,
                   search_kwargs=search_kwargs or None,
                   export_kwargs={"finetune_epochs": finetune_epochs} if finetune_epochs else None)
    data["predictor_seconds"] = round(predictor_s, 2)
    _energy_per_inference(data, boards)
    scratch_path = out_dir / "scratch_trainings.json"
    from .train import Schedule
    total = Schedule.load(supernet_dir / "schedule.json").total_epochs
    scratch = [s for s in (_io.read_json(scratch_path) if scratch_path.exists() else []) if s.get("epochs") == total]
    if len(scratch) < scratch_count:
        log(f"compute account: training {scratch_count} catalog archs from scratch for comparison")
        scratch = _scratch_trainings(supernet_dir, data, scratch_count, seed)
        _io.write_json(scratch_path, scratch)
    data["compute"] = _compute_account(supernet_dir, data, scratch, len(data["boards"])) if scratch else None
    write_catalog(data, out_dir, markdown_extras=_markdown_extras(data))
    plots = {r.get("deployment", r["board"]): out_dir / f"pareto_{r.get('deployment', r['board'])}.png"
             for r in data["boards"]}
    _io.write_text(out_dir / "catalog.html", catalog_html(data, plots, data["compute"]))
    log(f"catalog page {out_dir / 'catalog.html'} ({time.perf_counter() - t0:.0f} s)")
    return data
