"""The report at the end of a deploy: report.json, report.md and three plots per board."""
from __future__ import annotations

import io
from pathlib import Path

from .. import _io, artifacts
from ..boards import Board
from ..escape import md_code, md_text


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return buf.getvalue()


def _plots(board: Board, search: dict, layers: list[dict], export: dict, out: Path) -> dict[str, str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = {}
    pareto = (search.get("search") or {}).get("pareto") or []
    chosen = search.get("predicted", {})
    if pareto:
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        sc = ax.scatter([p["costs"]["latency_ms"] for p in pareto], [100 * p["predicted_acc"] for p in pareto],
                        c=[p.get("sram_bytes", 0) / 1024 for p in pareto], cmap="viridis", s=18)
        fig.colorbar(sc, ax=ax, label="SRAM KiB (predicted)")
        if chosen:
            ax.scatter([chosen["costs"]["latency_ms"]], [100 * chosen["predicted_acc"]], marker="*", s=240,
                       facecolors="none", edgecolors="red", linewidths=1.5, label="chosen")
            ax.legend(loc="lower right")
        ax.set_xscale("log")
        ax.set_xlabel("latency ms (predicted)")
        ax.set_ylabel("holdout accuracy % (predicted)")
        ax.set_title(f"{board.id}: Pareto front and the chosen subnet", fontsize=10)
        fig.tight_layout()
        made["pareto"] = _io.write_bytes(out / "pareto.png", _png(fig)).name
    if layers:
        fig, (a1, a2) = plt.subplots(2, 1, figsize=(9, 5.5), dpi=100, sharex=True)
        x = range(len(layers))
        a1.bar(x, [r["ms"] for r in layers], color="#4477aa")
        a1.set_ylabel("ms (predicted)")
        a1.set_title(f"{board.id}: per-op latency and live activation memory", fontsize=10)
        a2.bar(x, [r["live_activation_bytes"] / 1024 for r in layers], color="#cc6677")
        a2.set_ylabel("live KiB")
        a2.set_xticks(list(x))
        a2.set_xticklabels([r["name"] for r in layers], rotation=90, fontsize=6)
        fig.tight_layout()
        made["layers"] = _io.write_bytes(out / "layers.png", _png(fig)).name
    arena = export.get("arena") or {}
    if arena.get("min_arena_bytes"):
        parts = [("planned activations (head)", arena.get("head_bytes", 0)),
                 ("persistent (tail)", arena.get("tail_bytes", 0))]
        rest = arena["min_arena_bytes"] - sum(v for _, v in parts)
        if rest > 0:
            parts.append(("alignment and other", rest))
        fig, ax = plt.subplots(figsize=(6, 1.8), dpi=100)
        left = 0
        for (name, v), color in zip(parts, ("#4477aa", "#ddaa33", "#bbbbbb")):
            ax.barh([0], [v / 1024], left=left, color=color, label=f"{name}: {v / 1024:.1f} KiB")
            left += v / 1024
        ax.set_yticks([])
        ax.set_xlabel("KiB (TFLite Micro arena, measured on the host runtime)")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.45), ncol=3)
        fig.tight_layout()
        made["arena"] = _io.write_bytes(out / "arena.png", _png(fig)).name
    return made


def write_deploy_report(board: Board, supernet_dir: Path, board_dir: Path, *, missing: dict,
                        stage_records: dict) -> dict:
    from ..costs import layer_costs
    from ..supernet.space import SearchSpace, SubnetArch

    search = artifacts.read("search result", board_dir)
    export = artifacts.read("export report", board_dir)
    check = artifacts.read("check report", board_dir) if artifacts.exists("check report", board_dir) else None
    arch = SubnetArch.from_dict(search["arch"])
    space = SearchSpace.load(supernet_dir / "space.json")
    layers = layer_costs(space, arch, board)
    plots = _plots(board, search, layers, export, board_dir)
    report = {
        "board": board.id, "arch": str(arch), "supernet": str(supernet_dir),
        "budget": search.get("budget"), "predicted": search.get("predicted"), "measured": search.get("measured"),
        "margins": search.get("measured_margins"), "export": {k: export.get(k) for k in ("accuracy", "arena", "model_bytes")
                                                              if k in export},
        "check": check, "skipped": {k: v for k, v in missing.items() if v},
        "stages": {k: {"seconds": v.get("seconds"), "line": v.get("summary", {}).get("line")}
                   for k, v in stage_records.items()},
        "plots": plots, "firmware": str(board_dir / "firmware"),
    }
    artifacts.write("deploy report", board_dir, report)
    _io.write_text(board_dir / "report.md", _markdown(report, board))
    return report


def _markdown(r: dict, board: Board) -> str:
    m, b, mg = r.get("measured") or {}, r.get("budget") or {}, r.get("margins") or {}
    p = r.get("predicted") or {}
    lines = [f"# Deploy report: {md_text(board.name)} ({md_code(board.id)})", "",
             f"Subnet {md_code(r['arch'])} from {md_code(r['supernet'])}.", "",
             "| figure | value | kind |", "|---|---|---|"]

    def row(name, value, kind):
        lines.append(f"| {name} | {value} | {kind} |")

    acc = (r.get("export") or {}).get("accuracy") or {}
    for key, label in (("float", "float accuracy (test)"), ("int8_tflite", "int8 TFLite accuracy (test)"),
                       ("int8_tflm", "int8 TFLite Micro accuracy (test)")):
        if isinstance(acc.get(key), (int, float)):
            row(label, f"{100 * acc[key]:.2f}%", "measured")
    if m:
        row("SRAM (arena + app buffers) / budget", f"{m.get('sram_bytes', 0) / 1024:.1f} / "
            f"{b.get('sram_bytes', 0) / 1024:.1f} KiB (margin {mg.get('sram_bytes', 0) / 1024:.1f})", "measured")
        row("flash (model + runtime + app) / budget", f"{m.get('flash_bytes', 0) / 1024:.1f} / "
            f"{b.get('flash_bytes', 0) / 1024:.1f} KiB (margin {mg.get('flash_bytes', 0) / 1024:.1f})", "measured")
    lat = (p.get("costs") or {}).get("latency_ms")
    if isinstance(lat, (int, float)):
        row("latency", f"{lat:.2f} ms at {float(board.clock_mhz):g} MHz", "estimated (cost model)")
    c = r.get("check")
    if c:
        measured_on = c.get("measured_on") or ("host runtime (virtual board)" if c["latency"]["simulated"]
                                                else "hardware")
        where = f"measured: {measured_on}"
        row("device top-1 (test)", f"{100 * c['accuracy']['device_top1']:.2f}% "
            f"(host int8 {100 * c['accuracy']['host_top1']:.2f}%, {c['samples']} samples)", where)
        row("agreement with host int8 (argmax)", f"{100 * c['agreement']['argmax']:.2f}%", where)
        row("bit-exact logits", f"{100 * c['agreement']['exact_logits']:.2f}%", where)
        ms = c["latency"]["ms"]
        instr = c["latency"].get("instructions") or {}
        if instr.get("median") is not None:
            row("instructions per inference (median)", f"{instr['median'] / 1e6:.3g} M (not cycles of a real core)",
                f"measured: {measured_on} (-icount)")
        elif ms.get("median") is not None:
            row("on-board latency (median)", f"{ms['median']:.2f} ms",
                "estimated (cost model, virtual board)" if c["latency"]["simulated"] else f"measured ({c['latency']['source']})")
    lines += ["", "## Stages", ""]
    for k, v in r["stages"].items():
        lines.append(f"- **{md_text(k)}**: {md_text(v.get('line') or '')} ({v.get('seconds', 0)} s)")
    for k, v in r["skipped"].items():
        lines.append(f"- **{md_text(k)}**: skipped: {md_text(v)}")
    if r["plots"]:
        lines += ["", "## Plots", ""] + [f"![{md_text(k)}]({md_text(v)})" for k, v in r["plots"].items()]
    lines += ["", f"Firmware project: {md_code(r['firmware'])} (see its README.md to build, flash and check).", ""]
    return "\n".join(lines)
