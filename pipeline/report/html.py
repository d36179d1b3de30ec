"""A static, self-contained catalog page: one HTML file, plots embedded as data URIs, no scripts,
no network fetches, so it opens from a file share or an e-mail attachment the same as from disk."""
from __future__ import annotations

import base64
import html
import time
from pathlib import Path

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#1b1f24;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;width:100%;font-size:13px} th,td{border:1px solid #d0d7de;padding:4px 6px;text-align:right}
th{background:#f6f8fa} td.l,th.l{text-align:left} code{font-size:12px}
tr.nofit td{background:#fff5f5} .tag{font-size:11px;padding:1px 5px;border-radius:8px;background:#eef;color:#225}
.tag.m{background:#e6f4ea;color:#0b5d1e} .tag.e{background:#fff4e5;color:#7a4b00}
.plots{display:flex;flex-wrap:wrap;gap:12px} figure{margin:0;border:1px solid #d0d7de;padding:6px} figcaption{font-size:12px}
.muted{color:#57606a}
"""


def _e(v) -> str:
    return html.escape(str(v), quote=True)


def _kib(n) -> str:
    return "-" if n is None else f"{n / 1024:.1f}"


def _data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(png).read_bytes()).decode("ascii")


def _label(kind: str) -> str:
    cls = "m" if kind == "measured" else "e"
    return f'<span class="tag {cls}">{_e(kind)}</span>'


def catalog_html(data: dict, plots: dict[str, Path] | None = None, compute: dict | None = None) -> str:
    """Render the catalog dict (from `pipeline.search.catalog`) as one HTML document."""
    plots = plots or {}
    rows = []
    for r in data["boards"]:
        core = f"{_e(r['core'])} @ {r['clock_mhz']:g} MHz"
        lb = r.get("latency_budget_ms")
        lat_b = "none" if lb is None else f"{lb:g}"
        if not r.get("fits"):
            rows.append(f'<tr class="nofit" data-board="{_e(r["board"])}"><td class="l">{_e(r["board"])}</td>'
                        f'<td>{lat_b}</td><td class="l">{core}</td><td class="l" colspan="9">no subnet fits: '
                        f'{_e(r.get("error", ""))}</td></tr>')
            continue
        err = r.get("predicted_minus_measured_points")
        m, p, b, mg = r["measured"], r["predicted"], r["budget"], r.get("margins", {})
        acc = "-" if m.get("int8_acc") is None else f"{100 * m['int8_acc']:.2f}%"
        energy = r.get("energy_uj_per_inference")
        rows.append(
            f'<tr data-board="{_e(r["board"])}"><td class="l">{_e(r["board"])}</td><td>{lat_b}</td>'
            f'<td class="l">{core}</td>'
            f'<td class="l"><code>{_e(r["arch"])}</code></td><td>{acc}</td>'
            f'<td>{"-" if err is None else f"{err:+.2f}"}</td>'
            f'<td>{_kib(m.get("sram_bytes"))} / {_kib(b.get("sram_bytes"))}</td>'
            f'<td>{_kib(m.get("flash_bytes"))} / {_kib(b.get("flash_bytes"))}</td>'
            f'<td>{p["latency_ms"]:.1f}</td>'
            f'<td>{_kib(mg.get("sram_bytes"))} / {_kib(mg.get("flash_bytes"))}</td>'
            f'<td>{p["macs"] / 1e6:.2f}</td>'
            f'<td>{"-" if energy is None else f"{energy:.1f}"}</td></tr>')
    figures = "".join(
        f'<figure><img alt="Pareto front of {_e(bid)}" width="480" src="{_data_uri(png)}">'
        f"<figcaption>{_e(bid)}</figcaption></figure>"
        for bid, png in plots.items() if png and Path(png).exists())
    lat = data.get("latency_ms")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; style-src \'unsafe-inline\'">',
        "<title>ofa-mcu catalog</title>", f"<style>{_CSS}</style></head><body>",
        "<h1>ofa-mcu catalog</h1>",
        f'<p class="muted">Supernet <code>{_e(data.get("supernet", ""))}</code>'
        + (f", latency budget {lat:g} ms" if lat else "")
        + (", latency budgets " + ", ".join("none" if b is None else f"{b:g} ms" for b in data["latency_budgets_ms"])
           if len(data.get("latency_budgets_ms") or []) > 1 else "")
        + f'. {len(data["boards"])} deployments, {data.get("distinct_archs", "?")} distinct subnets. '
          f"Generated {time.strftime('%Y-%m-%d %H:%M')}.</p>",
        "<h2>Best subnet per board and latency budget</h2>",
        f'<p class="muted">SRAM and flash {_label("measured")} on the exported int8 model on the host runtime '
        f'(arena from the TFLite Micro Python runtime; flash = model file + runtime and app code from the flash '
        f'model); no firmware ran for this table; latency and energy {_label("estimated")} by the cost model; '
        "accuracy is int8 TFLite Micro on the test split; predicted - int8 compares it with the accuracy predictor's "
        "figure (float, labels on images disjoint from its BN re-calibration images). Margins are budget minus use.</p>",
        '<table id="catalog"><thead><tr><th class="l">board</th><th>latency budget ms</th><th class="l">core</th>'
        '<th class="l">subnet</th><th>int8 acc</th><th>predicted - int8 (points)</th><th>SRAM KiB used / budget</th>'
        "<th>flash KiB used / budget</th>"
        "<th>latency ms</th><th>margin KiB SRAM / flash</th><th>MMACs</th><th>energy µJ / inference</th>"
        "</tr></thead><tbody>", *rows, "</tbody></table>",
    ]
    if compute:
        parts += ["<h2>Compute: one supernet for every board vs one training per board</h2>",
                  _compute_table(compute)]
    if figures:
        parts += ["<h2>Pareto fronts</h2>", f'<div class="plots">{figures}</div>']
    parts += ["</body></html>"]
    return "\n".join(parts) + "\n"


def _compute_table(c: dict) -> str:
    rows = "".join(
        f'<tr><td class="l">{_e(k)}</td><td>{_e(v["value"])}</td><td class="l">{_label(v["kind"])}</td>'
        f'<td class="l">{_e(v.get("note", ""))}</td></tr>' for k, v in c["rows"].items())
    return ('<table id="compute"><thead><tr><th class="l">quantity</th><th>value</th><th class="l">kind</th>'
            f'<th class="l">how</th></tr></thead><tbody>{rows}</tbody></table>'
            f'<p class="muted">{_e(c.get("note", ""))}</p>')
