"""Selection an engineer wants: honest predictor labels (disjoint splits), objective and tolerance,
multi-budget catalogs, a default space that follows the data and spans the boards, progress lines."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest

from pipeline.boards import list_boards, load_board
from pipeline.costs import estimate
from pipeline.errors import ConfigError, UsageError
from pipeline.search.evolution import search
from pipeline.search.predictor import AccuracyPredictor, heldout_accuracy, label_info, sample_archs
from pipeline.progress import ProgressLines
from pipeline.supernet.space import SearchSpace, SubnetArch, default_resolutions, default_space, macs, resolution_note

SMALL = dict(population=30, generations=6, parents=8, n_mutate=15, n_crossover=15)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    import torch
    torch.set_num_threads(1)


# -- honest labels ----------------------------------------------------------------------------------
def test_predictor_labels_and_bn_images_are_disjoint():
    from pipeline.data import load_dataset
    from pipeline.search.predictor import bn_image_indices, label_split

    ds = load_dataset("builtin:digits")
    info = label_info(ds, 500, seed=0)
    _, y, label_idx = label_split(ds, None)
    bn_idx = bn_image_indices(ds, 500, seed=0)
    assert info["disjoint"] and not np.intersect1d(label_idx, bn_idx).size
    assert len(bn_idx) == 500 and set(bn_idx) <= set(ds.split("train").indices)
    assert not np.intersect1d(label_idx, ds.split("test").indices).size   # test kept for the int8 figure
    assert info["label_images"] == len(y) == len(ds.split("holdout")) + len(ds.split("calibration"))
    # 1,797 digits: 360 label images, 0.28 points each, fewer than 500: the report says why.
    assert info["points_per_image"] == pytest.approx(100 / len(y), abs=1e-3)
    assert "1797 images" in info["note"] and "0.28 points" in info["note"]


def test_prediction_error_is_predicted_minus_measured_in_points():
    from pipeline.search.verify import prediction_error
    assert prediction_error(0.95, 0.93) == pytest.approx(2.0)
    assert prediction_error(0.90, 0.93) == pytest.approx(-3.0)
    assert prediction_error(0.9, None) is None


# -- objective and tolerance ------------------------------------------------------------------------
def test_latency_objective_is_the_fastest_within_tolerance(space, proxy_predictor):
    board = load_board("nucleo-f746zg")
    acc = search(space, board, predictor=proxy_predictor, seed=1, **SMALL)
    fast = search(space, board, predictor=proxy_predictor, seed=1, objective="latency", tolerance=2.0, **SMALL)
    ref = fast.params["most_accurate"]
    assert fast.params["objective"] == "latency" and fast.params["tolerance_points"] == 2.0
    # Within 2 points of the most accurate (by the score the search ranks with), and faster than it.
    assert fast.best.fitness >= ref["fitness"] - 0.02 - 1e-9
    assert fast.best.costs.latency_ms <= ref["latency_ms"]
    assert fast.best.costs.latency_ms < acc.best.costs.latency_ms
    assert ref["fitness"] >= acc.best.fitness - 1e-9          # phase 1 is the accuracy search itself
    # `ranked` lists the archs within tolerance cheapest first (the fallbacks select_and_verify exports).
    close = [c for c in fast.ranked if c.fitness >= ref["fitness"] - 0.02 - 1e-9]
    lats = [c.costs.latency_ms for c in close]
    assert lats == sorted(lats) and fast.ranked[:len(close)] == close
    # A tolerance of 100 points admits every arch: the fastest is near the smallest arch's latency.
    anything = search(space, board, predictor=proxy_predictor, seed=1, objective="latency", tolerance=100.0,
                      **SMALL)
    least = estimate(space, space.smallest(), board).latency_ms
    assert anything.best.costs.latency_ms <= 1.5 * least
    # Tolerance 0: nothing less accurate than the best is allowed.
    exact = search(space, board, predictor=proxy_predictor, seed=1, objective="latency", tolerance=0.0, **SMALL)
    assert exact.best.fitness >= exact.params["most_accurate"]["fitness"] - 1e-9


def test_energy_objective_and_bad_combinations(space, proxy_predictor):
    board = load_board("nucleo-f746zg")
    res = search(space, board, predictor=proxy_predictor, seed=2, objective="energy", **SMALL)
    assert res.params["tolerance_points"] == 1.0                  # the documented default
    ref = res.params["most_accurate"]
    assert res.best.costs.latency_ms * board.active_power_mw <= ref["energy"] + 1e-9
    with pytest.raises(ConfigError, match="tolerance needs a cost"):
        search(space, board, predictor=proxy_predictor, tolerance=1.0, **SMALL)
    with pytest.raises(ConfigError, match="objective must be one of"):
        search(space, board, predictor=proxy_predictor, objective="size", **SMALL)
    no_power = next(b for b in list_boards() if not b.active_power_mw)
    with pytest.raises(ConfigError, match="no active power"):
        search(space, no_power, predictor=proxy_predictor, objective="energy", **SMALL)


# -- multi-budget catalog ---------------------------------------------------------------------------
def test_latency_budget_lists():
    from pipeline.commands.catalog import parse_latency_budgets
    from pipeline.search.catalog import deployment_id, latency_budgets

    assert parse_latency_budgets("20,50, 200") == [20.0, 50.0, 200.0]
    assert parse_latency_budgets("none,50") == [None, 50.0]
    assert parse_latency_budgets(None) is None
    for bad in ("", "20,,50", "-5", "nan", "abc", "20,20", "inf"):
        with pytest.raises(UsageError):
            parse_latency_budgets(bad)
    assert latency_budgets(None) == [None] and latency_budgets(50) == [50.0]
    assert latency_budgets([20, None]) == [20.0, None]
    assert deployment_id("rpi-pico", 50.0, True) == "rpi-pico@50ms"
    assert deployment_id("rpi-pico", None, True) == "rpi-pico@none"
    assert deployment_id("rpi-pico", 50.0, False) == "rpi-pico"


def test_catalog_markdown_has_a_row_per_board_and_budget():
    from pipeline.search.catalog import catalog_markdown
    rows = []
    for b, lat, err in (("rpi-pico", 20.0, 1.5), ("rpi-pico", 200.0, -0.5)):
        rows.append({"board": b, "deployment": f"{b}@{lat:g}ms", "latency_budget_ms": lat, "core": "cortex-m0plus",
                     "clock_mhz": 133.0, "fits": True, "arch": "r24-w35k3e3k3e3", "predicted_minus_measured_points": err,
                     "budget": {"sram_bytes": 1 << 18, "flash_bytes": 1 << 21},
                     "predicted": {"acc": 0.9, "latency_ms": lat / 2, "macs": 1e6},
                     "measured": {"int8_acc": 0.9 - err / 100, "sram_bytes": 1 << 16, "flash_bytes": 1 << 19}})
    md = catalog_markdown({"supernet": "s", "latency_budgets_ms": [20.0, 200.0], "boards": rows,
                           "distinct_archs": 1, "seconds": 1.0,
                           "predictor_error": {"picks": 2, "mean_abs_points": 1.0, "mean_points": 0.5}})
    assert "| rpi-pico | 20 ms |" in md and "| rpi-pico | 200 ms |" in md
    assert "| +1.50 |" in md and "| -0.50 |" in md and "latency budgets 20 ms, 200 ms" in md
    assert "mean |predicted - int8| 1.00 points" in md


@pytest.mark.slow
def test_catalog_over_several_budgets_is_one_deployment_each(trained_supernet_dir, tmp_path):
    """Real search, export and verification for one board at two latency budgets and none."""
    from pipeline.search.catalog import catalog
    space = SearchSpace.load(trained_supernet_dir / "space.json")
    archs = sample_archs(space, 40, seed=1)
    from pipeline.supernet.space import params
    pred = AccuracyPredictor(space, hidden=32).fit(archs, [params(space, a) / params(space, space.largest())
                                                            for a in archs], epochs=100)
    board = load_board("nucleo-f412zg")
    lats = sorted(estimate(space, a, board).latency_ms for a in archs)
    tight, loose = lats[len(lats) // 4], lats[-1] * 2
    out = tmp_path / "cat"
    data = catalog(trained_supernet_dir, [board], out, latency_ms=[tight, loose, None], predictor=pred,
                   max_candidates=3, search_kwargs={"population": 20, "generations": 3, "parents": 5,
                                                    "n_mutate": 10, "n_crossover": 10})
    rows = data["boards"]
    assert [r["deployment"] for r in rows] == [f"nucleo-f412zg@{tight:g}ms", f"nucleo-f412zg@{loose:g}ms",
                                               "nucleo-f412zg@none"]
    assert all(r["fits"] for r in rows), rows
    assert rows[0]["predicted"]["latency_ms"] <= tight
    assert rows[0]["predicted"]["macs"] <= rows[1]["predicted"]["macs"]
    for r in rows:
        assert (out / "boards" / r["deployment"] / "search.json").exists()
        sj = json.loads((out / "boards" / r["deployment"] / "search.json").read_text())
        assert sj["predicted_minus_measured_points"] == pytest.approx(
            100 * (r["predicted"]["acc"] - r["measured"]["int8_acc"]), abs=1e-3)
        assert r["predicted_minus_measured_points"] == sj["predicted_minus_measured_points"]
        # the pick measured exactly as a predictor label is (the predictor's own value is selection-biased)
        assert r["heldout_acc"] == sj["heldout_acc"] == pytest.approx(
            heldout_accuracy(trained_supernet_dir, SubnetArch.parse(r["arch"])), abs=1e-9)
        assert r["heldout_minus_measured_points"] == pytest.approx(
            100 * (r["heldout_acc"] - r["measured"]["int8_acc"]), abs=1e-3)
    from pipeline.search.catalog import write_catalog
    write_catalog(data, out)
    md = (out / "catalog.md").read_text()
    assert md.count("\n| nucleo-f412zg |") == 3 and "| none |" in md
    assert data["predictor_error"]["picks"] == 3 and data["heldout_error"]["picks"] == 3
    assert "mean |held-out - int8|" in md


# -- a space that follows the data and spans the boards -------------------------------------------
def test_resolution_follows_the_data():
    assert default_resolutions(8) == (24, 28, 32)          # the 8x8 digits: upsampled, as before
    assert default_resolutions(32) == (24, 28, 32)
    assert max(default_resolutions(48)) == 48 and max(default_resolutions(64)) == 64
    assert max(default_resolutions(96)) == 96 and max(default_resolutions(224)) == 96
    assert default_space((8, 8), 1, 10) == SearchSpace()   # the demo's space is unchanged
    assert resolution_note(default_space((48, 48), 3, 10), (48, 48)) is None
    note = resolution_note(default_space((128, 128), 3, 10), (128, 128))
    assert "128x128" in note and "96x96" in note and "downscaled" in note


def test_training_says_when_images_are_downscaled(tmp_path, capsys):
    from pipeline.data import load_dataset
    from pipeline.train.loop import resolve_space

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(20, 128, 128, 3), dtype=np.uint8)
    np.savez(tmp_path / "big.npz", x=x, y=np.arange(20) % 2)
    space = resolve_space(None, load_dataset(f"npz:{tmp_path / 'big.npz'}"))
    assert max(space.resolutions) == 96
    err = capsys.readouterr().err
    assert "128x128 px" in err and "downscaled" in err
    np.savez(tmp_path / "native.npz", x=x[:, :48, :48], y=np.arange(20) % 2)
    space = resolve_space(None, load_dataset(f"npz:{tmp_path / 'native.npz'}"))
    assert max(space.resolutions) == 48 and capsys.readouterr().err == ""


@pytest.mark.parametrize("native", [48, 64, 96])
def test_default_space_spans_the_boards(native):
    """Smallest subnet fits the smallest board; the largest does not; at 96 px it needs > 512 KiB."""
    space = default_space((native, native), 3, 10)
    boards = list_boards()
    smallest_board = min(boards, key=lambda b: b.usable_sram_bytes)
    small = estimate(space, space.smallest(), smallest_board)
    assert small.sram_bytes <= smallest_board.usable_sram_bytes
    assert small.flash_bytes <= min(b.usable_flash_bytes for b in boards)
    big = estimate(space, space.largest(), smallest_board)
    assert big.sram_bytes > smallest_board.usable_sram_bytes
    if native == 96:
        assert big.sram_bytes > 512 * 1024


# -- progress lines ---------------------------------------------------------------------------------
def test_progress_lines_first_last_and_every_few_seconds():
    t = [0.0]
    out = io.StringIO()
    p = ProgressLines("job", 10, every_s=5.0, stream=out, clock=lambda: t[0])
    printed = []
    for i in range(1, 11):
        t[0] += 1.0
        printed.append(p.update(i, f"{i}/10 done"))
    lines = out.getvalue().splitlines()
    assert printed == [True, False, False, False, False, True, False, False, False, True]
    assert lines[0].startswith("job: 1/10 done, 1 s elapsed, about") and lines[-1] == "job: 10/10 done, 10 s elapsed"


def test_search_prints_progress_lines_when_stderr_is_not_a_terminal(space, proxy_predictor, capsys):
    search(space, load_board("rpi-pico"), predictor=proxy_predictor, seed=0, progress_lines=True,
           progress_every_s=0.0, objective="latency", **SMALL)
    err = capsys.readouterr().err.splitlines()
    acc = [l for l in err if "accuracy generation" in l]
    lat = [l for l in err if "latency generation" in l]
    assert len(acc) == SMALL["generations"] and len(lat) == SMALL["generations"]
    assert acc[0].startswith("search rpi-pico: accuracy generation 1/6, ") and "% predicted" in acc[0]
    assert "archs evaluated" in acc[-1] and "elapsed" in acc[-1]
    assert "ms within 1 points" in lat[-1]


def test_cli_search_progress_and_objective(trained_supernet_dir, tmp_path, capsys):
    """Under pytest stderr is a pipe: the predictor's samples and the search report progress as lines."""
    import shutil

    from pipeline.cli import main
    run = tmp_path / "run"
    shutil.copytree(trained_supernet_dir, run / "supernet")
    rc = main(["search", "--supernet", str(run / "supernet"), "--board", "nucleo-f412zg", "--samples", "6",
               "--generations", "2", "--population", "10", "--objective", "latency", "--tolerance", "5"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "predictor samples: 1/6 subnets measured" in cap.err and "predictor samples: 6/6" in cap.err
    assert "predictor: labels rest on" in cap.err                 # digits: fewer than 500 label images
    assert "search nucleo-f412zg: accuracy generation" in cap.err
    import re
    assert "objective latency within 5 points" in cap.out
    assert re.search(r"labels on 3[56]\d holdout\+calibration images", cap.out)
    # the accuracy shown is the pick measured on the held-out images, not the predictor's figure
    held = re.search(r"accuracy (\d+\.\d\d)% measured on held-out images", cap.out)
    assert held, cap.out
    arch = SubnetArch.parse(re.search(r"^arch +(\S+)", cap.out, re.M).group(1))
    assert float(held.group(1)) == pytest.approx(100 * heldout_accuracy(run / "supernet", arch), abs=0.006)
    rep = json.loads((run / "predictor" / "report.json").read_text())
    assert rep["labels"]["disjoint"] and rep["labels"]["bn_split"] == "train"
    rc = main(["search", "--supernet", str(run / "supernet"), "--board", "nucleo-f412zg", "--samples", "6",
               "--tolerance", "1", "--quiet"])
    assert rc == 2 and "--tolerance needs --objective" in capsys.readouterr().err


def test_no_latency_budget_accuracy_does_not_fall_as_sram_grows():
    """96 px default space, no latency budget, a real MLP fitted to log MACs: the best predicted accuracy
    per board never falls as usable SRAM grows (boards with the same or more flash), and the board with
    768 KiB gets a larger arch, using SRAM the 232 KiB board does not have."""
    space = default_space((96, 96), 3, 10)
    archs = sample_archs(space, 150, seed=5)
    y = np.array([np.log(macs(space, a)) for a in archs])
    pred = AccuracyPredictor(space, hidden=64, seed=0).fit(archs, 0.5 + 0.4 * (y - y.min()) / np.ptp(y), epochs=150)
    ids = ["arduino-nano-33-ble-sense", "nucleo-f746zg", "nucleo-h743zi2", "nucleo-u575zi-q"]
    boards = sorted((load_board(i) for i in ids), key=lambda b: b.usable_sram_bytes)
    best = [search(space, b, predictor=pred, seed=0, population=40, generations=10, parents=10, n_mutate=20,
                   n_crossover=20).best for b in boards]
    fit = [c.fitness for c in best]
    assert all(b >= a - 0.005 for a, b in zip(fit, fit[1:])), fit
    assert best[0].sram_bytes <= boards[0].usable_sram_bytes
    assert macs(space, best[-1].arch) > macs(space, best[0].arch)
    assert best[-1].sram_bytes > 512 * 1024                        # uses SRAM the small boards do not have


def test_plain_patched_and_finetuned_exports_of_one_arch_keep_separate_folders(tmp_path, space):
    """One arch exported plain, fine-tuned and patched gives three models: none may overwrite another
    in the shared export cache (a catalog run and a --finetune-epochs deploy share it)."""
    from pipeline.search.verify import _export

    arch, dirs = space.smallest(), []
    record = lambda _sn, _arch, d, **kw: dirs.append(d)  # noqa: E731 - the export itself is tested elsewhere
    for kw in ({}, {"finetune_epochs": 2}, {"patches": "2x2"}, {"patches": "2x2", "finetune_epochs": 2}):
        _export(tmp_path / "supernet", arch, tmp_path / "exports", record, **kw)
    assert len(set(dirs)) == 4 and dirs[0].name == str(arch)
    assert dirs[1].name.endswith("+ft2") and "+patches2x2" in dirs[3].name
