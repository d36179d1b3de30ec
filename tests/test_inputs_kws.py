"""The supernet on non-square inputs (spectrograms): SearchSpace.input_width, layers(), extraction, cost
model and the int8 export of a 49x40 subnet, whose graph follows layers() op for op."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.data.dataset import Dataset
from pipeline.errors import ConfigError
from pipeline.supernet import SearchSpace, build_supernet, layers
from pipeline.supernet.space import spectrogram_fields


def _space(**kw) -> SearchSpace:
    base = dict(in_channels=1, num_classes=6, stem_channels=8, kernel_sizes=(3, 5), expand_ratios=(2, 3),
                depths=(1, 2), width_mults=(0.5, 1.0),
                stages=({"max_out_channels": 16, "stride": 2}, {"max_out_channels": 24, "stride": 2}))
    return SearchSpace(**{**base, **kw})


def test_layers_follow_the_fixed_width_and_elastic_height():
    space = _space(resolutions=(41, 49), input_width=40)
    big, small = space.largest(), space.smallest()
    assert layers(space, big)[0].in_shape == (49, 40, 1) and layers(space, small)[0].in_shape == (41, 40, 1)
    # stride-2 stem then two stride-2 stages, TF SAME: ceil division on each axis independently
    assert layers(space, big)[-2].in_shape[:2] == (7, 5)
    assert _space(resolutions=(24,)).input_size(24) == (24, 24)  # square stays the default
    d = space.to_dict()
    assert d["input_width"] == 40 and SearchSpace.from_dict(d) == space
    with pytest.raises(ConfigError, match="input_width"):
        _space(input_width=3)


def test_extracted_subnet_equals_the_supernet_on_a_spectrogram():
    space = _space(**spectrogram_fields(49, 40))
    net = build_supernet(space, seed=0).eval()
    x = torch.rand(2, 1, 49, 40, generator=torch.Generator().manual_seed(0))
    rng = np.random.default_rng(0)
    for arch in (space.largest(), space.smallest(), space.sample(rng)):
        net.set_active(arch)
        with torch.no_grad():
            a = net(x)
            b = net.extract(arch).eval()(x)
        assert a.shape == (2, 6) and torch.allclose(a, b, atol=1e-5), str(arch)


def test_cost_model_counts_the_non_square_map():
    from pipeline.costs.estimate import estimate
    from pipeline.boards import load_board

    space = _space(**spectrogram_fields(49, 40))
    arch = space.largest()
    costs = estimate(space, arch, load_board("qemu-mps2-an386"))
    stem = layers(space, arch)[0]
    assert stem.out_shape == (25, 20, 8)
    assert costs.macs == sum(layer.macs for layer in layers(space, arch))


def test_spectrogram_splits_resize_time_only_and_the_default_space_fits():
    from pipeline.train.loop import resolve_space

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(40, 49, 40, 1), dtype=np.uint8)
    y = np.arange(40) % 4
    ds = Dataset("spec", "test", x, y, ["a", "b", "c", "d"], seed=0, features={"channels": 40})
    assert ds.split("test", 41).x.shape[1:] == (41, 40, 1)
    assert np.array_equal(ds.split("test", 49).x, x[ds.split("test").indices])
    space = resolve_space(None, ds)
    assert space.resolutions == (49,) and space.input_width == 40 and space.num_classes == 4
    images = Dataset("img", "test", x, y, ["a", "b", "c", "d"], seed=0)
    assert images.split("test", 24).x.shape[1:] == (24, 24, 1)  # images are still squared


@pytest.mark.slow
def test_non_square_subnet_exports_to_int8_with_a_49x40_input(tmp_path):
    from pipeline.export import export_int8
    from pipeline.tflite import inspect_tflite

    torch.set_num_threads(1)
    space = _space(**spectrogram_fields(49, 40))
    arch = space.smallest()
    net = build_supernet(space, seed=0)
    model = net.extract(arch).eval()
    calib = np.random.default_rng(0).integers(0, 256, size=(16, 49, 40, 1), dtype=np.uint8)
    res = export_int8(model, calib_x_uint8=calib, out_dir=tmp_path, num_calib=16)
    info = inspect_tflite(res.tflite_path)
    assert info.input.shape == (1, 49, 40, 1) and info.output.shape == (1, 6)
    assert "PAD" not in info.op_names and "TRANSPOSE" not in info.op_names
    net_layers = [l for l in layers(space, arch) if not (l.kind == "pool" and l.in_shape[:2] == (1, 1))]
    assert len(info.ops) == len(net_layers)
