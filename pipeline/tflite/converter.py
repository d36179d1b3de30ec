"""The one TFLite converter configuration: every full-integer model the project makes goes through it.

The export stage (in its child process), the cost models' reference graphs and the test fixtures all
call `QuantizationConfig.apply`, so the settings a deployed model was made with are the settings its
cost model and its tests were checked with. `to_dict()` is what reports record.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any, Callable, Iterable


class Activations(str, Enum):
    INT8 = "int8"    # full int8: int8 activations and weights
    INT16 = "int16"  # TFLite's 16x8 mode: int16 activations, int8 weights


@dataclass(frozen=True)
class QuantizationConfig:
    activations: Activations = Activations.INT8
    #: The model's input/output tensor type; the same as the activations unless set.
    io_type: Activations | None = None

    def __post_init__(self):
        object.__setattr__(self, "activations", Activations(self.activations))
        if self.io_type is not None:
            object.__setattr__(self, "io_type", Activations(self.io_type))

    def apply(self, converter: Any, representative: Callable[[], Iterable[list]]) -> Any:
        """Set a `tf.lite.TFLiteConverter` up for full-integer conversion; returns it."""
        import tensorflow as tf

        ops = {Activations.INT8: tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
               Activations.INT16: tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8}
        dtype = {Activations.INT8: tf.int8, Activations.INT16: tf.int16}
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        # Integer builtins only: an op without an integer kernel fails here instead of slipping in as Flex.
        converter.target_spec.supported_ops = [ops[self.activations]]
        converter.inference_input_type = dtype[self.io_type or self.activations]
        converter.inference_output_type = dtype[self.io_type or self.activations]
        return converter

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (v.value if isinstance(v, Enum) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "QuantizationConfig":
        return cls(**d)


FULL_INT8 = QuantizationConfig()
