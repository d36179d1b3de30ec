"""`ofa-mcu inspect` on models built here: an int8 model, an int16-input (16x8) model, an unsupported op.

The predicted 64-bit arena is checked against the minimum probed in the real TFLite Micro runtime
(never under, within 1 %), and the latency per op is the same function for an arch's layers and for
the .tflite of that arch.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from firmware_helpers import build_tflite  # noqa: E402
from tiny_models import make_tiny_int8_tflite  # noqa: E402

from pipeline.boards import load_board  # noqa: E402
from pipeline.cli import main  # noqa: E402
from pipeline.costs import estimate, firmware_arena_bytes, inspect_model, predict_arena  # noqa: E402
from pipeline.costs.flash import APP_CODE_BYTES  # noqa: E402


def int16x8_tflite(path: Path, seed: int = 0) -> Path:
    """The tiny model of tiny_models with int16 activations and input/output (TFLite's 16x8 mode)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((8, 8, 1), batch_size=1)
    x = tf.keras.layers.Conv2D(8, 3, padding="same", activation=tf.nn.relu6)(inp)
    y = tf.keras.layers.DepthwiseConv2D(3, padding="same", activation=tf.nn.relu6)(x)
    y = tf.keras.layers.Conv2D(8, 1)(y)
    x = tf.keras.layers.Add()([x, y])
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    out = tf.keras.layers.Dense(10)(x)
    model = tf.keras.Model(inp, out)
    calib = np.random.default_rng(seed).random((16, 8, 8, 1)).astype(np.float32)
    from pipeline.tflite.converter import QuantizationConfig
    conv = QuantizationConfig(activations="int16").apply(tf.lite.TFLiteConverter.from_keras_model(model),
                                                         lambda: ([c[None]] for c in calib))
    path.write_bytes(conv.convert())
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("inspect")
    int8, _ = make_tiny_int8_tflite(d / "int8.tflite")
    return {"int8": int8, "int16": int16x8_tflite(d / "int16.tflite")}


def test_inspect_json_is_consistent(models, capsys):
    for name, path in models.items():
        assert main(["inspect", str(path), "--board", "qemu-mps2-an386", "--json"]) == 0
        d = json.loads(capsys.readouterr().out)
        assert d["input"]["dtype"] == ("INT16" if name == "int16" else "INT8")
        assert d["arena_cortex_m_bytes"] < d["firmware_arena_bytes"] <= d["arena_cortex_m_bytes"] + 256 + 16
        assert d["flash_bytes"] == path.stat().st_size + d["runtime_code_bytes"] + APP_CODE_BYTES
        assert d["fits"] is True and d["sram_margin_bytes"] == d["usable_sram_bytes"] - d["sram_bytes"]
        assert d["latency_ms"] > 0 and d["macs"] > 0
    assert main(["inspect", str(models["int8"]), "--board", "nucleo-l4r5zi", "--per-op"]) == 0
    out = capsys.readouterr().out
    assert "fits: yes" in out and "DEPTHWISE_CONV_2D" in out


def test_unsupported_op_is_named_exit_6(tmp_path, capsys):
    model = tmp_path / "tanh.tflite"
    model.write_bytes(build_tflite([("TANH", [0], [1], {})], [{"shape": [1, 4]}, {"shape": [1, 4]}], [0], [1]))
    assert main(["inspect", str(model), "--board", "nucleo-f746zg"]) == 6
    err = capsys.readouterr().err
    assert "TANH" in err and "Traceback" not in err
    # A float model is named as such (the cost models cover TFLite Micro's integer kernels).
    model = tmp_path / "float.tflite"
    model.write_bytes(build_tflite([("RESHAPE", [0], [1], {})], [{"shape": [1, 4], "type": "FLOAT32"},
                                                                 {"shape": [4], "type": "FLOAT32"}], [0], [1]))
    assert main(["inspect", str(model), "--board", "nucleo-f746zg"]) == 6
    assert "FLOAT32" in capsys.readouterr().err


@pytest.mark.slow
def test_predicted_arena_never_under_the_probed_minimum(models):
    from pipeline.export import measure_arena
    for name, path in models.items():
        measured = measure_arena(path)          # the real runtime, bisected to the byte (int16 inputs too)
        pred = predict_arena(path, "cortex-m4")
        assert measured.min_arena_bytes <= pred.host_bytes <= 1.01 * measured.min_arena_bytes, (name, pred)
        assert pred.host.head == measured.head_bytes, name       # the greedy plan itself is exact
        # 32-bit: smaller bookkeeping (4-byte pointers), same activations, plus CMSIS-NN scratch.
        assert pred.cortex_m.tail < pred.host.tail
        assert firmware_arena_bytes(pred.cortex_m_bytes) >= pred.cortex_m_bytes


@pytest.mark.slow
def test_latency_per_op_is_the_same_for_an_arch_and_its_tflite(tmp_path):
    """Same graph, same function: exact for MAC ops (identical shapes, hence identical MACs); the
    only difference allowed is float rounding in the sum (1e-9 relative)."""
    from pipeline.costs.graph import graph_from_tflite, tflite_graph
    from pipeline.costs.latency import default_latency_model, graph_cycles
    from pipeline.costs.reference import reference_tflite
    from pipeline.supernet.space import SearchSpace, SubnetArch
    from pipeline.tflite import inspect_tflite

    space = SearchSpace(resolutions=(16, 24), stem_channels=8,
                        stages=({"max_out_channels": 16, "stride": 2}, {"max_out_channels": 24, "stride": 2},
                                {"max_out_channels": 32, "stride": 1}),
                        depths=(1, 2, 3), width_mults=(0.5, 1.0))
    arch = SubnetArch.parse("r24-w50k7e6-w100k5e3k3e6-w50k7e4k3e3k5e6")
    path = reference_tflite(space, arch, tmp_path / "arch.tflite")
    board = load_board("nucleo-l4r5zi")
    lat = default_latency_model(board.core)
    from_arch = graph_cycles(tflite_graph(space, arch), lat)
    from_file = graph_cycles(graph_from_tflite(inspect_tflite(path)), lat)
    assert from_arch == from_file
    est = estimate(space, arch, board).latency_ms
    assert inspect_model(path, board).latency_ms == pytest.approx(est, rel=1e-9)
