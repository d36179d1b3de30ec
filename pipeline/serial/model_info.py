"""What the serial tools need to know about an int8 .tflite: tensors, quantization, ops and their MACs.

Read with the flatbuffer schema bundled in the tflite-micro package, so nothing here imports TensorFlow.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import ArtifactError

_TENSOR_DTYPES = {0: "float32", 2: "int32", 3: "uint8", 7: "int16", 9: "int8"}


@lru_cache(maxsize=1)
def _schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated
    return schema_py_generated


@lru_cache(maxsize=1)
def _op_names() -> dict[int, str]:
    ops = _schema().BuiltinOperator
    return {v: k for k, v in vars(ops).items() if not k.startswith("_") and isinstance(v, int)}


def op_name(code: int) -> str:
    return _op_names().get(code, f"OP_{code}")


@dataclass(frozen=True)
class TensorInfo:
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int

    @property
    def bytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class OpInfo:
    index: int
    op_code: int
    op_type: str
    input_shapes: tuple[tuple[int, ...], ...]
    output_shapes: tuple[tuple[int, ...], ...]
    macs: int


@dataclass(frozen=True)
class ModelInfo:
    path: str
    size_bytes: int
    sha256: str
    input: TensorInfo
    output: TensorInfo
    ops: tuple[OpInfo, ...]

    @property
    def hash16(self) -> str:
        """The model hash a firmware reports: hex of the first 16 bytes of sha256 of the file."""
        return self.sha256[:32]

    @property
    def macs(self) -> int:
        return sum(o.macs for o in self.ops)


def _tensor(t) -> TensorInfo:
    q = t.quantization
    scale = float(q.scale[0]) if q is not None and q.scale is not None and len(q.scale) else 0.0
    zp = int(q.zeroPoint[0]) if q is not None and q.zeroPoint is not None and len(q.zeroPoint) else 0
    shape = tuple(int(d) for d in (t.shape if t.shape is not None else ()))
    return TensorInfo(shape, _TENSOR_DTYPES.get(t.type, f"type{t.type}"), scale, zp)


def _macs(code: int, ins: list[tuple[int, ...]], outs: list[tuple[int, ...]], options) -> int:
    """Multiply-accumulates of one op; element-wise and pooling ops count one per element they touch."""
    names = _op_names()
    name = names.get(code, "")
    out = int(np.prod(outs[0])) if outs and outs[0] else 0
    if name == "CONV_2D" and len(ins) > 1:  # filter [Cout, kh, kw, Cin]
        return out * int(np.prod(ins[1][1:]))
    if name == "DEPTHWISE_CONV_2D" and len(ins) > 1:  # filter [1, kh, kw, Cout]
        return out * int(ins[1][1] * ins[1][2])
    if name == "FULLY_CONNECTED" and len(ins) > 1:  # weights [out, in]
        return out * int(ins[1][-1])
    if name in ("AVERAGE_POOL_2D", "MAX_POOL_2D") and options is not None:
        return out * int(options.filterHeight * options.filterWidth)
    if name in ("MEAN", "SUM", "REDUCE_MAX") and ins:
        return int(np.prod(ins[0]))
    return out


def read_model(path: str | os.PathLike) -> ModelInfo:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"{path}: model file not found",
                            hint="pass the model_int8.tflite written by `ofa-mcu export`") from None
    s = _schema()
    try:
        if not s.Model.ModelBufferHasIdentifier(data, 0):
            raise ValueError("no TFL3 identifier")
        m = s.ModelT.InitFromObj(s.Model.GetRootAsModel(data, 0))
        g = m.subgraphs[0]
        tensors = g.tensors
        ops = []
        for i, op in enumerate(g.operators if g.operators is not None else []):
            oc = m.operatorCodes[op.opcodeIndex]
            code = max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode))
            ins = [tuple(int(d) for d in tensors[k].shape) for k in op.inputs if k >= 0]
            outs = [tuple(int(d) for d in tensors[k].shape) for k in op.outputs if k >= 0]
            ops.append(OpInfo(i, code, op_name(code), tuple(ins), tuple(outs),
                              _macs(code, ins, outs, op.builtinOptions)))
        inp, out = _tensor(tensors[g.inputs[0]]), _tensor(tensors[g.outputs[0]])
    except Exception as e:  # noqa: BLE001 - any parse failure means the same thing to the user
        raise ArtifactError(f"{path}: not a readable TFLite model ({e})",
                            hint="pass the model_int8.tflite written by `ofa-mcu export`") from None
    return ModelInfo(str(path), len(data), hashlib.sha256(data).hexdigest(), inp, out, tuple(ops))
