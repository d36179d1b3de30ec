"""Flash: the .tflite model bytes, the TFLite Micro runtime code for the model's ops, the app code.

Model bytes (`model_bytes`): constant data exactly (int8 weights, int32 biases, the MEAN axis), plus
12 bytes per quantization channel (a float32 scale and an int64 zero point in the flatbuffer), plus a
flatbuffer overhead per tensor (Tensor table, shape vector, name string, quantization table, Buffer
table and its 16-byte data alignment), per op (Operator table, input/output vectors, options) and per
file (header, operator codes, signature, metadata). The overhead constants are a least-squares
fit on real exports (see FLATBUFFER_FIT), checked by tests/test_costs_memory.py and
benchmarks/bench_memory_model.py (target: within 2% of the file size).

Runtime code (`runtime_code_bytes`): measured on this machine for the reference in
shared/reference/README.md: upstream TFLM + CMSIS-NN built for Cortex-M4 with arm-none-eabi-gcc 12.2,
int8-only kernel registrations (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD, PAD) took TFLM 25 kB +
CMSIS-NN 23 kB = 48 kB. It is split below into a framework part and per-op parts; the framework size
agrees with the ~37 kB "interpreter" of MicroNets (Banbury et al., MLSys 2021, table 2) once the
kernels are taken out. Other cores scale it by code density: Cortex-M0+ is Thumb-1 only and its CMSIS-NN
build has no DSP paths (smaller kernels, larger framework code: net 0.95x); Cortex-M55 adds the MVE
kernels beside the scalar ones (1.2x). These per-core factors are estimates: `make size` on the
generated firmware is the ground truth.
"""
from __future__ import annotations

from .graph import Graph

# Least-squares fit of (file bytes - constant bytes - 12 x quantization channels) on (tensors, 1) over
# 13 real exports (pipeline.export: onnx2tf + TF 2.19 converter) of the default space, residuals within
# 0.011% of the file size. Ops add no separate term: their count is nearly collinear with the tensor
# count (a 3-parameter fit gave -4.9 B per op). Refit with benchmarks/bench_memory_model.py --fit.
FLATBUFFER_FIT = {"per_tensor": 163.3, "per_op": 0.0, "fixed": 721.3}
QUANT_BYTES_PER_CHANNEL = 12     # float32 scale + int64 zero point

# Cortex-M4 int8-only build (bytes). framework: interpreter, allocator, greedy planner, flatbuffer
# parsing, op resolver; the kernels: TFLM glue + CMSIS-NN code each op pulls in.
RUNTIME_FRAMEWORK_BYTES = 20_000
RUNTIME_OP_BYTES = {
    "CONV_2D": 11_000,             # conv glue + arm_convolve_wrapper_s8, 1x1 fast, 1xN, im2col kernels
    "DEPTHWISE_CONV_2D": 9_000,    # wrapper + 3x3, opt and generic depthwise kernels
    "FULLY_CONNECTED": 3_000,
    "ADD": 3_000,                  # arm_elementwise_add_s8 + broadcast reference path
    "PAD": 2_000,
    "MEAN": 4_000,                 # TFLM reference reduce (no CMSIS-NN kernel)
    "AVERAGE_POOL_2D": 3_000,
    "RESHAPE": 600,
    "SOFTMAX": 3_000,
    "QUANTIZE": 2_000,
    "DEQUANTIZE": 1_500,
}
RUNTIME_OTHER_OP_BYTES = 4_000
CORE_CODE_FACTOR = {"cortex-m0plus": 0.95, "cortex-m3": 1.0, "cortex-m4": 1.0, "cortex-m7": 1.0,
                    "cortex-m33": 1.0, "cortex-m55": 1.2}
# ofa-mcu's own firmware code beyond the board's reserve (which already holds start-up, HAL and vector
# table): main.cc, the wire protocol (protocol.c) and the libc pieces they pull in.
APP_CODE_BYTES = 8_192


def model_bytes(graph: Graph) -> int:
    """Predicted size of the exported .tflite file."""
    data = 0
    channels = 0
    for t in graph.tensors:
        if t.const:
            data += t.nbytes
            if t.role in ("weight", "bias"):
                channels += t.scales
    return model_bytes_from_counts(data, channels, len(graph.tensors), len(graph.ops))


def model_bytes_from_counts(const_bytes: int, quant_channels: int, n_tensors: int, n_ops: int) -> int:
    f = FLATBUFFER_FIT
    overhead = f["per_tensor"] * n_tensors + f["per_op"] * n_ops + f["fixed"]
    return int(round(const_bytes + QUANT_BYTES_PER_CHANNEL * quant_channels + overhead))


def runtime_code_bytes(op_kinds, core: str) -> int:
    """Flash of the TFLM runtime with exactly these ops registered (int8 kernels, CMSIS-NN)."""
    code = RUNTIME_FRAMEWORK_BYTES + sum(RUNTIME_OP_BYTES.get(k, RUNTIME_OTHER_OP_BYTES) for k in set(op_kinds))
    return int(round(code * CORE_CODE_FACTOR.get(core, 1.0)))


def flash_bytes(graph: Graph, core: str) -> int:
    return model_bytes(graph) + runtime_code_bytes(graph.op_kinds, core) + APP_CODE_BYTES
