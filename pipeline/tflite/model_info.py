"""The one .tflite reader: plain dataclasses for ops in execution order, tensors, quantization, file hash.

Uses the flatbuffer schema shipped with `tflite-micro` (pure Python, no TensorFlow import), so export,
cost models, codegen, the serial tools and tests all inspect a model cheaply through `inspect_tflite`
(or `read_tflite`, which also returns the file's bytes). Memory facts derived from a model (live
activations, arena) are the cost models' job: `pipeline.costs.graph_from_tflite` and what follows it.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from ..errors import ArtifactError

_DTYPE_BYTES = {"FLOAT32": 4, "FLOAT16": 2, "INT32": 4, "UINT8": 1, "INT64": 8, "BOOL": 1, "INT16": 2,
                "INT8": 1, "FLOAT64": 8, "UINT64": 8, "UINT32": 4, "UINT16": 2, "BFLOAT16": 2}


_HINT = "pass the model_int8.tflite written by `ofa-mcu export`"


@lru_cache(maxsize=1)
def _schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema_fb
    return schema_fb


def _enum_names(cls) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


@lru_cache(maxsize=1)
def _builtin_names() -> dict[int, str]:
    return _enum_names(_schema().BuiltinOperator)


def op_name(code: int) -> str:
    """Builtin operator name of a BuiltinOperator code (what a firmware profiler reports)."""
    return _builtin_names().get(code, f"BUILTIN_{code}")


@dataclass(frozen=True)
class TensorInfo:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str  # TFLite TensorType name: INT8, INT32, FLOAT32, ...
    is_constant: bool  # backed by a buffer in the model (weights, biases, shape operands)
    scales: tuple[float, ...] = ()
    zero_points: tuple[int, ...] = ()
    quantized_dimension: int = 0

    @property
    def num_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= max(int(d), 0)
        return n

    @property
    def nbytes(self) -> int:
        return self.num_elements * _DTYPE_BYTES.get(self.dtype, 0)

    @property
    def per_channel(self) -> bool:
        return len(self.scales) > 1

    @property
    def scale(self) -> float:
        """Per-tensor scale (the first one of a per-channel tensor); 0.0 when not quantized."""
        return self.scales[0] if self.scales else 0.0

    @property
    def zero_point(self) -> int:
        return self.zero_points[0] if self.zero_points else 0

    def to_dict(self, full_quantization: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {"index": self.index, "name": self.name, "shape": list(self.shape),
                             "dtype": self.dtype, "bytes": self.nbytes, "constant": self.is_constant}
        if self.scales:
            if len(self.scales) == 1 or full_quantization:
                d["scale"] = list(self.scales) if len(self.scales) > 1 else self.scales[0]
                d["zero_point"] = list(self.zero_points) if len(self.zero_points) > 1 else self.zero_points[0]
            else:
                d["per_channel"] = {"axis": self.quantized_dimension, "count": len(self.scales),
                                    "scale_min": min(self.scales), "scale_max": max(self.scales),
                                    "zero_points": sorted(set(self.zero_points))}
        return d


@dataclass(frozen=True)
class OpInfo:
    index: int
    name: str  # builtin operator name (CONV_2D) or the custom code (FlexErf, ...)
    is_custom: bool
    version: int
    inputs: tuple[int, ...]  # tensor indices in the op's subgraph; -1 marks an omitted optional input
    outputs: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)
    code: int = 0  # BuiltinOperator code (CUSTOM for custom ops)
    subgraph: int = 0

    def to_dict(self, tensors: list[TensorInfo]) -> dict[str, Any]:
        def t(i):
            if i < 0:
                return None
            ti = tensors[i]
            d = {"tensor": i, "shape": list(ti.shape), "dtype": ti.dtype}
            if ti.is_constant:
                d["constant"] = True
            if ti.scales and not ti.per_channel:
                d["scale"], d["zero_point"] = ti.scales[0], ti.zero_points[0]
            elif ti.per_channel:
                d["per_channel_scales"] = len(ti.scales)
            return d
        return {"index": self.index, "op": self.name, "custom": self.is_custom, "version": self.version,
                "options": self.options, "inputs": [t(i) for i in self.inputs],
                "outputs": [t(i) for i in self.outputs]}


@dataclass(frozen=True)
class SubgraphInfo:
    """A subgraph other than the main one (control flow bodies): its ops reference its own tensors."""
    ops: tuple[OpInfo, ...]
    tensors: tuple[TensorInfo, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class ModelInfo:
    """The main subgraph (ops, tensors, inputs, outputs) plus the file's size, hash and other subgraphs."""
    model_bytes: int
    ops: tuple[OpInfo, ...]
    tensors: tuple[TensorInfo, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    schema_version: int
    description: str = ""
    num_subgraphs: int = 1
    sha256: str = ""  # hex digest of the whole file
    other_subgraphs: tuple[SubgraphInfo, ...] = ()

    @property
    def hash16(self) -> str:
        """The model hash a firmware reports: hex of the first 16 bytes of the file's sha256."""
        return self.sha256[:32]

    @property
    def all_ops(self) -> tuple[OpInfo, ...]:
        """Ops of every subgraph, main first: what the op resolver must register."""
        return self.ops + tuple(op for sg in self.other_subgraphs for op in sg.ops)

    def _tensors_of(self, op: OpInfo) -> tuple[TensorInfo, ...]:
        return self.tensors if op.subgraph == 0 else self.other_subgraphs[op.subgraph - 1].tensors

    def op_inputs(self, op: OpInfo) -> tuple[TensorInfo | None, ...]:
        """The op's input tensors; None where an optional input is omitted."""
        ts = self._tensors_of(op)
        return tuple(ts[i] if i >= 0 else None for i in op.inputs)

    def op_outputs(self, op: OpInfo) -> tuple[TensorInfo, ...]:
        ts = self._tensors_of(op)
        return tuple(ts[i] for i in op.outputs if i >= 0)

    @property
    def op_names(self) -> list[str]:
        return [op.name for op in self.ops]

    @property
    def input(self) -> TensorInfo:
        return self.tensors[self.inputs[0]]

    @property
    def output(self) -> TensorInfo:
        return self.tensors[self.outputs[0]]

    @property
    def weight_bytes(self) -> int:
        """Bytes of constant tensor data (weights, biases, shape operands)."""
        return sum(t.nbytes for t in self.tensors if t.is_constant)

    def is_activation(self, index: int) -> bool:
        return index >= 0 and not self.tensors[index].is_constant

    def to_dict(self) -> dict[str, Any]:
        return {"model_bytes": self.model_bytes, "weight_bytes": self.weight_bytes,
                "schema_version": self.schema_version, "num_subgraphs": self.num_subgraphs,
                "input": self.input.to_dict(), "output": self.output.to_dict(),
                "op_counts": _counts(self.op_names),
                "ops": [op.to_dict(list(self.tensors)) for op in self.ops]}


def _counts(names: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for n in names:
        out[n] = out.get(n, 0) + 1
    return out


def _options_dict(op_t, fb) -> dict[str, Any]:
    opts = op_t.builtinOptions
    if opts is None:
        return {}
    padding, act = _enum_names(fb.Padding), _enum_names(fb.ActivationFunctionType)
    out: dict[str, Any] = {}
    for key, value in vars(opts).items():
        if key == "padding":
            value = padding.get(value, value)
        elif key == "fusedActivationFunction":
            value = act.get(value, value)
        elif hasattr(value, "tolist"):
            value = value.tolist()
        elif value is not None and not isinstance(value, (int, float, bool, str, list)):
            continue
        out[key] = value
    return out


def read_tflite(path: str | os.PathLike) -> tuple[ModelInfo, bytes]:
    """`inspect_tflite` of a file, plus the file's bytes (for embedding or running it)."""
    from .._io import MAX_MODEL_BYTES, read_regular_file

    data = read_regular_file(path, max_bytes=MAX_MODEL_BYTES, what="model")  # not a folder, /dev/zero, 10 GB
    return _parse(data, str(path)), data


def inspect_tflite(model: str | os.PathLike | bytes | bytearray) -> ModelInfo:
    """Parse a .tflite file (path) or its bytes. Any unreadable model is an ArtifactError naming it."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        return _parse(bytes(model), "<bytes>")
    return read_tflite(model)[0]


def _ints(values) -> tuple[int, ...]:
    return tuple(int(v) for v in (values if values is not None else ()))


def _tensors(sg, buffers, fb) -> tuple[TensorInfo, ...]:
    ttype = _enum_names(fb.TensorType)
    tensors = []
    for i, t in enumerate(sg.tensors or []):
        buf = buffers[t.buffer] if 0 < t.buffer < len(buffers) else None
        const = buf is not None and ((buf.data is not None and len(buf.data) > 0) or buf.size > 0)
        q = t.quantization
        scales = tuple(float(s) for s in (q.scale if q is not None and q.scale is not None else ()))
        zps = tuple(int(z) for z in (q.zeroPoint if q is not None and q.zeroPoint is not None else ()))
        name = t.name.decode() if isinstance(t.name, bytes) else (t.name or "")
        tensors.append(TensorInfo(i, name, _ints(t.shape), ttype.get(t.type, str(t.type)), bool(const),
                                  scales, zps, int(q.quantizedDimension) if q is not None else 0))
    return tuple(tensors)


def _ops(sg, s: int, m, fb) -> tuple[OpInfo, ...]:
    ops = []
    for k, op in enumerate(sg.operators or []):
        code = m.operatorCodes[op.opcodeIndex]
        bcode = max(code.builtinCode, code.deprecatedBuiltinCode)
        custom = bcode == fb.BuiltinOperator.CUSTOM
        if custom:
            cc = code.customCode
            name = cc.decode() if isinstance(cc, bytes) else str(cc)
        else:
            name = op_name(bcode)
        ops.append(OpInfo(k, name, custom, int(code.version), _ints(op.inputs), _ints(op.outputs),
                          _options_dict(op, fb), int(bcode), s))
    return tuple(ops)


def _parse(data: bytes, where: str) -> ModelInfo:
    fb = _schema()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ArtifactError(f"{where}: not a TFLite flatbuffer (missing the 'TFL3' identifier)", hint=_HINT)
    try:
        m = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(data, 0))
        if not m.subgraphs:
            raise ArtifactError(f"{where}: the model has no subgraph", hint=_HINT)
        buffers = m.buffers or []
        subgraphs = [SubgraphInfo(_ops(sg, s, m, fb), _tensors(sg, buffers, fb), _ints(sg.inputs),
                                  _ints(sg.outputs)) for s, sg in enumerate(m.subgraphs)]
    except ArtifactError:
        raise
    except Exception as e:  # a truncated buffer raises anything from struct.error to IndexError
        raise ArtifactError(f"{where}: corrupt TFLite flatbuffer ({e.__class__.__name__}: {e})",
                            hint=_HINT) from None
    main = subgraphs[0]
    desc = m.description.decode() if isinstance(m.description, bytes) else (m.description or "")
    return ModelInfo(len(data), main.ops, main.tensors, main.inputs, main.outputs, int(m.version), desc,
                     len(m.subgraphs), hashlib.sha256(data).hexdigest(), tuple(subgraphs[1:]))
