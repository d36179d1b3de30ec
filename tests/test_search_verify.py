"""Never emit a model that does not fit: real exports, measured costs, fallback, catalog files."""
from __future__ import annotations

import json

import pytest

from pipeline.boards import load_board
from pipeline.costs import estimate
from pipeline.search.predictor import AccuracyPredictor, sample_archs
from pipeline.search.verify import measured_costs, select_and_verify
from pipeline.supernet.space import SearchSpace

pytestmark = pytest.mark.slow   # real ONNX -> TFLite exports


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    import torch
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def export_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("exports")


@pytest.fixture(scope="module")
def space(trained_supernet_dir):
    return SearchSpace.load(trained_supernet_dir / "space.json")


@pytest.fixture(scope="module")
def predictor(space):
    """Ranks bigger archs higher (a real MLP fitted to parameter counts): the largest comes first."""
    from pipeline.supernet.space import params
    archs = sample_archs(space, 40, seed=1)
    y = [params(space, a) / params(space, space.largest()) for a in archs]
    return AccuracyPredictor(space, hidden=32).fit(archs, y, epochs=100)


def test_top_candidate_that_misses_falls_back(trained_supernet_dir, space, predictor, export_cache, tmp_path):
    """The search sizes SRAM with the 32-bit replay ("device"), the check with the firmware's arena rule on
    the measured arena: a budget between the two rejects the largest arch once exported."""
    board = load_board("nucleo-f412zg")
    big, small = space.largest(), space.smallest()
    pred_big = estimate(space, big, board)
    device_big = pred_big.arena_bytes + (pred_big.sram_bytes - pred_big.firmware_arena_bytes)
    # Export the big arch once to learn its measured SRAM, then craft the budget in between.
    from pipeline.search.verify import _export
    measured_big = measured_costs(_export(trained_supernet_dir, big, export_cache, None), board)
    budget = (device_big + measured_big.sram_bytes) // 2
    assert device_big < budget < measured_big.sram_bytes
    assert estimate(space, small, board).sram_bytes < budget
    out = tmp_path / "board"
    sel = select_and_verify(trained_supernet_dir, board, out, predictor=predictor, candidates=[big, small],
                            sram_bytes=budget, export_cache=export_cache,
                            search_kwargs={"sram_model": "device"})
    assert sel.arch == small
    assert [a["fits"] for a in sel.attempts] == [False, True]
    assert "SRAM" in sel.attempts[0]["reason"]
    assert sel.measured.sram_bytes <= budget and sel.measured.flash_bytes <= board.usable_flash_bytes
    log = [json.loads(l) for l in (out / "verify.jsonl").read_text().splitlines()]
    assert [r["arch"] for r in log] == [str(big), str(small)]
    assert (out / "model_int8.tflite").read_bytes() == (export_cache / str(small) / "model_int8.tflite").read_bytes()
    chosen = json.loads((out / "search.json").read_text())
    assert chosen["arch"]["id"] == str(small) and chosen["measured_margins"]["sram_bytes"] >= 0


def test_measured_costs_agree_with_prediction(trained_supernet_dir, space, export_cache):
    """On a real export: predicted host arena within [-1%, +3%], model bytes within 2%."""
    from pipeline.costs import arena_bytes, model_bytes, tflite_graph
    from pipeline.tflite import inspect_tflite
    from pipeline.search.verify import _export
    big = space.largest()
    d = _export(trained_supernet_dir, big, export_cache, None)
    report = json.loads((d / "export_report.json").read_text())
    g = tflite_graph(space, big)
    info = inspect_tflite(d / "model_int8.tflite")
    assert [op.name for op in info.ops] == [op.kind for op in g.ops]
    measured = report["arena"]["min_arena_bytes"]
    err = (arena_bytes(g).total - measured) / measured
    assert -0.01 <= err <= 0.03
    size = (d / "model_int8.tflite").stat().st_size
    assert abs(model_bytes(g) - size) / size <= 0.02


def test_catalog_writes_json_markdown_and_plots(trained_supernet_dir, predictor, export_cache, tmp_path):
    from pipeline.search.catalog import catalog
    boards = [load_board("nucleo-f412zg"), load_board("rpi-pico")]
    out = tmp_path / "catalog"
    # Share the export cache with the tests above: an arch chosen again is not exported again.
    import shutil
    shutil.copytree(export_cache, out / "exports")
    data = catalog(trained_supernet_dir, boards, out, predictor=predictor,
                   search_kwargs={"population": 20, "generations": 3, "parents": 5, "n_mutate": 10,
                                  "n_crossover": 10})
    assert [r["board"] for r in data["boards"]] == ["nucleo-f412zg", "rpi-pico"]
    for r in data["boards"]:
        assert r["fits"], r
        assert r["measured"]["sram_bytes"] <= r["budget"]["sram_bytes"]
        assert r["measured"]["flash_bytes"] <= r["budget"]["flash_bytes"]
        assert 0.0 <= r["measured"]["int8_acc"] <= 1.0
        assert (out / f"pareto_{r['board']}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    on_disk = json.loads((out / "catalog.json").read_text())
    assert on_disk["boards"][0]["arch"] == data["boards"][0]["arch"]
    md = (out / "catalog.md").read_text()
    assert md.count("\n| nucleo-f412zg |") == 1 and md.count("\n| rpi-pico |") == 1
    assert data["distinct_archs"] == len({r["arch"] for r in data["boards"]})
