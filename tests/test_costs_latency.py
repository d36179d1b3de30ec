"""Latency model: per-core defaults behave as their sources say, and the fit recovers known coefficients."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.boards import list_boards
from pipeline.costs import (LatencyModel, default_latency_model, estimate, fit_latency, load_calibration,
                            profile_rows, save_calibration, tflite_graph)
from pipeline.costs.latency import DEFAULT_COEFFICIENTS, graph_cycles
from pipeline.errors import ConfigError
from pipeline.supernet.space import SearchSpace


def _board(core):
    return next(b for b in list_boards() if b.core == core)


def test_defaults_follow_the_anchors():
    for core, table in DEFAULT_COEFFICIENTS.items():
        assert table["dw"][1] > table["pw"][1], core           # depthwise dearer per MAC
        assert all(o > 0 for o, _ in table.values()), core     # every op has an overhead
    per_mac = {c: DEFAULT_COEFFICIENTS[c]["pw"][1] for c in DEFAULT_COEFFICIENTS}
    assert per_mac["cortex-m55"] < per_mac["cortex-m33"] < per_mac["cortex-m4"] < per_mac["cortex-m0plus"]
    # ms follow the clock: the same core at a higher clock is faster.
    space = SearchSpace()
    m4 = sorted((b for b in list_boards() if b.core == "cortex-m4" and not b.emulated), key=lambda b: b.clock_hz)
    lat = [estimate(space, space.largest(), b).latency_ms for b in m4]
    assert lat == sorted(lat, reverse=True)


def _synthetic(core: str, rng: np.random.Generator, truth: dict, noise: float = 0.0) -> list[dict]:
    space = SearchSpace()
    rows = []
    for _ in range(8):
        g = tflite_graph(space, space.sample(rng))
        model = LatencyModel(core, truth)
        cycles = np.array(graph_cycles(g, model))
        cycles *= 1.0 + noise * rng.standard_normal(len(cycles))
        rows += profile_rows(g, cycles.tolist())
    return rows


@pytest.mark.parametrize("core", ["cortex-m4", "cortex-m7", "cortex-m0plus", "cortex-m33"])
def test_fit_recovers_known_coefficients(core):
    rng = np.random.default_rng(0)
    truth = {c: (o * rng.uniform(0.5, 2.0), u * rng.uniform(0.5, 2.0))
             for c, (o, u) in DEFAULT_COEFFICIENTS[core].items()}
    rows = _synthetic(core, rng, truth)
    fitted = fit_latency(rows, _board(core))
    for cls in ("conv", "pw", "dw", "add", "pool"):
        o, u = fitted.coefficients[cls]
        assert u == pytest.approx(truth[cls][1], rel=0.01), cls
        assert o == pytest.approx(truth[cls][0], rel=0.01), cls


def test_fit_with_noise_is_close_and_calibration_is_used(tmp_path):
    rng = np.random.default_rng(1)
    board = _board("cortex-m7")
    truth = {c: (o * 1.3, u * 0.7) for c, (o, u) in DEFAULT_COEFFICIENTS["cortex-m7"].items()}
    fitted = fit_latency(_synthetic("cortex-m7", rng, truth, noise=0.02), board)
    assert fitted.coefficients["pw"][1] == pytest.approx(truth["pw"][1], rel=0.05)
    path = save_calibration(fitted, tmp_path / "calibration" / f"{board.id}.json")
    loaded = load_calibration(str(path), board.core, board.id)
    assert {k: tuple(v) for k, v in loaded.coefficients.items()} == {k: tuple(v) for k, v in fitted.coefficients.items()}
    space = SearchSpace()
    arch = space.largest()
    default_ms = estimate(space, arch, board).latency_ms
    calibrated_ms = estimate(space, arch, board, calibration=str(path)).latency_ms
    exact = sum(graph_cycles(tflite_graph(space, arch), LatencyModel(board.core, truth))) / board.clock_hz * 1e3
    assert calibrated_ms == pytest.approx(exact, rel=0.05)
    assert abs(calibrated_ms - exact) < abs(default_ms - exact)


def test_calibration_for_another_core_is_refused(tmp_path):
    m4 = default_latency_model("cortex-m4", "x")
    path = save_calibration(m4, tmp_path / "m4.json")
    with pytest.raises(ConfigError, match="cortex-m4"):
        load_calibration(str(path), "cortex-m7")
    with pytest.raises(ConfigError, match="no latency measurements"):
        fit_latency([], _board("cortex-m4"))


# -- calibration to published measurements (pipeline/costs/latency_published.yaml) ---------------------
def test_committed_coefficients_are_the_fit_of_the_committed_measurements():
    from pipeline.costs.latency import fit_published
    fit = fit_published()
    assert {c: {k: tuple(v) for k, v in t.items()} for c, t in fit["coefficients"].items()} == \
        {c: {k: tuple(v) for k, v in t.items()} for c, t in DEFAULT_COEFFICIENTS.items()}


def test_published_tflm_latencies_within_target_and_m7_cheaper_per_mac():
    """estimate / published in [0.67, 1.5] for every TFLM figure, from the committed per-class work (the
    benchmark recomputes that work from the .tflite files); the M7 needs fewer cycles per MAC than the M4."""
    from pipeline.costs.latency import published_data
    data = published_data()
    lat = default_latency_model("cortex-m4")
    for m in (m for m in data["measurements"] if m["tflm_based"] and m["board"] == "nucleo-l4r5zi"):
        cycles = sum(n * lat.coefficients[c][0] + w * lat.coefficients[c][1]
                     for c, (n, w) in data["models"][m["model"]]["classes"].items())
        ratio = cycles / m["clock_hz"] * 1e3 / m["latency_ms"]
        assert 0.67 <= ratio <= 1.5, (m["model"], ratio)
    per_mac = {c: t["pw"][1] for c, t in DEFAULT_COEFFICIENTS.items()}
    assert 1.3 <= per_mac["cortex-m4"] / per_mac["cortex-m7"] <= 1.9
    assert per_mac["cortex-m55"] < per_mac["cortex-m7"] < per_mac["cortex-m33"] < per_mac["cortex-m4"] \
        < per_mac["cortex-m0plus"]
