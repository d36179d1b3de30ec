"""Shared fixtures: a tiny search space and a tiny supernet trained once per test session.

`trained_supernet_dir` is a real `ofa-mcu train` result (progressive shrinking through every phase
on builtin:digits), small enough to train in well under a minute on one thread. Other stages'
tests (export, search, costs) load it with `pipeline.supernet.load_supernet(dir)`.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def make_tiny_space(in_channels: int = 1, num_classes: int = 10):
    """Every elastic dimension present (kernel 3/5/7, expand 3/4/6, depth 1-2, three widths, two
    resolutions), at a size that trains in seconds. The last stage has stride 1, so some width
    choices give its first block a residual add."""
    from pipeline.supernet import SearchSpace, StageSpec

    return SearchSpace(in_channels=in_channels, num_classes=num_classes, resolutions=(16, 24),
                       stem_channels=8, stem_stride=2,
                       stages=(StageSpec(16, 2), StageSpec(24, 2), StageSpec(32, 1)),
                       kernel_sizes=(3, 5, 7), expand_ratios=(3, 4, 6), depths=(1, 2),
                       width_mults=(0.5, 0.75, 1.0))


def make_tiny_schedule(space, scale: float = 1.0):
    """Every progressive-shrinking phase, few epochs each."""
    from pipeline.train import Phase, Schedule

    def ep(n):
        return max(1, round(n * scale))
    res = {"resolutions": "all"}
    ks = {**res, "kernel_sizes": "all"}
    dp = {**ks, "depths": "all"}
    ew = {**dp, "expand_ratios": "all", "width_mults": "all"}
    return Schedule(phases=(
        Phase("largest", ep(6), 0.1, res),
        Phase("kernel", ep(1), 0.03, ks, kd_weight=1.0),
        Phase("depth", ep(1), 0.02, dp, subnets_per_step=2, kd_weight=1.0),
        Phase("expand", ep(3), 0.03, ew, subnets_per_step=3, kd_weight=1.0, sandwich=True,
              kd_teacher="inplace"),
    ))


def train_tiny_supernet(out: str | Path, data: str = "builtin:digits", seed: int = 0) -> Path:
    """Train the tiny supernet into `out`/supernet and return that directory (~20-40 s, 1 thread)."""
    from pipeline.data import load_dataset
    from pipeline.train import TrainConfig, train_supernet

    ds = load_dataset(data)
    space = make_tiny_space(ds.channels, ds.num_classes)
    cfg = TrainConfig(data=data, out=out, space=space, schedule=make_tiny_schedule(space), seed=seed,
                      threads=1, quiet=True, epoch_eval=False)
    return train_supernet(cfg)


@pytest.fixture(scope="session")
def tiny_space():
    return make_tiny_space()


@pytest.fixture(scope="session")
def trained_supernet_dir(tmp_path_factory) -> Path:
    """A tiny supernet trained on builtin:digits (summary.json holds its test accuracies)."""
    import torch

    torch.set_num_threads(1)
    return train_tiny_supernet(tmp_path_factory.mktemp("tiny_run"))


# -- one closing line that says what was skipped and how to enable it (make test on a bare machine) --
SKIP_HOWTO = (  # (words in the skip reason, what is missing, how to get it); first match wins
    (("TFLM_DIR",), "TFLM_DIR", "export TFLM_DIR=<tflite-micro tree>; `make -C fw tflm` prints how"),
    (("arm-none-eabi",), "arm-none-eabi-gcc", "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib"),
    (("qemu",), "qemu-system-arm", "apt-get install qemu-system-arm"),
    (("chromium",), "chromium", "apt-get install chromium"),
    (("C compiler", "C++ compiler", "host C"), "a host C/C++ compiler", "apt-get install gcc g++"),
    (("PICO_SDK_PATH",), "PICO_SDK_PATH", "export PICO_SDK_PATH=<pico-sdk>"),
)


def skip_groups(reasons: list[str]) -> list[tuple[str, str, int]]:
    """Group skip reasons by the missing tool: [(tool, how to enable, count)], largest first."""
    counts: dict[tuple[str, str], int] = {}
    for reason in reasons:
        key = next(((tool, how) for words, tool, how in SKIP_HOWTO if any(w in reason for w in words)),
                   (reason.removeprefix("Skipped: ").strip(), ""))
        counts[key] = counts.get(key, 0) + 1
    return sorted(((t, h, n) for (t, h), n in counts.items()), key=lambda g: -g[2])


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    reasons = config._ofa_skip_reasons = []  # noqa: SLF001 - printed last, in pytest_unconfigure
    for rep in terminalreporter.stats.get("skipped", []):
        longrepr = getattr(rep, "longrepr", None)
        reasons.append(str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr))


def pytest_unconfigure(config):
    """After pytest's own `N passed, M skipped` line, so the run ends with it."""
    reasons = getattr(config, "_ofa_skip_reasons", None)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if not reasons or reporter is None:
        return
    parts = [f"{n} need {tool}" + (f" ({how})" if how else "") for tool, how, n in skip_groups(reasons)]
    reporter.write_line(f"skipped {len(reasons)}: " + "; ".join(parts))


@pytest.fixture(autouse=True)
def _boards_env_restored():
    """`main(["--boards-dir", D, ...])` in-process exports D in OFA_MCU_BOARDS_DIR (for child processes);
    without this, a test board would leak into every later test's board list."""
    before = os.environ.get("OFA_MCU_BOARDS_DIR")
    yield
    if before is None:
        os.environ.pop("OFA_MCU_BOARDS_DIR", None)
    else:
        os.environ["OFA_MCU_BOARDS_DIR"] = before


@pytest.fixture(scope="module")
def space():
    """The default search space (test modules with a trained supernet override it)."""
    from pipeline.supernet.space import SearchSpace
    return SearchSpace()


@pytest.fixture(scope="module")
def proxy_predictor(space):
    """A real MLP predictor fitted to a smooth stand-in for accuracy (log MACs), no supernet needed."""
    import numpy as np

    from pipeline.search.predictor import AccuracyPredictor, sample_archs
    from pipeline.supernet.space import macs
    archs = sample_archs(space, 120, seed=5)
    y = np.array([np.log(macs(space, a)) for a in archs])
    y = 0.5 + 0.4 * (y - y.min()) / (y.max() - y.min())
    return AccuracyPredictor(space, hidden=64, seed=0).fit(archs, y, epochs=150)
