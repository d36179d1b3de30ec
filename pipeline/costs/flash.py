"""Flash: the .tflite model bytes, the TFLite Micro runtime code for the model's ops, the app code.

Model bytes (`model_bytes`): constant data exactly (int8 weights, int32 biases, the MEAN axis), plus
12 bytes per quantization channel (a float32 scale and an int64 zero point in the flatbuffer), plus a
flatbuffer overhead per tensor (Tensor table, shape vector, name string, quantization table, Buffer
table and its 16-byte data alignment), per op (Operator table, input/output vectors, options) and per
file (header, operator codes, signature, metadata). The overhead constants are a least-squares
fit on real exports (see FLATBUFFER_FIT), checked by tests/test_costs_memory.py and
benchmarks/bench_memory_model.py (target: within 2% of the file size).

Runtime code (`runtime_code_bytes`): the data file flash_runtime.json beside this module, fitted from
real links only (`benchmarks/bench_firmware_flash.py --differential --write-data ...`): per core, a tiny
FULLY_CONNECTED-only int8 model linked with the generated firmware (upstream TFLM + CMSIS-NN at the pinned
commit, arm-none-eabi-gcc, int8-only registrations, --gc-sections), then linked again with each op registered
singly (codegen's extra_ops). An op's bytes are its marginal flash (text + data) over that base, so the
libc / soft-float code an op pulls in (which a linker map attributes to libc, not to the kernel) is counted
with the op. The framework is the base minus FULLY_CONNECTED's own bytes (from a RESHAPE-only base) minus
the nominal APP_CODE_BYTES; a 4-D int8 image input adds the firmware's pixel LUT and conversion
(`image_input_bytes`); pairs of ops that share code (measured as a pair's interaction) get a `shared`
correction. No real model is used for the fit; the real models are the hold-out check
(`bench_firmware_flash.py`, target within 5% of the linked size).

One table per TFLite Micro build type: `release_with_logs` (what the generated Makefile builds by default:
NDEBUG, TFLM's log and error strings kept) and `release` (`make TFLM_BUILD_TYPE=release`: also
TF_LITE_STRIP_ERROR_STRINGS, about 17 kB less on Cortex-M4). The search and codegen budget the default.

Cores with a measured table: release_with_logs on Cortex-M4, M7, M33 and M55 (the emulated boards' cores),
release on Cortex-M4 and M7. The rest scale the Cortex-M4 table of the same build type by a code-density
factor, labelled "estimated, not measured" in the data file: Cortex-M0+ is Thumb-1 only and its CMSIS-NN
build has no DSP paths (net 0.95x); M33 and M55 release use their measured release_with_logs ratio to M4
(1.0 and 0.87: the MVE kernels replace the scalar ones). `make size` on the generated firmware is the
ground truth.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from ..errors import ConfigError
from .graph import Graph

# Least-squares fit of (file bytes - constant bytes - 12 x quantization channels) on (tensors, 1) over
# 13 real exports (pipeline.export: onnx2tf + TF 2.19 converter) of the default space, residuals within
# 0.011% of the file size. Ops add no separate term: their count is nearly collinear with the tensor
# count (a 3-parameter fit gave -4.9 B per op). Refit with benchmarks/bench_memory_model.py --fit.
FLATBUFFER_FIT = {"per_tensor": 163.3, "per_op": 0.0, "fixed": 721.3}
QUANT_BYTES_PER_CHANNEL = 12     # float32 scale + int64 zero point

RUNTIME_DATA = Path(__file__).with_name("flash_runtime.json")
REFERENCE_CORE = "cortex-m4"   # the table a core without measurements scales
# ofa-mcu's own firmware code beyond the board's reserve (which already holds start-up, HAL and vector
# table): main.cc, the wire protocol (protocol.c) and the libc pieces they pull in.
APP_CODE_BYTES = 8_192
# TFLite Micro's BUILD_TYPE the generated Makefile uses unless told otherwise (TFLM_BUILD_TYPE=...).
DEFAULT_BUILD_TYPE = "release_with_logs"


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


@lru_cache(maxsize=None)
def runtime_data() -> dict:
    """The fitted tables (flash_runtime.json), as committed."""
    with open(RUNTIME_DATA, encoding="utf-8") as f:
        return json.load(f)


def build_types() -> tuple[str, ...]:
    """The TFLM build types with a fitted table."""
    return tuple(runtime_data()["build_types"])


def runtime_table(core: str, build_type: str | None = None) -> tuple[dict, float, str]:
    """(measured table, scale factor, status) for `core`: its own table, or the Cortex-M4 one scaled."""
    build_type = build_type or DEFAULT_BUILD_TYPE
    tables = runtime_data()["build_types"]
    if build_type not in tables:
        raise ConfigError(f"TFLite Micro build type '{build_type}' has no flash table",
                          hint=f"use one of: {', '.join(tables)}")
    cores = tables[build_type]["cores"]
    entry = cores.get(core)
    if entry is None:
        return cores[REFERENCE_CORE], 1.0, f"estimated, not measured (no entry: {REFERENCE_CORE} table)"
    if "op_bytes" in entry:
        return entry, 1.0, entry["status"]
    return cores[entry["scaled_from"]], float(entry["factor"]), entry["status"]


def other_op_bytes(table: dict) -> int:
    """An op without a measured marginal: the largest measured one (an upper estimate)."""
    return max(table["op_bytes"].values())


def runtime_code_bytes(op_kinds, core: str, *, image_input: bool = True, build_type: str | None = None) -> int:
    """Flash of the TFLM runtime with exactly these ops registered (int8 kernels, CMSIS-NN), plus the
    firmware's image-input code when the model takes a 4-D int8 image (every search-space model does),
    for `build_type` (default: DEFAULT_BUILD_TYPE, what the generated Makefile builds)."""
    table, factor, _ = runtime_table(core, build_type)
    ops = set(op_kinds)
    code = table["framework_bytes"] + (table["image_input_bytes"] if image_input else 0)
    code += sum(table["op_bytes"].get(k, other_op_bytes(table)) for k in ops)
    code += sum(s["bytes"] for s in table["shared"] if set(s["ops"]) <= ops)
    return int(round(code * factor))


def is_image_input(shape, dtype: str) -> bool:
    """Codegen's rule: a 4-D int8 input is an image (raw pixels through the LUT), anything else a tensor."""
    return len(shape) == 4 and dtype == "INT8"


def flash_bytes(graph: Graph, core: str) -> int:
    return model_bytes(graph) + runtime_code_bytes(graph.op_kinds, core) + APP_CODE_BYTES
