"""Shared helpers for the codegen / firmware tests: a tiny model built once, cross-compile commands.

Not a test module (no `test_` prefix); imported by tests/test_codegen*.py and tests/test_firmware*.py.
"""
from __future__ import annotations

import shlex
import shutil
import subprocess
import zlib
from pathlib import Path

from pipeline.codegen.qemu import start_qemu, stop_qemu  # noqa: F401  (re-exported for the tests)

ARM_GCC = shutil.which("arm-none-eabi-gcc")
ARM_GXX = shutil.which("arm-none-eabi-g++")
QEMU = shutil.which("qemu-system-arm")
HOST_CC = shutil.which("gcc") or shutil.which("cc")


def arch_flags(fw_dir: Path) -> list[str]:
    """The per-core compiler flags the generated Makefile uses (ARCH_FLAGS line)."""
    for line in (fw_dir / "Makefile").read_text().splitlines():
        if line.startswith("ARCH_FLAGS := "):
            return shlex.split(line.split(":=", 1)[1])
    raise AssertionError(f"{fw_dir}/Makefile has no ARCH_FLAGS")


def cross_compile(fw_dir: Path, source: str, out: Path, extra: list[str] | None = None) -> None:
    """Compile one generated file with arm-none-eabi-gcc/g++ -Wall -Wextra -Werror; fail with the log."""
    cxx = source.endswith(".cc")
    cmd = [ARM_GXX if cxx else ARM_GCC, *arch_flags(fw_dir), "-std=c++17" if cxx else "-std=c99",
           "-O2", "-Wall", "-Wextra", "-Werror", "-ffunction-sections", "-fdata-sections",
           "-I", str(fw_dir), *(extra or []), "-c", str(fw_dir / source), "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stderr}"


def build_tflite(ops: list[tuple[str, list[int], list[int], dict]], tensors: list[dict], inputs: list[int],
                 outputs: list[int], *, custom_ops: dict[str, str] | None = None) -> bytes:
    """A .tflite flatbuffer written directly with the schema's object API: byte-for-byte deterministic
    (no converter, no float calibration), for golden files and hand-made edge cases.

    tensors: {"shape", "type" (TensorType name), "scale", "zp", "data" (bytes for constants)}.
    ops: (builtin name or "CUSTOM", input tensor ids, output tensor ids, builtin options as
          {"type": OptionsName, field: value}).
    """
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

    model = fb.ModelT()
    model.version = 3
    model.buffers = [fb.BufferT()]
    fb_tensors = []
    for t in tensors:
        tt = fb.TensorT()
        tt.shape = list(t["shape"])
        tt.type = getattr(fb.TensorType, t.get("type", "INT8"))
        tt.name = t.get("name", f"t{len(fb_tensors)}").encode()
        q = fb.QuantizationParametersT()
        q.scale, q.zeroPoint = [float(t.get("scale", 0.05))], [int(t.get("zp", 0))]
        tt.quantization = q
        if "data" in t:
            buf = fb.BufferT()
            buf.data = list(t["data"])
            model.buffers.append(buf)
            tt.buffer = len(model.buffers) - 1
        else:
            tt.buffer = 0
        fb_tensors.append(tt)
    codes: list[str] = []
    fb_ops = []
    for name, ins, outs, options in ops:
        if name not in codes:
            codes.append(name)
        op = fb.OperatorT()
        op.opcodeIndex = codes.index(name)
        op.inputs, op.outputs = list(ins), list(outs)
        if options:
            opts = dict(options)
            kind = opts.pop("type")
            obj = getattr(fb, kind + "T")()
            for k, v in opts.items():
                setattr(obj, k, v)
            op.builtinOptionsType = getattr(fb.BuiltinOptions, kind)
            op.builtinOptions = obj
        fb_ops.append(op)
    model.operatorCodes = []
    for name in codes:
        oc = fb.OperatorCodeT()
        if name.startswith("CUSTOM:"):
            oc.builtinCode = fb.BuiltinOperator.CUSTOM
            oc.customCode = name.split(":", 1)[1].encode()
        else:
            oc.builtinCode = getattr(fb.BuiltinOperator, name)
        oc.deprecatedBuiltinCode = min(oc.builtinCode, 127)
        oc.version = 1
        model.operatorCodes.append(oc)
    sg = fb.SubGraphT()
    sg.tensors, sg.operators, sg.inputs, sg.outputs = fb_tensors, fb_ops, list(inputs), list(outputs)
    model.subgraphs = [sg]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def golden_model_bytes() -> bytes:
    """A small MobileNet-style int8 graph (conv 3x3, depthwise 5x5, 1x1 conv, add, mean, fc, softmax) with
    fixed weights; never run, only rendered."""
    import numpy as np

    rng = np.random.default_rng(1234)

    def w(*shape):
        return rng.integers(-127, 128, size=shape, dtype=np.int8).tobytes()

    def b(n):
        return rng.integers(-1000, 1000, size=n, dtype=np.int32).tobytes()

    tensors = [
        {"shape": [1, 12, 12, 3], "scale": 1 / 255, "zp": -128, "name": "input"},          # 0
        {"shape": [8, 3, 3, 3], "data": w(8, 3, 3, 3)},                                       # 1
        {"shape": [8], "type": "INT32", "data": b(8)},                                        # 2
        {"shape": [1, 6, 6, 8]},                                                              # 3
        {"shape": [1, 5, 5, 8], "data": w(1, 5, 5, 8)},                                       # 4
        {"shape": [8], "type": "INT32", "data": b(8)},                                        # 5
        {"shape": [1, 6, 6, 8]},                                                              # 6
        {"shape": [8, 1, 1, 8], "data": w(8, 1, 1, 8)},                                       # 7
        {"shape": [8], "type": "INT32", "data": b(8)},                                        # 8
        {"shape": [1, 6, 6, 8]},                                                              # 9
        {"shape": [1, 6, 6, 8]},                                                              # 10 add
        {"shape": [2], "type": "INT32", "data": np.array([1, 2], np.int32).tobytes()},        # 11
        {"shape": [1, 8]},                                                                    # 12 mean
        {"shape": [4, 8], "data": w(4, 8)},                                                   # 13
        {"shape": [4], "type": "INT32", "data": b(4)},                                        # 14
        {"shape": [1, 4]},                                                                    # 15 logits
        {"shape": [1, 4], "scale": 1 / 256, "zp": -128, "name": "probs"},                    # 16
    ]
    conv = {"type": "Conv2DOptions", "padding": 0, "strideW": 2, "strideH": 2, "dilationWFactor": 1,
            "dilationHFactor": 1, "fusedActivationFunction": 3}
    dw = {"type": "DepthwiseConv2DOptions", "padding": 0, "strideW": 1, "strideH": 1, "depthMultiplier": 1,
          "dilationWFactor": 1, "dilationHFactor": 1, "fusedActivationFunction": 3}
    pw = dict(conv, strideW=1, strideH=1, fusedActivationFunction=0)
    ops = [("CONV_2D", [0, 1, 2], [3], conv), ("DEPTHWISE_CONV_2D", [3, 4, 5], [6], dw),
           ("CONV_2D", [6, 7, 8], [9], pw), ("ADD", [3, 9], [10], {"type": "AddOptions"}),
           ("MEAN", [10, 11], [12], {"type": "ReducerOptions", "keepDims": False}),
           ("FULLY_CONNECTED", [12, 13, 14], [15], {"type": "FullyConnectedOptions"}),
           ("SOFTMAX", [15], [16], {"type": "SoftmaxOptions", "beta": 1.0})]
    return build_tflite(ops, tensors, [0], [16])


# TEST FIXTURE, not firmware: main() of the self-test image. It stands in for the TFLite Micro model with
# a deterministic function of the received input, so the host can check every byte came through:
# output[k] = byte (k % 4) of crc32(input) XOR k XOR input[k % input_len]. Everything else (start-up,
# UART, cycle counter, protocol) is the generated/real code.
SELFTEST_MAIN_FIXTURE = r"""
#include <string.h>
#include "board.h"
#include "model_settings.h"
#include "protocol.h"

static uint8_t rx_buf[PROTO_RX_BUF_SIZE(PROTO_DEFAULT_MAX_PAYLOAD)];
static uint8_t tx_buf[PROTO_TX_BUF_SIZE(PROTO_DEFAULT_MAX_PAYLOAD)];
static uint8_t input_buf[OFA_INPUT_BYTES];
static uint8_t out_buf[OFA_OUTPUT_BYTES];
static proto_op_cycles prof_buf[OFA_MAIN_OP_COUNT];
static proto_device dev;

static int write_cb(void *user, const uint8_t *p, size_t n) { (void)user; board_uart_write(p, n); return 0; }

static int fake_invoke(void *user, const uint8_t *in, size_t in_len, uint8_t *out, size_t cap,
                       size_t *out_len, uint64_t *cycles) {
    uint64_t t0 = board_cycles();
    uint32_t crc = proto_crc32(0, in, in_len);
    size_t k;
    (void)user;
    if (cap < OFA_OUTPUT_BYTES) return PROTO_E_TOO_LARGE;
    for (k = 0; k < OFA_OUTPUT_BYTES; k++)
        out[k] = (uint8_t)((crc >> (8u * (k % 4u))) ^ k ^ in[k % in_len]);
    *out_len = OFA_OUTPUT_BYTES;
    *cycles = board_cycles() - t0;
    return 0;
}

static int fake_profile(void *user, proto_op_cycles *ops, size_t cap, size_t *n_ops) {
    size_t i;
    (void)user;
    for (i = 0; i < OFA_MAIN_OP_COUNT && i < cap; i++) { ops[i].op_code = kOpCodes[i]; ops[i].cycles = 1000u * (i + 1u); }
    *n_ops = i;
    return 0;
}

int main(void) {
    static proto_device_info info;
    static proto_device_config cfg;
    static const uint8_t hash[PROTO_MODEL_HASH_LEN] = OFA_MODEL_HASH_INIT;
    board_init();
    info.board_id = BOARD_ID;
    info.firmware_version = "selftest-fixture";
    memcpy(info.model_hash, hash, sizeof hash);
    info.input_dtype = PROTO_DTYPE_INT8; info.input_rank = 4;
    info.input_dims[0] = 1; info.input_dims[1] = OFA_INPUT_HEIGHT;
    info.input_dims[2] = OFA_INPUT_WIDTH; info.input_dims[3] = OFA_INPUT_CHANNELS;
    info.input_bytes = OFA_INPUT_BYTES; info.input_scale = OFA_INPUT_SCALE; info.input_zero_point = OFA_INPUT_ZERO_POINT;
    info.output_dtype = PROTO_DTYPE_INT8; info.output_bytes = OFA_OUTPUT_BYTES;
    info.output_scale = OFA_OUTPUT_SCALE; info.output_zero_point = OFA_OUTPUT_ZERO_POINT;
    info.arena_bytes = OFA_ARENA_BYTES; info.cycle_hz = BOARD_CYCLE_HZ;
    info.flags = PROTO_FLAG_PROFILE | PROTO_FLAG_CYCLES_TIMER | (BOARD_COUNTS_INSTRUCTIONS ? PROTO_FLAG_INSTRUCTIONS : 0);
    info.window = 1;
    cfg.info = &info; cfg.write = write_cb; cfg.invoke = fake_invoke; cfg.profile = fake_profile;
    cfg.rx_buf = rx_buf; cfg.rx_cap = sizeof rx_buf; cfg.tx_buf = tx_buf; cfg.tx_cap = sizeof tx_buf;
    cfg.input_buf = input_buf; cfg.input_cap = sizeof input_buf;
    cfg.output_buf = out_buf; cfg.output_cap = sizeof out_buf;
    cfg.prof_buf = prof_buf; cfg.prof_cap = OFA_MAIN_OP_COUNT;
    if (proto_device_init(&dev, &cfg) != 0) for (;;) {}
    for (;;) {
        uint8_t b[32];
        size_t n = board_uart_read(b, sizeof b);
        if (n) proto_device_feed(&dev, b, n);
    }
}
"""



def expected_output(data: bytes, n_out: int) -> bytes:
    """What SELFTEST_MAIN_FIXTURE answers to INVOKE for `data`."""
    crc = zlib.crc32(data)
    return bytes(((crc >> (8 * (k % 4))) ^ k ^ data[k % len(data)]) & 0xFF for k in range(n_out))


def link_selftest(fw_dir: Path, build_dir: Path) -> Path:
    """Compile the generated start-up, board support and protocol plus the fixture main; link with the
    generated linker script. Returns the ELF."""
    (build_dir / "selftest_main.c").write_text(SELFTEST_MAIN_FIXTURE)
    objs = []
    for src in ("startup.c", "board.c", "protocol.c"):
        obj = build_dir / (src + ".o")
        cross_compile(fw_dir, src, obj)
        objs.append(str(obj))
    obj = build_dir / "selftest_main.o"
    cmd = [ARM_GCC, *arch_flags(fw_dir), "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-I", str(fw_dir),
           "-c", str(build_dir / "selftest_main.c"), "-o", str(obj)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    objs.append(str(obj))
    elf = build_dir / "selftest.elf"
    cmd = [ARM_GCC, *arch_flags(fw_dir), "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
           "-Wl,--gc-sections", "-T", str(fw_dir / "linker.ld"), *objs, "-o", str(elf)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return elf


def make_scratch_heavy_tflite(path: Path) -> Path:
    """An int8 MobileNetV2-style block whose 5x5 depthwise (48 channels) needs a 2,400-byte CMSIS-NN scratch
    buffer on DSP cores: more than the 64-bit reference-kernel arena leaves spare (built with TF's converter)."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf
    from tiny_models import int8_tflite_from_keras

    tf.keras.utils.set_random_seed(0)
    inp = tf.keras.Input((24, 24, 3), batch_size=1)
    x = tf.keras.layers.Conv2D(16, 3, strides=2, padding="same", activation=tf.nn.relu6)(inp)
    y = tf.keras.layers.Conv2D(48, 1, activation=tf.nn.relu6)(x)
    y = tf.keras.layers.DepthwiseConv2D(5, padding="same", activation=tf.nn.relu6)(y)
    y = tf.keras.layers.Conv2D(16, 1)(y)
    x = tf.keras.layers.Add()([x, y])
    x = tf.keras.layers.Conv2D(32, 3, strides=2, padding="same", activation=tf.nn.relu6)(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    model = tf.keras.Model(inp, tf.keras.layers.Dense(10)(x))
    calib = np.random.default_rng(0).integers(0, 256, size=(32, 24, 24, 3), dtype=np.uint8)
    path = Path(path)
    path.write_bytes(int8_tflite_from_keras(model, calib))
    return path
