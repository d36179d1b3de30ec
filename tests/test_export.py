"""Export stage: subnet -> ONNX -> onnx2tf -> full-int8 TFLite, crosschecked, arena measured.

Real parts throughout: the real converters, TFLite reference kernels and the TFLite Micro runtime.
Conversions take seconds each, so converted models are shared through module-scoped fixtures.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from pipeline.contract import InputContract
from pipeline.data import load_dataset
from pipeline.errors import AccuracyGateError, ExportError, UnsupportedOpError
from pipeline.export import (TFLM_INT8_OPS, check_tflm_int8, crosscheck, export_int8, export_subnet,
                             measure_arena, verify_contract)
from pipeline.export.arena import PROBE, _probe
from pipeline.export.compare import run_tflite_ref, run_tflm
from pipeline.tflite import ModelInfo, inspect_tflite
from pipeline.supernet import SearchSpace, SubnetArch, build_supernet, layers
from tiny_models import make_tiny_int8_tflite

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Before the module's shared fixtures too: two threads on this 2-core machine crawl."""
    torch.set_num_threads(1)


def _archs(space: SearchSpace) -> dict[str, SubnetArch]:
    """Kernel 7 at depth 2 everywhere at the largest resolution, and a random arch at the smallest."""
    assert 7 in space.kernel_sizes and 2 in space.depths, "the fixture space must offer kernel 7 and depth 2"
    n = len(space.stages)
    k7d2 = SubnetArch(max(space.resolutions), tuple(space.width_mults[i % len(space.width_mults)] for i in range(n)),
                      tuple((7, 7) for _ in range(n)),
                      tuple((space.expand_ratios[-1], space.expand_ratios[0]) for _ in range(n)))
    rng = np.random.default_rng(3)
    other = space.sample(rng, resolutions=(min(space.resolutions),))
    return {"k7_depth2": space.check_arch(k7d2), "sampled": space.check_arch(other)}


@pytest.fixture(scope="module")
def stage_runs(trained_supernet_dir, tmp_path_factory):
    """export_subnet on two archs of the shared trained supernet: {name: (arch, out_dir, report)}."""
    from pipeline.supernet import load_supernet

    torch.set_num_threads(1)
    space = load_supernet(trained_supernet_dir).space
    runs = {}
    for name, arch in _archs(space).items():
        out = tmp_path_factory.mktemp(f"export_{name}")
        lines = []
        report = export_subnet(trained_supernet_dir, str(arch), out, progress=lambda c, l: lines.append(c))
        assert lines == ["onnx", "ops", "crosscheck", "arena"]
        runs[name] = (arch, out, report)
    return runs


# -- the stage on the trained supernet -------------------------------------------------------------
@pytest.mark.slow
def test_exported_graph_follows_the_arch(stage_runs, trained_supernet_dir):
    from pipeline.supernet import load_supernet

    space = load_supernet(trained_supernet_dir).space
    for name, (arch, out, report) in stage_runs.items():
        info = inspect_tflite(out / "model_int8.tflite")
        names = info.op_names
        assert "PAD" not in names and "TRANSPOSE" not in names, name
        assert set(names) <= TFLM_INT8_OPS, name
        assert info.input.shape == (1, arch.resolution, arch.resolution, space.in_channels)
        assert info.input.dtype == info.output.dtype == "INT8"
        # One TFLite op per layer of the static network: BN, ReLU6 and TF-SAME padding all folded.
        # (A global mean over a 1x1 map is the identity: the converter drops it.)
        net = [l for l in layers(space, arch) if not (l.kind == "pool" and l.in_shape[:2] == (1, 1))]
        want = [{"conv": "CONV_2D", "pw_expand": "CONV_2D", "pw_project": "CONV_2D", "dw": "DEPTHWISE_CONV_2D",
                 "add": "ADD", "pool": "MEAN", "fc": "FULLY_CONNECTED"}[l.kind] for l in net]
        assert names == want, name
        for op, layer in zip(info.ops, net):
            out_t = info.tensors[op.outputs[0]]
            assert out_t.shape[-1] == layer.out_shape[2]
            if layer.kind in ("conv", "dw"):
                assert op.options["strideH"] == layer.stride and op.options["padding"] == "SAME"
                weights = info.tensors[op.inputs[1]]
                assert weights.shape[1:3] == (layer.kernel, layer.kernel)
                assert weights.per_channel and len(weights.scales) == layer.out_shape[2]
        assert report["model_bytes"] == info.model_bytes == (out / "model_int8.tflite").stat().st_size
        assert (out / "model.onnx").stat().st_size > 0


@pytest.mark.slow
def test_tflm_bit_exact_and_accuracy_within_gate(stage_runs):
    for name, (arch, out, report) in stage_runs.items():
        cc = report["crosscheck"]
        assert cc["mismatches"] == 0 and cc["bit_exact_samples"] == cc["num_samples"] == report["data"]["test_split"]
        assert report["passed"] and report["accuracy"]["drop_points"] <= 2.0, (name, report["accuracy"])
        # Well above chance (10 %), so a 2-point gate is meaningful for the tiny fixture supernet.
        assert report["accuracy"]["float"] > 0.3 and report["accuracy"]["argmax_agreement"] >= 0.85, name
        # Beyond the test images: random int8 inputs exercise saturation paths of every kernel.
        data = (out / "model_int8.tflite").read_bytes()
        shape = inspect_tflite(data).input.shape[1:]
        x = np.random.default_rng(1).integers(-128, 128, size=(16, *shape), dtype=np.int8)
        np.testing.assert_array_equal(run_tflm(data, x, 1 << 21), run_tflite_ref(data, x))


@pytest.mark.slow
def test_arena_minimum_is_exact(stage_runs):
    _, out, report = stage_runs["k7_depth2"]
    a = report["arena"]
    model = out / "model_int8.tflite"
    x = np.zeros((1, *inspect_tflite(model).input.shape[1:]), np.int8)
    with_inputs = out / "probe_inputs.npy"
    np.save(with_inputs, x)
    assert _probe(model, a["min_arena_bytes"], with_inputs, 120)[0]
    assert not _probe(model, a["min_arena_bytes"] - 16, with_inputs, 120)[0]
    assert not _probe(model, a["min_arena_bytes"] - 1, with_inputs, 120)[0]
    assert a["head_bytes"] + a["tail_bytes"] == a["recorded_total_bytes"]
    # The planner can not beat the analytic floor; it should come close to it.
    assert a["floor_bytes"] <= a["head_bytes"] <= 1.15 * a["floor_bytes"]
    assert a["tail_bytes"] > 0 and a["breakdown"]


@pytest.mark.slow
def test_report_records_contract_ops_and_versions(stage_runs):
    arch, out, report = stage_runs["sampled"]
    on_disk = json.loads((out / "export_report.json").read_text())
    assert on_disk.pop("artifact") == {"name": "export report", "version": 1}  # pipeline/artifacts.py's stamp
    assert on_disk == json.loads(json.dumps(report))
    assert on_disk["arch"]["id"] == str(arch)
    assert set(on_disk["tool_versions"]) >= {"torch", "onnx", "onnx2tf", "tensorflow-cpu", "tflite-micro"}
    ops = on_disk["export"]["model"]["ops"]
    assert ops and all(o["inputs"][0]["shape"] and o["outputs"][0]["shape"] for o in ops)
    contract = InputContract.from_dict(on_disk["input_contract"])
    info = inspect_tflite(out / "model_int8.tflite")
    assert (contract.input_scale, contract.input_zero_point) == (info.input.scales[0], info.input.zero_points[0])
    assert contract.shape == info.input.shape
    assert on_disk["export"]["input_contract_check"]["tflite_quantize_equal"]


# -- input contract --------------------------------------------------------------------------------
def test_contract_lut_matches_tflite_quantize_for_the_exported_scale():
    # The scale int8 exports of pixel/255 inputs get: 1/255 (float32), zero point -128.
    c = InputContract(8, 8, 1, float(np.float32(1 / 255)), -128)
    assert verify_contract(c)["tflm_quantize_equal"]
    assert InputContract.from_dict(json.loads(json.dumps(c.to_dict()))) == c


def test_contract_lut_matches_tflite_quantize_on_ties():
    verify_contract(InputContract(8, 8, 1, float(np.float32(2 / 255)), 0))


# -- model inspection and op policy ----------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory):
    return make_tiny_int8_tflite(tmp_path_factory.mktemp("tiny") / "tiny.tflite")


def test_inspect_tiny_model(tiny_tflite):
    path, contract = tiny_tflite
    info = inspect_tflite(path)
    assert isinstance(info, ModelInfo)
    assert info.op_names == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED"]
    conv = info.ops[0]
    assert conv.options["padding"] == "SAME" and conv.options["strideW"] == 1
    assert conv.options["fusedActivationFunction"] == "RELU6"
    assert info.tensors[conv.inputs[1]].per_channel
    assert info.input.shape == (1, 8, 8, 1) and info.model_bytes == path.stat().st_size
    # Floor by hand: during the 1x1 conv the residual x (8x8x8), the depthwise output and the conv
    # output (8x8x8 each) are all live: 3 * 512 B.
    from pipeline.costs import activation_floor_bytes, graph_from_tflite, live_activation_bytes
    assert live_activation_bytes(graph_from_tflite(info))[:4] == [64 + 512, 1024, 1536, 1536]
    assert activation_floor_bytes(graph_from_tflite(info)) == 1536
    assert inspect_tflite(path.read_bytes()) == info
    check_tflm_int8(info, height=8, width=8, channels=1)
    with pytest.raises(ExportError, match="NHWC"):
        check_tflm_int8(info, height=16, width=16, channels=1)


def test_inspect_rejects_non_tflite(tmp_path):
    from pipeline.errors import ArtifactError

    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(ArtifactError, match="TFL3"):
        inspect_tflite(bad)


def test_flex_op_is_refused_by_name(tmp_path):
    """A TensorFlow op with no TFLite builtin becomes a Flex custom op, which TFLM cannot run."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    fn = tf.function(lambda x: tf.math.erf(x) * 2.0, input_signature=[tf.TensorSpec([1, 4, 4, 1], tf.float32)])
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()])
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    info = inspect_tflite(conv.convert())
    assert any(op.is_custom and op.name == "FlexErf" for op in info.ops)
    with pytest.raises(UnsupportedOpError, match=r"op #\d+ FlexErf: a TensorFlow \(Flex\) op"):
        check_tflm_int8(info)


def test_float_compute_is_refused():
    """An int8 conversion wraps SIN (no int8 kernel) in DEQUANTIZE/QUANTIZE instead of failing; and a
    float model runs every op in float32. Both are refused, naming the ops."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    def convert(fn, int8: bool) -> bytes:
        f = tf.function(fn, input_signature=[tf.TensorSpec([1, 4, 4, 1], tf.float32)])
        conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()])
        if int8:
            from pipeline.tflite.converter import FULL_INT8
            rng = np.random.default_rng(0)
            FULL_INT8.apply(conv, lambda: ([rng.random((1, 4, 4, 1), dtype=np.float32)] for _ in range(8)))
        return conv.convert()

    sin = inspect_tflite(convert(lambda x: tf.math.sin(x), int8=True))
    assert sin.op_names == ["DEQUANTIZE", "SIN", "QUANTIZE"]
    with pytest.raises(UnsupportedOpError, match=r"\(SIN\):\n  op #1 SIN: TFLite Micro has no int8 kernel"):
        check_tflm_int8(sin)
    w = tf.constant(np.full((3, 3, 1, 2), 0.1, np.float32))
    flt = inspect_tflite(convert(lambda x: tf.nn.relu(tf.nn.conv2d(x, w, 1, "SAME")), int8=False))
    assert flt.op_names == ["CONV_2D"]
    with pytest.raises(UnsupportedOpError, match=r"op #0 CONV_2D: computes in FLOAT32"):
        check_tflm_int8(flt)


class _Prod(nn.Module):
    """torch.prod over channels: TFLite has an int8 REDUCE_PROD kernel, TensorFlow Lite Micro has none."""

    def forward(self, x):
        return x.prod(dim=1, keepdim=True) + x


def _small_net(middle: nn.Module, first_stride: int = 1) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, first_stride, 1), middle, nn.Conv2d(8, 8, 3, 1, 1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()


def _digits_calib(resolution: int = 8) -> np.ndarray:
    return load_dataset("builtin:digits").split("calibration", resolution).x


@pytest.mark.slow
def test_op_tflm_lacks_is_refused_with_its_name(tmp_path):
    with pytest.raises(UnsupportedOpError) as e:
        export_int8(_small_net(_Prod()), calib_x_uint8=_digits_calib(), out_dir=tmp_path, num_calib=32)
    msg = str(e.value)
    assert "REDUCE_PROD" in msg and "op #1" in msg and "reduce_prod" in msg  # op, index, tensor name
    assert not (tmp_path / "model_int8.tflite").exists()
    # The refusal is not arbitrary: TFLite Micro itself cannot resolve the op.
    rejected = tmp_path / "model_int8.rejected.tflite"
    np.save(tmp_path / "x.npy", np.zeros((1, 8, 8, 1), np.int8))
    r = subprocess.run([sys.executable, str(PROBE), str(rejected), str(1 << 20), str(tmp_path / "x.npy")],
                       capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode != 0 and "Didn't find op for builtin opcode 'REDUCE_PROD'" in r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("case, op", [("gelu", "Erf"), ("torch_padding", "PAD")])
def test_ops_without_tflm_int8_path_are_refused(tmp_path, case, op):
    # GELU lowers to Erf, which has no int8 builtin; a stride-2 conv with PyTorch's symmetric padding
    # leaves an explicit PAD (the subnet pads TF-SAME precisely to avoid it).
    net = _small_net(nn.GELU()) if case == "gelu" else _small_net(nn.Identity(), first_stride=2)
    with pytest.raises(UnsupportedOpError, match=op):
        export_int8(net, calib_x_uint8=_digits_calib(), out_dir=tmp_path, num_calib=32)


# -- a 3-channel model, offline --------------------------------------------------------------------
@pytest.fixture(scope="module")
def rgb_model():
    """A static subnet (from the supernet's extract) trained briefly on builtin:digits-rgb."""
    torch.manual_seed(0)
    space = SearchSpace(in_channels=3, resolutions=(16,))
    arch = space.sample(np.random.default_rng(5), depths=(2,), kernel_sizes=(3, 5), width_mults=(0.5, 0.75))
    model = build_supernet(space).extract(arch).train()
    ds = load_dataset("builtin:digits-rgb")
    tr = ds.split("train", 16)
    x = torch.from_numpy(tr.x).permute(0, 3, 1, 2).float() / 255.0
    y = torch.from_numpy(tr.y)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(12):
        for idx in torch.randperm(len(y), generator=g).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval(), arch, ds


@pytest.fixture(scope="module")
def rgb_export(rgb_model, tmp_path_factory):
    """The rgb model exported offline: any download attempt (onnx2tf fetches a calibration sample for
    3-channel inputs unless it finds one in its working directory) hits a closed port and fails."""
    model, arch, ds = rgb_model
    cwd = tmp_path_factory.mktemp("rgb_cwd")
    with pytest.MonkeyPatch.context() as mp:
        for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            mp.setenv(var, "http://127.0.0.1:9")
        mp.chdir(cwd)
        res = export_int8(model, calib_x_uint8=ds.split("calibration", 16).x, out_dir=cwd / "out")
    return res, cwd


@pytest.mark.slow
def test_three_channel_export_offline(rgb_model, rgb_export):
    model, arch, ds = rgb_model
    res, cwd = rgb_export
    assert res.model.input.shape == (1, 16, 16, 3)
    assert "PAD" not in res.model.op_names and "TRANSPOSE" not in res.model.op_names
    assert not list(cwd.glob("calibration_image_sample_data*"))  # nothing left in the caller's cwd
    test = ds.split("test", 16)
    cc = crosscheck(res.tflite_path, model, test.x, test.y, res.contract)
    assert cc.bit_exact and cc.drop_points <= 2.0 and cc.float_accuracy > 0.6, cc.summary()
    arena = measure_arena(res.tflite_path)
    assert arena.floor_bytes <= arena.head_bytes and arena.min_arena_bytes >= arena.recorded_total_bytes - 16


@pytest.mark.slow
def test_export_is_deterministic(rgb_model, rgb_export, tmp_path):
    model, arch, ds = rgb_model
    first, _ = rgb_export
    again = export_int8(model, calib_x_uint8=ds.split("calibration", 16).x, out_dir=tmp_path)
    assert again.calib_indices == first.calib_indices
    assert again.tflite_path.read_bytes() == first.tflite_path.read_bytes()


def test_calibration_subset_is_seeded():
    from pipeline.export.convert import pick_calibration

    x = np.arange(300 * 4, dtype=np.uint8).reshape(300, 2, 2, 1)
    a, ia = pick_calibration(x, 50, seed=3)
    b, ib = pick_calibration(x, 50, seed=3)
    assert (ia == ib).all() and len(ia) == 50 and (np.diff(ia) > 0).all() and (a == x[ia]).all()
    assert not (pick_calibration(x, 50, seed=4)[1] == ia).all()
    assert len(pick_calibration(x, 500, seed=3)[1]) == 300  # fewer images than asked: all of them
    with pytest.raises(ExportError):
        pick_calibration(x[:0], 50, seed=0)


# -- the accuracy gate -----------------------------------------------------------------------------
@pytest.mark.slow
def test_broken_calibration_trips_the_gate_and_the_cli_exits_nonzero(trained_supernet_dir, tmp_path):
    from pipeline.supernet import load_supernet
    from pipeline.train import calibrated_subnet

    ds = load_dataset("builtin:digits")
    x = ds.x.copy()
    calib_idx = ds.split("calibration").indices
    x[calib_idx] = 128  # every calibration image is flat grey: the int8 ranges are calibrated on nothing
    npz = tmp_path / "broken.npz"
    np.savez(npz, x=x, y=ds.y)
    broken = load_dataset(f"npz:{npz}")
    assert (broken.split("test").x == ds.split("test").x).all()  # same splits, only calibration changed

    space = load_supernet(trained_supernet_dir).space
    arch = space.largest()
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "export", "--supernet", str(trained_supernet_dir),
                        "--arch", str(arch), "--out", str(out), "--data", f"npz:{npz}"],
                       capture_output=True, text=True, env=ENV, cwd=REPO, timeout=600)
    assert r.returncode == AccuracyGateError.exit_code, r.stdout + r.stderr
    assert "error: int8 accuracy drop" in r.stderr and "exceeds the gate of 2" in r.stderr
    assert [line.split(":")[0] for line in r.stdout.splitlines()[:2]] == ["onnx parity", "ops"]
    report = json.loads((out / "export_report.json").read_text())
    assert report["passed"] is False and report["accuracy"]["drop_points"] > 2.0
    assert report["crosscheck"]["mismatches"] == 0  # broken calibration, yet TFLM still matches TFLite

    model = calibrated_subnet(load_supernet(trained_supernet_dir), arch, broken)
    test = broken.split("test", arch.resolution)
    contract = InputContract.from_dict(report["input_contract"])
    with pytest.raises(AccuracyGateError, match=r"drop .* exceeds the gate"):
        crosscheck(out / "model_int8.tflite", model, test.x, test.y, contract)


def test_parse_arch_accepts_id_json_and_files(tmp_path):
    from pipeline.errors import ConfigError
    from pipeline.export import parse_arch

    space = SearchSpace()
    arch = space.sample(np.random.default_rng(0))
    assert parse_arch(str(arch), space) == arch
    assert parse_arch(json.dumps(arch.to_dict()), space) == arch
    (tmp_path / "search.json").write_text(json.dumps({"board": "x", "arch": arch.to_dict()}))
    assert parse_arch(tmp_path / "search.json", space) == arch
    with pytest.raises(ConfigError, match="resolution"):
        parse_arch("r999" + str(arch)[str(arch).index("-"):], space)


def test_cli_refuses_bad_arguments(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "export", "--supernet", str(tmp_path / "none"),
                        "--arch", "r24-w50k3e4k5e6", "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, env=ENV, cwd=REPO, timeout=300)
    assert r.returncode == 2 and "supernet directory not found" in r.stderr  # a path given on the command line: usage


def test_arena_probe_survives_a_too_small_arena(tiny_tflite, tmp_path):
    path, _ = tiny_tflite
    np.save(tmp_path / "x.npy", np.zeros((1, 8, 8, 1), np.int8))
    ran, detail, _ = _probe(path, 64, tmp_path / "x.npy", 60)
    assert not ran and detail
    report = measure_arena(path, seed=0)
    assert report.floor_bytes == 1536 <= report.head_bytes
    assert report.probes[-1].arena_bytes in (report.min_arena_bytes, report.min_arena_bytes - 1)
    assert any(p.arena_bytes == report.min_arena_bytes - 1 and not p.ok for p in report.probes)
