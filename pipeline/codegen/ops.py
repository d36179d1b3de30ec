"""The TFLite builtin ops the generated firmware can register, and how.

`OP_TABLE[builtin] = (MicroMutableOpResolver method, takes a registration argument, has an int8-only twin)`.
Extracted from tensorflow/lite/micro/micro_mutable_op_resolver.h and the `Register_<OP>_INT8()` declarations
in tensorflow/lite/micro/kernels/*.h at the pinned TFLite Micro commit (see `TFLM_COMMIT`). An int8-only
twin (e.g. `Register_CONV_2D_INT8()`) links only the int8 kernel: same results, about half the kernel code
in flash with CMSIS-NN; without an optimized kernel directory the headers map it back to the generic one.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import UnsupportedOpError

# tensorflow/tflite-micro commit the generated project is written against (`make tflm` checks it out).
TFLM_COMMIT = "90b983c2b3f1480642e040bbd2ddb37b998f3424"

OP_TABLE: dict[str, tuple[str, bool, bool]] = {
    "ABS": ("AddAbs", True, False),
    "ADD": ("AddAdd", True, True),
    "ADD_N": ("AddAddN", True, False),
    "ARG_MAX": ("AddArgMax", True, False),
    "ARG_MIN": ("AddArgMin", True, False),
    "ASSIGN_VARIABLE": ("AddAssignVariable", True, False),
    "AVERAGE_POOL_2D": ("AddAveragePool2D", True, True),
    "BATCH_MATMUL": ("AddBatchMatMul", True, True),
    "BATCH_TO_SPACE_ND": ("AddBatchToSpaceNd", True, False),
    "BROADCAST_ARGS": ("AddBroadcastArgs", True, False),
    "BROADCAST_TO": ("AddBroadcastTo", True, False),
    "CALL_ONCE": ("AddCallOnce", True, False),
    "CAST": ("AddCast", True, False),
    "CEIL": ("AddCeil", True, False),
    "CONCATENATION": ("AddConcatenation", True, False),
    "CONV_2D": ("AddConv2D", True, True),
    "COS": ("AddCos", True, False),
    "CUMSUM": ("AddCumSum", True, False),
    "DEPTHWISE_CONV_2D": ("AddDepthwiseConv2D", True, True),
    "DEPTH_TO_SPACE": ("AddDepthToSpace", True, False),
    "DEQUANTIZE": ("AddDequantize", True, False),
    "DIV": ("AddDiv", True, False),
    "DYNAMIC_UPDATE_SLICE": ("AddDynamicUpdateSlice", False, False),
    "ELU": ("AddElu", True, False),
    "EMBEDDING_LOOKUP": ("AddEmbeddingLookup", True, False),
    "EQUAL": ("AddEqual", True, False),
    "EXP": ("AddExp", True, False),
    "EXPAND_DIMS": ("AddExpandDims", True, False),
    "FILL": ("AddFill", True, False),
    "FLOOR": ("AddFloor", True, False),
    "FLOOR_DIV": ("AddFloorDiv", True, False),
    "FLOOR_MOD": ("AddFloorMod", True, False),
    "FULLY_CONNECTED": ("AddFullyConnected", True, True),
    "GATHER": ("AddGather", True, False),
    "GATHER_ND": ("AddGatherNd", True, False),
    "GREATER": ("AddGreater", True, False),
    "GREATER_EQUAL": ("AddGreaterEqual", True, False),
    "HARD_SWISH": ("AddHardSwish", True, False),
    "IF": ("AddIf", True, False),
    "L2_NORMALIZATION": ("AddL2Normalization", True, False),
    "L2_POOL_2D": ("AddL2Pool2D", True, False),
    "LEAKY_RELU": ("AddLeakyRelu", True, False),
    "LESS": ("AddLess", True, False),
    "LESS_EQUAL": ("AddLessEqual", True, False),
    "LOG": ("AddLog", True, False),
    "LOGICAL_AND": ("AddLogicalAnd", True, False),
    "LOGICAL_NOT": ("AddLogicalNot", True, False),
    "LOGICAL_OR": ("AddLogicalOr", True, False),
    "LOGISTIC": ("AddLogistic", True, False),
    "LOG_SOFTMAX": ("AddLogSoftmax", True, False),
    "MAXIMUM": ("AddMaximum", True, True),
    "MAX_POOL_2D": ("AddMaxPool2D", True, True),
    "MEAN": ("AddMean", True, False),
    "MINIMUM": ("AddMinimum", True, True),
    "MIRROR_PAD": ("AddMirrorPad", True, False),
    "MUL": ("AddMul", True, True),
    "NEG": ("AddNeg", True, False),
    "NOT_EQUAL": ("AddNotEqual", True, False),
    "PACK": ("AddPack", True, False),
    "PAD": ("AddPad", True, True),
    "PADV2": ("AddPadV2", True, False),
    "PRELU": ("AddPrelu", True, False),
    "QUANTIZE": ("AddQuantize", True, False),
    "READ_VARIABLE": ("AddReadVariable", True, False),
    "REDUCE_ALL": ("AddReduceAll", True, False),
    "REDUCE_MAX": ("AddReduceMax", True, False),
    "REDUCE_MIN": ("AddReduceMin", True, False),
    "RELU": ("AddRelu", True, False),
    "RELU6": ("AddRelu6", True, False),
    "RESHAPE": ("AddReshape", True, False),
    "RESIZE_BILINEAR": ("AddResizeBilinear", True, False),
    "RESIZE_NEAREST_NEIGHBOR": ("AddResizeNearestNeighbor", False, False),
    "REVERSE_V2": ("AddReverseV2", True, False),
    "ROUND": ("AddRound", True, False),
    "RSQRT": ("AddRsqrt", True, False),
    "SELECT_V2": ("AddSelectV2", True, False),
    "SHAPE": ("AddShape", True, False),
    "SIN": ("AddSin", True, False),
    "SLICE": ("AddSlice", True, False),
    "SOFTMAX": ("AddSoftmax", True, True),
    "SPACE_TO_BATCH_ND": ("AddSpaceToBatchNd", True, False),
    "SPACE_TO_DEPTH": ("AddSpaceToDepth", True, False),
    "SPLIT": ("AddSplit", True, False),
    "SPLIT_V": ("AddSplitV", True, False),
    "SQRT": ("AddSqrt", True, False),
    "SQUARE": ("AddSquare", True, False),
    "SQUARED_DIFFERENCE": ("AddSquaredDifference", True, False),
    "SQUEEZE": ("AddSqueeze", True, False),
    "STRIDED_SLICE": ("AddStridedSlice", True, False),
    "SUB": ("AddSub", True, False),
    "SUM": ("AddSum", True, False),
    "SVDF": ("AddSvdf", True, True),
    "TANH": ("AddTanh", True, False),
    "TRANSPOSE": ("AddTranspose", True, True),
    "TRANSPOSE_CONV": ("AddTransposeConv", True, True),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": ("AddUnidirectionalSequenceLSTM", True, True),
    "UNPACK": ("AddUnpack", True, False),
    "VAR_HANDLE": ("AddVarHandle", True, False),
    "WHILE": ("AddWhile", True, False),
    "ZEROS_LIKE": ("AddZerosLike", True, False),
}


@dataclass(frozen=True)
class OpRegistration:
    """One `resolver.AddXxx(...)` line of op_resolver.h."""
    builtin: str        # TFLite BuiltinOperator name, e.g. "CONV_2D"
    method: str         # MicroMutableOpResolver method, e.g. "AddConv2D"
    registration: str   # argument, e.g. "tflite::Register_CONV_2D_INT8()", or "" for the default kernel

    @property
    def int8_only(self) -> bool:
        return self.registration.endswith("_INT8()")


def op_label(op) -> str:
    """How codegen names an op (an export OpInfo): the builtin name, or CUSTOM(code) for a custom op."""
    return f"CUSTOM({op.name})" if op.is_custom else op.name


def resolver_entries(ops_in_order: list[str], int8_ops: set[str]) -> list[OpRegistration]:
    """One registration per distinct op, in first-use order.

    `int8_ops` names the ops whose every instance in the model has int8 activations (and int8 weights),
    the only case where the int8-only kernel is correct. Any op missing from OP_TABLE is an error naming it.
    """
    distinct = list(dict.fromkeys(ops_in_order))
    unknown = [op for op in distinct if op not in OP_TABLE]
    if unknown:
        raise UnsupportedOpError(
            f"the model uses op(s) the firmware generator cannot register: {', '.join(unknown)}",
            hint="TFLite Micro's MicroMutableOpResolver has no Add method for them (custom or Flex ops, or "
                 "ops TFLM lacks); change the model so the converter emits TFLM builtins only")
    entries = []
    for op in distinct:
        method, takes_registration, has_int8 = OP_TABLE[op]
        reg = f"tflite::Register_{op}_INT8()" if (has_int8 and takes_registration and op in int8_ops) else ""
        entries.append(OpRegistration(op, method, reg))
    return entries
