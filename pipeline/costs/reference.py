"""A TFLite model of the graph an arch stands for, built directly with TensorFlow's converter.

Not the export path (pipeline.export goes PyTorch -> ONNX -> onnx2tf -> TFLite and is what ships):
this builds the same op graph (`pipeline.supernet.space.layers`: SAME-padded convs with ReLU6,
residual adds, global mean, dense) from Keras layers with seeded random weights and converts it to
full int8 in a few seconds, so the arena model can be checked against the TFLM runtime on many
archs without training or exporting (tests/test_costs_memory.py, benchmarks/bench_memory_model.py).
The conversion runs in a child process: TensorFlow loaded into the caller's process makes onnxsim (used
by the export in-process) crash with a segmentation fault, and tests share one process.
Tensor names differ from real exports, so file sizes are only checked on real exports. On 1x1 feature
maps TF's converter rewrites ops (a RESHAPE and a broadcast ADD, a MEAN over 1x1) that the real export
does not have: use archs whose last feature map is larger than 1x1.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .._io import write_bytes
from ..supernet.space import SearchSpace, SubnetArch, layers
from ..tflite.converter import FULL_INT8


def reference_tflites(space: SearchSpace, archs, out_dir: str | os.PathLike, *, seed: int = 0,
                      timeout_s: float = 1800.0) -> list[Path]:
    """Write `out_dir/<i>.tflite` for each arch (weights from seed + i) in one child process."""
    import json
    import subprocess
    import sys

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{i}.tflite" for i in range(len(archs))]
    job = {"space": space.to_dict(), "archs": [str(a) for a in archs], "paths": [str(p) for p in paths],
           "seed": seed}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                          os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-m", "pipeline.costs.reference"], input=json.dumps(job), text=True,
                       capture_output=True, env=env, timeout=timeout_s)
    if r.returncode != 0 or not all(p.exists() for p in paths):
        raise RuntimeError(f"reference conversion failed (exit {r.returncode}): {r.stderr[-2000:]}")
    return paths


def reference_tflite(space: SearchSpace, arch: SubnetArch, path: str | os.PathLike, *, seed: int = 0) -> Path:
    """Write one int8 .tflite with the graph of `arch` (random weights from `seed`); return its path."""
    import shutil
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        (p,) = reference_tflites(space, [arch], tmp, seed=seed)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, path)
    return Path(path)


def _convert(space: SearchSpace, arch: SubnetArch, path: str | os.PathLike, *, seed: int = 0,
             num_calib: int = 8) -> Path:
    """In the child process: build the Keras replica and convert it to full int8."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    net = layers(space, arch)
    inp = tf.keras.Input(net[0].in_shape, batch_size=1)
    outs = []
    x = inp
    for layer in net:
        act = tf.nn.relu6 if layer.relu6 else None
        if layer.kind in ("conv", "pw_expand", "pw_project"):
            x = tf.keras.layers.Conv2D(layer.out_shape[2], layer.kernel, layer.stride, padding="same",
                                       activation=act)(x)
        elif layer.kind == "dw":
            x = tf.keras.layers.DepthwiseConv2D(layer.kernel, layer.stride, padding="same", activation=act)(x)
        elif layer.kind == "add":
            other = inp if layer.residual_from == 0 else outs[layer.residual_from - 1]
            x = tf.keras.layers.Add()([other, x])
        elif layer.kind == "pool":
            x = tf.keras.layers.GlobalAveragePooling2D()(x)
        elif layer.kind == "fc":
            x = tf.keras.layers.Dense(layer.out_shape[2])(x)
        outs.append(x)
    model = tf.keras.Model(inp, x)
    for w in model.weights:   # explicit values: no dependence on Keras' global seed
        w.assign(rng.normal(0.0, 0.3, w.shape).astype(np.float32))
    calib = rng.random((num_calib, *net[0].in_shape)).astype(np.float32)

    def representative():
        for c in calib:
            yield [c[None]]

    conv = FULL_INT8.apply(tf.lite.TFLiteConverter.from_keras_model(model), representative)
    return write_bytes(path, conv.convert())


if __name__ == "__main__":
    import json
    import sys

    job = json.loads(sys.stdin.read())
    sp = SearchSpace.from_dict(job["space"])
    for i, (a, p) in enumerate(zip(job["archs"], job["paths"])):
        _convert(sp, SubnetArch.parse(a), p, seed=job["seed"] + i)
