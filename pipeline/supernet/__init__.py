"""The OFA supernet: search space, dynamic layers, channel sorting, extraction of static subnets.

    supernet = build_supernet(SearchSpace())
    arch = supernet.sample(np.random.default_rng(0))      # also sets it active
    logits = supernet(x)                                  # x: NCHW float32 = pixels / 255
    static = supernet.extract(arch)                       # standard layers only, eval mode
"""
from __future__ import annotations

from .model import OFASupernet, build_supernet, extract
from .sorting import sort_expand_channels, sort_width_channels
from .space import SearchSpace, StageSpec, SubnetArch, layers, macs, params
from .static import STANDARD_LAYERS, Residual, build_static
from .store import load_supernet, save_supernet

__all__ = ["OFASupernet", "build_supernet", "extract", "sort_expand_channels", "sort_width_channels",
           "SearchSpace", "StageSpec", "SubnetArch", "layers", "macs", "params", "STANDARD_LAYERS",
           "Residual", "build_static", "load_supernet", "save_supernet"]
