"""The static catalog page opens in a real headless browser with no console errors and lists every board."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline.boards import list_boards
from pipeline.report.html import catalog_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")]


def open_in_browser(path: Path, tmp_path: Path) -> tuple[str, list[str]]:
    """Load a file in headless Chromium; return the DOM after load and every console message."""
    r = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", "--enable-logging=stderr", "--v=0",
         "--dump-dom", path.resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    console = [line for line in r.stderr.splitlines() if ":CONSOLE" in line]
    return r.stdout, console


def catalog_fixture_data() -> dict:
    """A catalog shaped like `pipeline.search.catalog` output, one row per shipped board (test fixture)."""
    rows = []
    for i, b in enumerate(list_boards()):
        if i == 0:
            rows.append({"board": b.id, "name": b.name, "core": b.core, "clock_mhz": b.clock_mhz, "fits": False,
                         "error": "smallest arena 300 KiB > budget <script>alert(1)</script>"})
            continue
        rows.append({
            "board": b.id, "name": b.name, "core": b.core, "clock_mhz": b.clock_mhz, "fits": True,
            "arch": "r16-w35k3e3k3e3-w35k3e3k3e3", "budget": {"sram_bytes": b.usable_sram_bytes,
                                                              "flash_bytes": b.usable_flash_bytes},
            "predicted": {"latency_ms": 3.5 + i, "macs": 1.2e6, "acc": 0.95},
            "measured": {"int8_acc": 0.96, "sram_bytes": 60_000, "flash_bytes": 180_000},
            "margins": {"sram_bytes": b.usable_sram_bytes - 60_000, "flash_bytes": b.usable_flash_bytes - 180_000},
            "pareto": [{"arch": "a", "predicted_acc": 0.9, "latency_ms": 2.0, "sram_bytes": 50_000, "flash_bytes": 1},
                       {"arch": "b", "predicted_acc": 0.95, "latency_ms": 3.5 + i, "sram_bytes": 60_000,
                        "flash_bytes": 1}],
            "energy_uj_per_inference": 12.5})
    return {"supernet": "runs/x/supernet", "latency_ms": None, "boards": rows, "distinct_archs": 1}


def test_catalog_page_loads_clean_and_shows_every_board(tmp_path):
    from pipeline.search.catalog import pareto_plot

    data = catalog_fixture_data()
    plots = {r["board"]: pareto_plot(r, tmp_path / f"{r['board']}.png") for r in data["boards"][:3]}
    compute = {"rows": {"supernet training (s)": {"value": 300, "kind": "measured", "note": "wall time"}},
               "note": "fixture"}
    page = tmp_path / "catalog.html"
    page.write_text(catalog_html(data, {k: v for k, v in plots.items() if v}, compute))
    text = page.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:|#)""", text), "page must not reference other files"
    assert "<script>alert(1)</script>" not in text  # board text is escaped

    dom, console = open_in_browser(page, tmp_path)
    assert console == [], console
    shown = set(re.findall(r'data-board="([^"]+)"', dom))
    assert shown == {b.id for b in list_boards()}
    assert dom.count('src="data:image/png;base64,') >= 2
    assert 'id="compute"' in dom


def test_browser_check_catches_console_errors(tmp_path):
    """The check above must be able to fail: a page that logs an error is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><script>console.error('broken page')</script></body></html>")
    _, console = open_in_browser(bad, tmp_path)
    assert any("broken page" in line for line in console)


@pytest.mark.slow
def test_real_catalog_page_with_compute_account_and_energy(tmp_path, trained_supernet_dir):
    """`ofa-mcu catalog` on a trained supernet: every chosen model's measured SRAM and flash fit its
    board, the page loads clean, and the compute account and energy figures carry their kind."""
    import json

    from pipeline.boards import load_board
    from pipeline.catalog import build_catalog

    boards = [load_board("qemu-mps2-an386"), load_board("rpi-pico")]
    out = tmp_path / "catalog"
    data = build_catalog(trained_supernet_dir, boards, out, num_samples=24, max_candidates=3, scratch_count=1,
                         log=lambda m: None)
    assert json.loads((out / "catalog.json").read_text())["boards"] == data["boards"]
    for r in data["boards"]:
        assert r["fits"], r
        assert r["measured"]["sram_bytes"] <= r["budget"]["sram_bytes"]
        assert r["measured"]["flash_bytes"] <= r["budget"]["flash_bytes"]
        assert r["energy_kind"] == "estimated" and r["energy_uj_per_inference"] > 0
    rows = data["compute"]["rows"]
    assert rows["supernet training (CPU-s)"]["kind"] == "measured"
    assert rows["from-scratch training per model (CPU-s)"]["kind"] == "measured"
    assert rows["amortization ratio (scratch / ofa-mcu)"]["kind"] == "estimated"
    assert rows["amortization ratio (scratch / ofa-mcu)"]["value"] > 0
    # The scratch baseline gets the supernet's whole schedule, not only its first phase.
    from pipeline.train import Schedule
    total = Schedule.load(trained_supernet_dir / "schedule.json").total_epochs
    scratch = json.loads((out / "scratch_trainings.json").read_text())
    assert scratch and all(s["epochs"] == total for s in scratch)
    md = (out / "catalog.md").read_text()
    assert "amortization ratio" in md and "Energy per inference (estimated)" in md

    dom, console = open_in_browser(out / "catalog.html", tmp_path)
    assert console == [], console
    assert set(re.findall(r'data-board="([^"]+)"', dom)) == {b.id for b in boards}
    assert 'id="compute"' in dom and "amortization ratio" in dom
