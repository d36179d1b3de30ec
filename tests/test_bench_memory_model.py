"""benchmarks/bench_memory_model.py samples its real-export archs from one generator: distinct archs
(an earlier version re-seeded inside the loop, so 16 "real exports" were 3 subnets)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_memory_model as bench  # noqa: E402

from pipeline.supernet.space import SearchSpace  # noqa: E402


def test_sampler_yields_distinct_archs():
    space = SearchSpace()
    ends = [space.smallest(), space.largest()]
    archs = bench.distinct_archs(space, 16, np.random.default_rng(42), exclude=ends)
    ids = [str(a) for a in archs]
    assert len(ids) == 16 == len(set(ids)) and not set(ids) & {str(a) for a in ends}
    again = bench.distinct_archs(space, 16, np.random.default_rng(42), exclude=ends)
    assert [str(a) for a in again] == ids  # seeded: the same run twice gives the same archs
    only_big = bench.distinct_archs(space, 5, np.random.default_rng(0),
                                    accept=lambda a: a.resolution == max(space.resolutions))
    assert all(a.resolution == max(space.resolutions) for a in only_big)


