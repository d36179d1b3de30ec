"""OFA-style feature vector of an arch, the accuracy predictor's input.

Per stage and block slot (up to the space's largest depth): one-hot kernel size and one-hot expand
ratio, all zeros for a skipped block; per stage: one-hot depth and one-hot width multiplier; one-hot
resolution. As in Once-for-All's `ArchEncoder` (mit-han-lab/once-for-all, ofa/nas/accuracy_predictor),
with the per-stage width that OFA's MobileNetV3 space does not have.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..supernet.space import SearchSpace, SubnetArch


def feature_size(space: SearchSpace) -> int:
    n_st, d = len(space.stages), space.max_depth
    return (n_st * d * (len(space.kernel_sizes) + len(space.expand_ratios))
            + n_st * (len(space.depths) + len(space.width_mults)) + len(space.resolutions))


def encode(space: SearchSpace, archs: Sequence[SubnetArch]) -> np.ndarray:
    """Feature matrix (len(archs) x feature_size) of 0/1 float32."""
    ks, es, ds, ws, rs = (space.kernel_sizes, space.expand_ratios, space.depths, space.width_mults,
                          space.resolutions)
    n_st, dmax = len(space.stages), space.max_depth
    nk, ne = len(ks), len(es)
    block = nk + ne
    o_stage = n_st * dmax * block
    o_res = o_stage + n_st * (len(ds) + len(ws))
    x = np.zeros((len(archs), feature_size(space)), dtype=np.float32)
    w_index = {round(w, 4): i for i, w in enumerate(ws)}
    for row, arch in enumerate(archs):
        for s in range(n_st):
            for b, (k, e) in enumerate(zip(arch.kernels[s], arch.expands[s])):
                base = (s * dmax + b) * block
                x[row, base + ks.index(k)] = 1.0
                x[row, base + nk + es.index(e)] = 1.0
            base = o_stage + s * (len(ds) + len(ws))
            x[row, base + ds.index(len(arch.kernels[s]))] = 1.0
            x[row, base + len(ds) + w_index[round(arch.widths[s], 4)]] = 1.0
        x[row, o_res + rs.index(arch.resolution)] = 1.0
    return x
