"""What the generator needs to know about a .tflite file: its ops, their shapes and its input/output.

Read with the flatbuffer schema module shipped in the `tflite-micro` wheel (fast to import, unlike
TensorFlow), so `ofa-mcu codegen` does not pay for TensorFlow.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import ArtifactError

# TFLite TensorType values (tensorflow/lite/schema/schema.fbs) -> (name, bytes per element).
_TENSOR_TYPES = {0: ("float32", 4), 1: ("float16", 2), 2: ("int32", 4), 3: ("uint8", 1), 4: ("int64", 8),
                 6: ("bool", 1), 7: ("int16", 2), 9: ("int8", 1), 17: ("int4", 1)}


@dataclass(frozen=True)
class TensorInfo:
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int
    is_constant: bool
    itemsize: int

    @property
    def elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= max(int(d), 1)
        return n

    @property
    def bytes(self) -> int:
        return self.elements * self.itemsize


@dataclass(frozen=True)
class OpNode:
    index: int
    subgraph: int
    builtin: str
    builtin_code: int
    inputs: tuple[TensorInfo | None, ...]
    outputs: tuple[TensorInfo, ...]
    options: dict
    input_ids: tuple[int, ...]      # tensor indices in the subgraph (-1: optional input absent)
    output_ids: tuple[int, ...]


@dataclass(frozen=True)
class ModelInfo:
    sha256: str
    size_bytes: int
    ops: tuple[OpNode, ...]
    input: TensorInfo
    output: TensorInfo
    input_id: int
    output_id: int

    @property
    def main_ops(self) -> tuple[OpNode, ...]:
        return tuple(op for op in self.ops if op.subgraph == 0)


def _options_dict(opts) -> dict:
    if opts is None:
        return {}
    return {k: v for k, v in vars(opts).items() if isinstance(v, (int, float, bool))}


def read_model(path: str | Path) -> tuple[ModelInfo, bytes]:
    """Parse a .tflite; any unreadable file is an ArtifactError naming it."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"{path}: model file not found",
                            hint="give the model_int8.tflite written by `ofa-mcu export`") from None
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ArtifactError(f"{path}: not a TFLite flatbuffer (no TFL3 identifier)",
                            hint="give the model_int8.tflite written by `ofa-mcu export`")
    try:
        model = fb.ModelT.InitFromPackedBuf(data, 0)
    except Exception as e:  # a truncated or corrupt flatbuffer raises anything from struct to IndexError
        raise ArtifactError(f"{path}: cannot parse the TFLite flatbuffer ({type(e).__name__}: {e})") from None
    code_names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    buffers = model.buffers or []

    def tensor(sg, i: int) -> TensorInfo | None:
        if i < 0:
            return None
        t = sg.tensors[i]
        q = t.quantization
        scale = float(q.scale[0]) if q is not None and q.scale is not None and len(q.scale) else 0.0
        zp = int(q.zeroPoint[0]) if q is not None and q.zeroPoint is not None and len(q.zeroPoint) else 0
        buf = buffers[t.buffer] if 0 < t.buffer < len(buffers) else None
        const = buf is not None and (buf.data is not None and len(buf.data) > 0 or bool(buf.size))
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else ()))
        dtype, itemsize = _TENSOR_TYPES.get(t.type, (f"type{t.type}", 1))
        return TensorInfo(shape, dtype, scale, zp, const, itemsize)

    ops = []
    for s, sg in enumerate(model.subgraphs or []):
        for i, op in enumerate(sg.operators or []):
            oc = model.operatorCodes[op.opcodeIndex]
            code = max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode))
            name = code_names.get(code, f"BUILTIN_{code}")
            if name == "CUSTOM":
                custom = oc.customCode.decode("utf-8", "replace") if oc.customCode else "?"
                name = f"CUSTOM({custom})"
            ops.append(OpNode(i, s, name, code, tuple(tensor(sg, j) for j in op.inputs),
                              tuple(tensor(sg, j) for j in op.outputs), _options_dict(op.builtinOptions),
                              tuple(int(j) for j in op.inputs), tuple(int(j) for j in op.outputs)))
    main = model.subgraphs[0]
    if len(main.inputs) != 1 or len(main.outputs) != 1:
        raise ArtifactError(f"{path}: the firmware expects one input and one output tensor, the model has "
                            f"{len(main.inputs)} and {len(main.outputs)}")
    info = ModelInfo(hashlib.sha256(data).hexdigest(), len(data), tuple(ops),
                     tensor(main, main.inputs[0]), tensor(main, main.outputs[0]),
                     int(main.inputs[0]), int(main.outputs[0]))
    return info, data
