"""The supernet: extraction parity, channel sorting, reachability, arch validation, save/load."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from pipeline.errors import ArtifactError, ConfigError
from pipeline.supernet import (STANDARD_LAYERS, OFASupernet, Residual, SearchSpace, StageSpec, SubnetArch,
                               build_supernet, layers, load_supernet, save_supernet, sort_expand_channels,
                               sort_width_channels)
from pipeline.supernet.ops import DynamicBatchNorm2d, DynamicDepthwiseConv2d

torch.set_num_threads(1)


def randomize(supernet: OFASupernet, seed: int = 0) -> OFASupernet:
    """Random BN statistics/affine and perturbed kernel transforms, so parity checks cannot pass by
    accident of identity BN or identity transforms."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in supernet.modules():
            if isinstance(m, DynamicBatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)
            elif isinstance(m, DynamicDepthwiseConv2d):
                for p in m.transforms.values():
                    p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return supernet.eval()


def test_extract_equals_supernet_for_50_archs_across_all_resolutions(tiny_space):
    sn = randomize(build_supernet(tiny_space, seed=1))
    rng = np.random.default_rng(0)
    g = torch.Generator().manual_seed(0)
    archs = [tiny_space.largest(), tiny_space.smallest()]
    archs += [tiny_space.sample(rng, resolutions=(tiny_space.resolutions[i % 2],)) for i in range(48)]
    assert {a.resolution for a in archs} == set(tiny_space.resolutions)
    worst = 0.0
    for arch in archs:
        x = torch.rand(4, tiny_space.in_channels, arch.resolution, arch.resolution, generator=g)
        sn.set_active(arch)
        with torch.no_grad():
            want = sn(x)
            got = sn.extract(arch)(x)
        assert got.shape == (4, tiny_space.num_classes)
        worst = max(worst, float((want - got).abs().max()))
    assert worst <= 1e-5


def test_extract_equals_supernet_on_default_space_with_odd_feature_sizes():
    space = SearchSpace()
    sn = randomize(build_supernet(space, seed=2))
    rng = np.random.default_rng(5)
    g = torch.Generator().manual_seed(1)
    for res in space.resolutions:  # 20 and 28 give odd feature maps: asymmetric TF-SAME pads
        arch = space.sample(rng, resolutions=(res,))
        sn.set_active(arch)
        x = torch.rand(2, 1, res, res, generator=g)
        with torch.no_grad():
            assert float((sn(x) - sn.extract(arch)(x)).abs().max()) <= 1e-5


def test_extract_is_standard_layers_following_layers(tiny_space):
    sn = build_supernet(tiny_space)
    rng = np.random.default_rng(3)
    for arch in [tiny_space.largest(), tiny_space.smallest(), *(tiny_space.sample(rng) for _ in range(8))]:
        model = sn.extract(arch)
        assert not model.training
        for m in model.modules():
            assert isinstance(m, (*STANDARD_LAYERS, Residual)), type(m)
        ops = layers(tiny_space, arch)
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        conv_ops = [op for op in ops if op.kind in ("conv", "pw_expand", "dw", "pw_project")]
        assert len(convs) == len(conv_ops)
        pads = [m for m in model.modules() if isinstance(m, nn.ZeroPad2d)]
        strided = [op for op in conv_ops if op.stride == 2 and any(op.pad)]
        assert len(pads) == len(strided)
        for pad, op in zip(pads, strided):
            top, bottom, left, right = op.pad
            assert tuple(pad.padding) == (left, right, top, bottom)
        for conv, op in zip(convs, conv_ops):
            assert conv.in_channels == op.in_shape[2] and conv.out_channels == op.out_shape[2]
            assert conv.kernel_size == (op.kernel, op.kernel) and conv.stride == (op.stride, op.stride)
            assert conv.padding == ((op.kernel // 2,) * 2 if op.stride == 1 else (0, 0))
            assert conv.groups == (op.in_shape[2] if op.kind == "dw" else 1)
        assert sum(isinstance(m, Residual) for m in model.modules()) == sum(op.kind == "add" for op in ops)
        # Activation shapes follow layers(): check every conv's output with hooks.
        seen = []
        hooks = [c.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[1:]))) for c in convs]
        with torch.no_grad():
            model(torch.zeros(1, tiny_space.in_channels, arch.resolution, arch.resolution))
        for h in hooks:
            h.remove()
        assert seen == [(op.out_shape[2], op.out_shape[0], op.out_shape[1]) for op in conv_ops]


@pytest.mark.parametrize("stages", [
    (StageSpec(16, 2), StageSpec(24, 2), StageSpec(32, 1)),
    # Equal widths with stride 1: the stage boundary has a residual add in the full net.
    (StageSpec(16, 2), StageSpec(16, 1), StageSpec(24, 2)),
])
def test_channel_sorting_keeps_the_full_net_and_orders_by_importance(stages):
    space = SearchSpace(resolutions=(16,), stem_channels=8, stages=stages, depths=(1, 2))
    sn = randomize(build_supernet(space, seed=4))
    sn.set_active(space.largest())
    x = torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before_eval = sn(x)
        sn.train()
        before_train = sn(x)
        sort_width_channels(sn)
        sort_expand_channels(sn)
        after_train = sn(x)
        sn.eval()
        after_eval = sn(x)
    assert float((before_eval - after_eval).abs().max()) <= 1e-5
    assert float((before_train - after_train).abs().max()) <= 1e-5
    for blocks in sn.stages:
        for blk in blocks:
            imp = blk.project.weight.abs().sum(dim=(0, 2, 3))
            assert torch.all(imp[:-1] >= imp[1:])
    # The last stage's channels are read by the classifier and its later blocks' expand convs.
    last = sn.classifier.weight.abs().sum(0).double()
    for blk in list(sn.stages[-1])[1:]:
        last += blk.expand.weight.abs().sum(dim=(0, 2, 3)).double()
    assert torch.all(last[:-1] >= last[1:])


def test_sorting_changes_subnets_towards_important_channels():
    space = SearchSpace(resolutions=(16,), stem_channels=8,
                        stages=(StageSpec(16, 2), StageSpec(24, 2)), depths=(1,))
    sn = randomize(build_supernet(space, seed=7))
    blk = sn.stages[0][0]
    imp_before = blk.project.weight.abs().sum(dim=(0, 2, 3))
    sort_expand_channels(sn)
    imp_after = blk.project.weight.abs().sum(dim=(0, 2, 3))
    assert torch.allclose(torch.sort(imp_before, descending=True).values, imp_after)
    assert not torch.equal(imp_before, imp_after)


def test_every_choice_is_reachable_and_restrictions_hold(tiny_space):
    sn = build_supernet(tiny_space)
    rng = np.random.default_rng(0)
    seen = {"resolutions": set(), "kernel_sizes": set(), "expand_ratios": set(), "depths": set(),
            "width_mults": set()}
    for _ in range(300):
        a = sn.sample(rng)
        assert sn.active == a
        seen["resolutions"].add(a.resolution)
        seen["width_mults"].update(a.widths)
        seen["depths"].update(a.depths)
        seen["kernel_sizes"].update(k for s in a.kernels for k in s)
        seen["expand_ratios"].update(e for s in a.expands for e in s)
    for dim, values in seen.items():
        assert values == set(getattr(tiny_space, dim)), dim
    for _ in range(50):
        a = sn.sample(rng, kernel_sizes=(5,), width_mults=(0.75, 1.0))
        assert {k for s in a.kernels for k in s} == {5} and set(a.widths) <= {0.75, 1.0}


@pytest.mark.parametrize("mutate, field", [
    (lambda a: SubnetArch(17, a.widths, a.kernels, a.expands), "resolution"),
    (lambda a: SubnetArch(a.resolution, (0.6,) + a.widths[1:], a.kernels, a.expands), "widths[0]"),
    (lambda a: SubnetArch(a.resolution, a.widths, ((3, 9),) + a.kernels[1:], a.expands), "kernels[0][1]"),
    (lambda a: SubnetArch(a.resolution, a.widths, a.kernels, a.expands[:2] + ((3, 5),)), "expands[2][1]"),
    (lambda a: SubnetArch(a.resolution, a.widths, a.kernels[:2] + ((3, 3, 3),),
                          a.expands[:2] + ((3, 3, 3),)), "depths[2]"),
    (lambda a: SubnetArch(a.resolution, a.widths[:2], a.kernels[:2], a.expands[:2]), "widths"),
])
def test_invalid_arch_raises_config_error_naming_the_field(tiny_space, mutate, field):
    sn = build_supernet(tiny_space)
    bad = mutate(tiny_space.largest())
    for call in (sn.set_active, sn.extract):
        with pytest.raises(ConfigError) as e:
            call(bad)
        assert f"'{field}'" in e.value.message


def test_arch_id_and_json_round_trip(tiny_space):
    rng = np.random.default_rng(1)
    for _ in range(20):
        a = tiny_space.sample(rng)
        assert SubnetArch.parse(str(a)) == a
        assert SubnetArch.parse(json.dumps(a.to_dict())) == a
        assert hash(SubnetArch.parse(str(a))) == hash(a)


def test_kernel_transforms_are_identity_initialised_per_layer(tiny_space):
    sn = build_supernet(tiny_space)
    dw = sn.stages[0][0].dw
    assert {k: tuple(p.shape) for k, p in dw.transforms.items()} == {"7to5": (25, 25), "5to3": (9, 9)}
    w7 = dw.active_weight(4, 7)
    assert torch.equal(dw.active_weight(4, 5), w7[:, :, 1:6, 1:6])
    assert torch.equal(dw.active_weight(4, 3), w7[:, :, 2:5, 2:5])
    assert sn.stages[0][0].dw.transforms["7to5"] is not sn.stages[0][1].dw.transforms["7to5"]


def test_every_active_parameter_gets_a_gradient(tiny_space):
    sn = build_supernet(tiny_space).train()
    arch = SubnetArch.parse(str(tiny_space.largest()).replace("k7", "k3"))
    sn.set_active(arch)
    out = sn(torch.rand(4, 1, 24, 24))
    assert torch.isfinite(out).all()
    out.square().sum().backward()
    missing = [n for n, p in sn.named_parameters() if p.grad is None]
    assert missing == []  # kernel 3 runs through both transforms


def test_save_load_round_trip_and_errors(tiny_space, tmp_path):
    sn = randomize(build_supernet(tiny_space, seed=3))
    d = save_supernet(sn, tmp_path / "sn")
    loaded = load_supernet(d)
    assert loaded.space == tiny_space and not loaded.training
    x = torch.rand(2, 1, 16, 16)
    arch = tiny_space.sample(np.random.default_rng(0), resolutions=(16,))
    sn.set_active(arch)
    loaded.set_active(arch)
    with torch.no_grad():
        assert torch.equal(sn(x), loaded(x))
    with pytest.raises(ArtifactError, match="not found"):
        load_supernet(tmp_path / "missing")
    other = SearchSpace(resolutions=(16,), stem_channels=16)
    (d / "space.json").write_text(other.to_json())
    with pytest.raises(ArtifactError, match="does not match"):
        load_supernet(d)
    (d / "weights.pt").write_bytes(b"truncated")
    (d / "space.json").write_text(tiny_space.to_json())
    with pytest.raises(ArtifactError, match="cannot load"):
        load_supernet(d)
