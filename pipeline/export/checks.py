"""What a model must satisfy before it may go to a microcontroller.

Only builtin ops that TensorFlow Lite Micro runs with int8 kernels, every activation int8, no layout
TRANSPOSE and no explicit PAD (the subnet pads TensorFlow-style, so padding must fold into SAME convs;
a PAD op would add a copy of the largest activation to the arena). Every violation is collected and
reported at once with the op index and tensor names, so the user sees where each came from.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..tflite.model_info import ModelInfo, OpInfo
from ..errors import ExportError, UnsupportedOpError

#: Builtin ops with int8 kernels in TFLite Micro's op set (tflite-micro `micro_mutable_op_resolver.h`).
TFLM_INT8_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "BATCH_TO_SPACE_ND", "CONCATENATION", "CONV_2D", "DEPTH_TO_SPACE",
    "DEPTHWISE_CONV_2D", "DEQUANTIZE", "EXPAND_DIMS", "FULLY_CONNECTED", "HARD_SWISH", "L2_NORMALIZATION",
    "LEAKY_RELU", "LOG_SOFTMAX", "LOGISTIC", "MAX_POOL_2D", "MAXIMUM", "MEAN", "MINIMUM", "MUL", "PACK",
    "PRELU", "QUANTIZE", "REDUCE_MAX", "RELU", "RELU6", "RESHAPE", "RESIZE_NEAREST_NEIGHBOR", "SOFTMAX",
    "SPACE_TO_BATCH_ND", "SPACE_TO_DEPTH", "SPLIT", "SPLIT_V", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM",
    "TANH", "TRANSPOSE_CONV", "UNPACK",
})

#: Ops TFLM can run but this pipeline refuses, with the reason shown to the user.
REFUSED_OPS = {
    "TRANSPOSE": "a layout transpose left by the NCHW->NHWC conversion (costs a full activation copy)",
    "PAD": "explicit padding: the model should pad TF-SAME so the pad folds into the convolution",
    "PADV2": "explicit padding: the model should pad TF-SAME so the pad folds into the convolution",
    "MIRROR_PAD": "explicit padding (reflect) is not part of the subnet's contract",
}

#: Activation dtypes an int8 model may carry between ops (INT32 for shape-like operands).
_INT_DTYPES = {"INT8", "INT32"}


def _where(info: ModelInfo, op: OpInfo) -> str:
    names = [info.tensors[i].name for i in (*op.outputs, *op.inputs) if i >= 0 and not info.tensors[i].is_constant]
    shown = "; ".join(dict.fromkeys(n for n in names if n))
    return shown[:240] or "(unnamed tensors)"


@dataclass(frozen=True)
class Violation:
    index: int
    op: str
    reason: str
    tensors: str

    def __str__(self) -> str:
        return f"op #{self.index} {self.op}: {self.reason} [tensors: {self.tensors}]"


def op_violations(info: ModelInfo) -> list[Violation]:
    """Every offending op: index, name, why, and the tensor names it touches."""
    problems = []
    for op in info.ops:
        why = None
        if op.is_custom:
            kind = "a TensorFlow (Flex) op" if op.name.startswith("Flex") else "a custom op"
            why = f"{kind}; TFLite Micro runs builtin ops only"
        elif op.name in REFUSED_OPS:
            why = REFUSED_OPS[op.name]
        elif op.name not in TFLM_INT8_OPS:
            why = "TFLite Micro has no int8 kernel for this builtin"
        else:
            floats = sorted({info.tensors[i].dtype for i in (*op.inputs, *op.outputs)
                             if info.is_activation(i) and info.tensors[i].dtype not in _INT_DTYPES})
            if floats and op.name not in ("QUANTIZE", "DEQUANTIZE"):
                why = f"computes in {'/'.join(floats)}: the int8 quantizer fell back to float for it"
        if why:
            problems.append(Violation(op.index, op.name, why, _where(info, op)))
    return problems


def check_tflm_int8(info: ModelInfo, *, height: int | None = None, width: int | None = None,
                    channels: int | None = None) -> None:
    """Raise UnsupportedOpError listing every offending op, or ExportError for a wrong input/output."""
    problems = op_violations(info)
    if problems:
        names = sorted({p.op for p in problems})
        raise UnsupportedOpError(
            f"the model holds {len(problems)} op(s) TFLite Micro cannot run as int8 builtins "
            f"({', '.join(names)}):\n  " + "\n  ".join(map(str, problems)),
            hint="replace the PyTorch layers that produce these ops (the tensor names show the converted "
                 "layer) with Conv2d/BatchNorm2d/ReLU6/ZeroPad2d(TF-SAME)/pooling/Linear, then export again")
    errs = []
    if len(info.inputs) != 1 or len(info.outputs) != 1:
        errs.append(f"expected 1 input and 1 output, got {len(info.inputs)} and {len(info.outputs)}")
    else:
        inp, out = info.input, info.output
        if inp.dtype != "INT8" or out.dtype != "INT8":
            errs.append(f"input/output must be int8, got {inp.dtype}/{out.dtype}")
        want = (1, height, width, channels)
        if len(inp.shape) != 4 or any(w is not None and w != s for w, s in zip(want, inp.shape)):
            errs.append(f"input must be NHWC {tuple('?' if w is None else w for w in want)}, got {inp.shape}")
        if len(inp.scales) != 1:
            errs.append("input must have one (per-tensor) scale and zero point")
    if errs:
        raise ExportError("the converted model does not have the expected interface: " + "; ".join(errs),
                          hint="the export expects a single-image NCHW float model; check the ONNX graph")
