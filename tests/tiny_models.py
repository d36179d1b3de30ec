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
from pipeline.tflite.converter import FULL_INT8


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
