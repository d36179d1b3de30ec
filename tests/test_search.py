"""Board-aware search: predictor, evolution under several budgets, infeasible budgets, CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.boards import load_board
from pipeline.errors import BudgetError
from pipeline.search.encoding import encode, feature_size
from pipeline.search.evolution import _pareto, search, smallest_costs
from pipeline.search.predictor import AccuracyPredictor, collect_samples, sample_archs, train_predictor
from pipeline.supernet.space import SearchSpace


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    import torch
    torch.set_num_threads(1)


def test_encoding_is_ofa_style(space):
    archs = [space.smallest(), space.largest(), space.sample(np.random.default_rng(0))]
    x = encode(space, archs)
    assert x.shape == (3, feature_size(space))
    n_st, d = len(space.stages), space.max_depth
    blocks = x[:, :n_st * d * 6].reshape(3, n_st, d, 6)
    for row, a in enumerate(archs):
        for s in range(n_st):
            depth = len(a.kernels[s])
            assert blocks[row, s, :depth, :3].sum(axis=1).tolist() == [1] * depth   # one-hot kernel
            assert blocks[row, s, :depth, 3:].sum(axis=1).tolist() == [1] * depth   # one-hot expand
            assert blocks[row, s, depth:].sum() == 0                                 # skipped: zeros
    assert x[:, -len(space.resolutions):].sum(axis=1).tolist() == [1, 1, 1]


def test_same_seed_same_result(space, proxy_predictor):
    board = load_board("nucleo-f412zg")
    kw = dict(predictor=proxy_predictor, latency_ms=150.0, population=40, generations=8, parents=10,
              n_mutate=20, n_crossover=20)
    a = search(space, board, seed=3, **kw)
    b = search(space, board, seed=3, **kw)
    assert a.best.arch == b.best.arch
    assert [str(c.arch) for c in a.ranked] == [str(c.arch) for c in b.ranked]
    assert [str(c.arch) for c in a.pareto] == [str(c.arch) for c in b.pareto]
    assert a.history == b.history


def test_search_respects_every_budget_and_beats_random(space, proxy_predictor):
    board = load_board("rpi-pico")
    # 300 ms on the Cortex-M0+: binding (about 3% of random archs meet it) with the published-calibrated
    # latency model (pipeline/costs/latency_published.yaml).
    res = search(space, board, predictor=proxy_predictor, latency_ms=300.0, sram_bytes=120 * 1024,
                 population=40, generations=10, parents=10, n_mutate=20, n_crossover=20, seed=0)
    assert res.budget.sram_bytes == 120 * 1024 and res.budget.latency_ms == 300.0
    for c in res.ranked + res.pareto:
        assert c.sram_bytes <= res.budget.sram_bytes
        assert c.costs.flash_bytes <= res.budget.flash_bytes
        assert c.costs.latency_ms <= 300.0
    m = res.margins
    assert min(m["sram_bytes"], m["flash_bytes"], m["latency_ms"]) >= 0
    # As good as the best of 300 random feasible archs (the same predictor score and budgets).
    from pipeline.costs import estimate
    rng = np.random.default_rng(0)
    feas = []
    for _ in range(300):
        a = space.sample(rng)
        c = estimate(space, a, board)
        if c.sram_bytes <= res.budget.sram_bytes and c.latency_ms <= 300.0:
            feas.append(a)
    assert feas
    assert res.best.fitness >= proxy_predictor.score(feas).max() - 1e-9
    # The front is non-dominated.
    pts = [(c.predicted_acc, c.costs.latency_ms, c.sram_bytes) for c in res.pareto]
    for i, p in enumerate(pts):
        for j, q in enumerate(pts):
            if i != j:
                assert not (q[0] >= p[0] and q[1] <= p[1] and q[2] <= p[2] and q != p)
    assert _pareto(res.pareto) == res.pareto


def test_infeasible_budget_reports_the_reachable_minimum(space, proxy_predictor):
    board = load_board("nucleo-f746zg")
    least = smallest_costs(space, board)
    with pytest.raises(BudgetError) as e:
        search(space, board, predictor=proxy_predictor, sram_bytes=least["sram_bytes"] - 1024)
    msg = e.value.message
    assert "SRAM" in msg and f"{least['sram_bytes'] / 1024:.1f} KiB" in msg and "latency:" not in msg
    with pytest.raises(BudgetError) as e:
        search(space, board, predictor=proxy_predictor, latency_ms=least["latency_ms"] / 2)
    assert "latency" in e.value.message and f"{least['latency_ms']:.2f} ms" in e.value.message
    assert e.value.exit_code == 8
    # Exactly at the minimum it is feasible: the smallest arch is returned.
    res = search(space, board, predictor=proxy_predictor, latency_ms=least["latency_ms"], population=10,
                 generations=2, parents=5, n_mutate=5, n_crossover=5)
    assert res.best.costs.latency_ms <= least["latency_ms"]


# -- predictor on a real trained supernet ----------------------------------------------------------
def test_predictor_samples_are_cached_and_resumed(trained_supernet_dir, tmp_path):
    from pipeline.search.predictor import _supernet_evaluator
    real = _supernet_evaluator(trained_supernet_dir, None, 200, 0)
    calls = []

    def counting(arch):
        calls.append(str(arch))
        return real(arch)

    first = collect_samples(trained_supernet_dir, tmp_path, 5, evaluate_fn=counting, num_calib_images=200)
    assert len(calls) == 5
    lines = (tmp_path / "samples.jsonl").read_text().splitlines()
    assert len(lines) == 5
    # A torn last line (crash mid-write) is dropped and that arch measured again.
    (tmp_path / "samples.jsonl").write_text("\n".join(lines[:4]) + "\n" + lines[4][:10])
    more = collect_samples(trained_supernet_dir, tmp_path, 8, evaluate_fn=counting, num_calib_images=200)
    assert len(calls) == 5 + 4                      # 4 new (3 + the torn one), nothing re-measured
    assert [r["arch"] for r in more[:4]] == [r["arch"] for r in first[:4]]
    assert all(0.0 <= r["label_acc"] <= 1.0 for r in more)
    # A rerun with everything cached measures nothing.
    again = collect_samples(trained_supernet_dir, tmp_path, 8, evaluate_fn=counting, num_calib_images=200)
    assert len(calls) == 9 and again == more


def test_predictor_trains_reports_and_round_trips(trained_supernet_dir, tmp_path):
    pred, rep = train_predictor(trained_supernet_dir, out_dir=tmp_path, num_samples=12, epochs=100, hidden=32)
    assert rep["num_samples"] == 12 and rep["num_test"] >= 1
    assert np.isfinite(rep["rmse"]) and -1.0 <= rep["kendall_tau"] <= 1.0
    space = SearchSpace.load(f"{trained_supernet_dir}/space.json")
    archs = sample_archs(space, 12, seed=0)
    p1 = pred.predict(archs)
    loaded = AccuracyPredictor.load(tmp_path)
    np.testing.assert_allclose(loaded.predict(archs), p1, rtol=0, atol=1e-6)
    # Same seed, same samples -> the same model (deterministic training).
    pred2, _ = train_predictor(trained_supernet_dir, out_dir=tmp_path, num_samples=12, epochs=100, hidden=32)
    np.testing.assert_allclose(pred2.predict(archs), p1, rtol=0, atol=1e-6)
    # Fits its training data better than the mean does.
    y = np.array([json.loads(l)["label_acc"] for l in (tmp_path / "samples.jsonl").read_text().splitlines()])
    assert np.mean((p1 - y) ** 2) < np.mean((y.mean() - y) ** 2)


def test_cli_search_prints_choice_and_margins(trained_supernet_dir, tmp_path, capsys):
    from pipeline.cli import main
    out = tmp_path / "search.json"
    rc = main(["search", "--supernet", str(trained_supernet_dir), "--board", "nucleo-f412zg",
               "--latency-ms", "500", "--sram-kb", "200", "--samples", "8", "--generations", "3",
               "--population", "20", "--out", str(out), "--quiet"])
    text = capsys.readouterr().out
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["best"]["arch"]["id"] in text
    assert "margin" in text and "SRAM" in text and "latency" in text
    assert res["margins"]["sram_bytes"] >= 0 and res["budget"]["sram_bytes"] == 200 * 1024
    rc = main(["search", "--supernet", str(trained_supernet_dir), "--board", "nucleo-f412zg",
               "--sram-kb", "1", "--samples", "8", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 8 and "SRAM: needs at least" in err


def test_kendall_tau_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    from pipeline.search.predictor import kendall_tau
    rng = np.random.default_rng(0)
    for _ in range(5):
        a = rng.integers(0, 8, 40).astype(float)           # with ties, like accuracies on few images
        b = a + rng.normal(0, 2, 40)
        assert kendall_tau(a, b) == pytest.approx(stats.kendalltau(a, b).statistic, abs=1e-12)
