"""Host int8 inference with the TFLite Micro Python runtime: the reference a device must agree with."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ArtifactError
from ..tflite.model_info import ModelInfo, inspect_tflite


def arena_bytes_for(model_size: int) -> int:
    # The runtime segfaults instead of raising when the arena is too small (reference/README.md), and
    # it has no arena getter to probe with: be generous.
    return 4 * model_size + 256 * 1024


RUNTIME_DTYPES = {"INT8": np.int8, "INT16": np.int16}


class TflmRunner:
    """One TFLM interpreter for one model; `run(input bytes) -> bytes` of the first output.

    Inputs and outputs are int8 or int16 (a 16x8-quantized model); the bytes are the tensor's own,
    little-endian, as the firmware holds them."""

    def __init__(self, model_path: str | os.PathLike, model: ModelInfo | None = None):
        from tflite_micro.python.tflite_micro import runtime

        self.model = model or inspect_tflite(model_path)
        if self.model.input.dtype not in RUNTIME_DTYPES or self.model.output.dtype not in RUNTIME_DTYPES:
            raise ArtifactError(f"{model_path}: input/output are {self.model.input.dtype.lower()}/"
                                f"{self.model.output.dtype.lower()}, the serial check needs an integer model "
                                f"(int8 or int16 input and output)",
                                hint="convert with full-integer quantization (ofa-mcu export does)")
        from ..tflite.micro_ops import OP_TABLE
        from ..errors import UnsupportedOpError

        missing = sorted({op.name for op in self.model.all_ops if op.name not in OP_TABLE})
        if missing:
            raise UnsupportedOpError(f"{model_path}: op(s) TensorFlow Lite Micro lacks: {', '.join(missing)}",
                                     hint="convert the model to TFLM builtin ops (ofa-mcu export does)")
        self._interp = runtime.Interpreter.from_file(str(Path(model_path)),
                                                     arena_size=arena_bytes_for(self.model.model_bytes))
        self._shape = self.model.input.shape
        self.input_dtype = np.dtype(RUNTIME_DTYPES[self.model.input.dtype]).newbyteorder("<")
        self.output_dtype = np.dtype(RUNTIME_DTYPES[self.model.output.dtype]).newbyteorder("<")

    def run(self, data: bytes) -> bytes:
        x = np.frombuffer(data, dtype=self.input_dtype).reshape(self._shape).astype(self.input_dtype.type)
        self._interp.set_input(x, 0)
        self._interp.invoke()
        return np.asarray(self._interp.get_output(0)).astype(self.output_dtype).tobytes()
