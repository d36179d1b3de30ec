"""Test fixture: tiny full-int8 TFLite models built in code with TensorFlow's own converter.

Not the project's export chain (that is pipeline/export, tested on its own); this gives the serial,
codegen and cost tests a real int8 model without depending on supernet training. Every test that needs
a Keras model as full-int8 TFLite goes through `int8_tflite_from_keras`.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pipeline.contract import InputContract
from pipeline.tflite.converter import FULL_INT8, QuantizationConfig


def int8_tflite_from_keras(model, calib_uint8: np.ndarray, *, train: tuple[np.ndarray, np.ndarray] | None = None,
                           epochs: int = 0, learning_rate: float = 0.01, batch_size: int = 64) -> bytes:
    """Full-int8 TFLite (int8 input and output) of a Keras model whose input is `pixel / 255`.

    `calib_uint8` (N, H, W, C) are the calibration images. With `train=(x_uint8, y)` and `epochs` > 0
    the model is first trained on them (Adam, cross-entropy on logits) using Keras' global seed."""
    import tensorflow as tf

    if train is not None and epochs > 0:
        model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate),
                      loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(train[0].astype(np.float32) / 255.0, train[1], epochs=epochs, batch_size=batch_size, verbose=0)

    def representative():
        for img in calib_uint8:
            yield [img[None].astype(np.float32) / 255.0]

    return FULL_INT8.apply(tf.lite.TFLiteConverter.from_keras_model(model), representative).convert()


def make_tiny_int8_tflite(path: str | os.PathLike, *, resolution: int = 8, channels: int = 1,
                          num_classes: int = 10, seed: int = 0) -> tuple[Path, InputContract]:
    """Write a small conv/depthwise/add/pool/dense int8 model; return its path and input contract."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)  # keras initialisers only read the global seed
    inp = tf.keras.Input((resolution, resolution, channels), batch_size=1)
    x = tf.keras.layers.Conv2D(8, 3, padding="same", activation=tf.nn.relu6)(inp)
    y = tf.keras.layers.DepthwiseConv2D(3, padding="same", activation=tf.nn.relu6)(x)
    y = tf.keras.layers.Conv2D(8, 1)(y)
    x = tf.keras.layers.Add()([x, y])
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    out = tf.keras.layers.Dense(num_classes)(x)
    model = tf.keras.Model(inp, out)

    rng = np.random.default_rng(seed)
    calib = rng.integers(0, 256, size=(32, resolution, resolution, channels), dtype=np.uint8)
    calib[0] = 0
    calib[1] = 255
    data = int8_tflite_from_keras(model, calib)
    path = Path(path)
    path.write_bytes(data)
    interp = tf.lite.Interpreter(model_content=data)
    scale, zp = interp.get_input_details()[0]["quantization"]
    return path, InputContract(resolution, resolution, channels, float(scale), int(zp))


def integer_tflite_from_keras(model, calib: np.ndarray, *, dtype: str = "int8") -> bytes:
    """Full-integer TFLite of a Keras model whose float input is `calib`'s values as they are (features,
    vectors: no pixel scaling). dtype int8: int8 activations and input/output; int16: TFLite's 16x8
    quantization (int16 activations and input/output, int8 weights)."""
    import tensorflow as tf

    def representative():
        for sample in calib:
            yield [sample[None].astype(np.float32)]

    config = QuantizationConfig(activations=dtype)
    return config.apply(tf.lite.TFLiteConverter.from_keras_model(model), representative).convert()


# The input/output shapes of the four MLPerf Tiny reference models (benchmark/training/*/trained_models in
# mlcommons/tiny), rebuilt here as tiny Keras nets: the real files are never committed.
MLPERF_TINY_SHAPES = {
    "kws": ((49, 10, 1), 12),    # DS-CNN keyword spotting: 49x10 MFCCs -> 12 classes
    "vww": ((96, 96, 3), 2),     # visual wake words: 96x96 RGB -> person / no person
    "ic": ((32, 32, 3), 10),     # image classification: CIFAR-10 ResNet, input scale 1.0 (pixels 0..255)
    "ad": ((640,), 640),         # anomaly detection: 640-value log-mel vector -> its reconstruction
}


def make_tiny_tensor_tflite(path: str | os.PathLike, kind: str, *, dtype: str = "int8",
                            seed: int = 0) -> tuple[Path, np.ndarray]:
    """A tiny model with the input/output shape of one MLPerf Tiny reference model (`MLPERF_TINY_SHAPES`).

    Returns its path and float calibration samples (real input values, what a tensor npz may hold)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    shape, outputs = MLPERF_TINY_SHAPES[kind]
    rng = np.random.default_rng(seed)
    inp = tf.keras.Input(shape, batch_size=1)
    if kind == "ad":
        x = tf.keras.layers.Dense(16, activation="relu")(inp)
        x = tf.keras.layers.Dense(8, activation="relu")(x)
        x = tf.keras.layers.Dense(16, activation="relu")(x)
        out = tf.keras.layers.Dense(outputs)(x)
        calib = rng.normal(0.0, 1.0, size=(32, *shape)).astype(np.float32)
    else:
        stride = 4 if kind == "vww" else (2 if kind == "kws" else 1)
        x = tf.keras.layers.Conv2D(8, 3, strides=stride, padding="same", activation=tf.nn.relu6)(inp)
        y = tf.keras.layers.DepthwiseConv2D(3, padding="same", activation=tf.nn.relu6)(x)
        y = tf.keras.layers.Conv2D(8, 1)(y)
        x = tf.keras.layers.Add()([x, y])
        x = tf.keras.layers.GlobalAveragePooling2D()(x)
        out = tf.keras.layers.Dense(outputs)(x)
        if kind == "ic":  # MLPerf's IC model takes raw pixel values 0..255 (input scale 1.0)
            calib = rng.uniform(0, 255, size=(16, *shape)).astype(np.float32)
        elif kind == "vww":
            calib = rng.uniform(0, 1, size=(16, *shape)).astype(np.float32)
        else:  # MFCC-like features
            calib = rng.normal(0.0, 20.0, size=(32, *shape)).astype(np.float32)
    model = tf.keras.Model(inp, out)
    data = integer_tflite_from_keras(model, calib, dtype=dtype)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path, calib
