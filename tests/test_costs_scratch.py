"""The one CMSIS-NN scratch model (`costs.memory.cmsis_nn_buffers`) against CMSIS-NN's own C functions.

With a TFLite Micro tree (TFLM_DIR, whose downloads hold CMSIS-NN at the commit TFLM pins), the
arm_*_get_buffer_size sources are compiled for the host three times (portable C, ARM_MATH_DSP,
ARM_MATH_MVEI: the three code paths a Cortex-M build takes) and called through ctypes on a few hundred
seeded random geometries; the Python model must return exactly what CMSIS-NN returns for the request
TFLM's kernels/cmsis_nn/*.cc make. Without a tree, hand-derived cases from those sources run.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipeline.costs.graph import Graph, Op, Tensor, op_geometry
from pipeline.costs.memory import cmsis_nn_buffers

TFLM_DIR = os.environ.get("TFLM_DIR")
CORES = {"none": "cortex-m0plus", "dsp": "cortex-m4", "mve": "cortex-m55"}


def _conv_graph(kind, n, h, w, cin, cout, k, stride, padding="SAME", dilation=1, out_hw=None, itemsize=1,
                per_channel=True):
    if out_hw is None:
        eff = (k[0] - 1) * dilation + 1, (k[1] - 1) * dilation + 1
        out_hw = ((-(-h // stride), -(-w // stride)) if padding == "SAME"
                  else ((h - eff[0]) // stride + 1, (w - eff[1]) // stride + 1))
    flt = (cout, k[0], k[1], cin) if kind == "CONV_2D" else (1, k[0], k[1], cout)
    tensors = (Tensor((n, h, w, cin), itemsize, False), Tensor(flt, 1, True, cout if per_channel else 1, "weight"),
               Tensor((cout,), 4, True, cout, "bias"), Tensor((n, *out_hw, cout), itemsize, False))
    opts = {"padding": padding, "strideH": stride, "strideW": stride, "dilationHFactor": dilation,
            "dilationWFactor": dilation}
    op = Op(kind, (0, 1, 2), (3,), None, opts)
    return Graph(tensors, (op,), (0,), (3,)), op


def _fc_graph(batches, accum, out, out_rank=2, per_channel=False, itemsize=1):
    out_shape = (batches, out) if out_rank == 2 else (1, 1, batches, out)
    tensors = (Tensor((batches, accum), itemsize, False), Tensor((out, accum), 1, True, out if per_channel else 1,
                                                                 "weight"),
               Tensor((out,), 4, True, 1, "bias"), Tensor(out_shape, itemsize, False))
    op = Op("FULLY_CONNECTED", (0, 1, 2), (3,), None, {})
    return Graph(tensors, (op,), (0,), (3,)), op


# -- hand-derived from the CMSIS-NN sources (always run) --------------------------------------------------
def test_hand_derived_cases():
    g, op = _conv_graph("CONV_2D", 1, 8, 8, 3, 8, (3, 3), 1)
    # im2col of two columns in int16: 2 * align4(27) * 2 on every non-MVE core; MVE: 4 * align16(27)
    assert cmsis_nn_buffers(g, op, "cortex-m4").scratch == (112,)
    assert cmsis_nn_buffers(g, op, "cortex-m0plus").scratch == (112,)
    assert cmsis_nn_buffers(g, op, "cortex-m55").scratch == (128,)
    g, op = _conv_graph("CONV_2D", 1, 8, 8, 16, 8, (1, 1), 2)   # 1x1, strided: no buffer anywhere
    assert all(cmsis_nn_buffers(g, op, c).scratch == () for c in CORES.values())
    g, op = _conv_graph("DEPTHWISE_CONV_2D", 1, 8, 8, 8, 8, (5, 5), 1)
    assert cmsis_nn_buffers(g, op, "cortex-m4").scratch == (8 * 25 * 2,)
    assert cmsis_nn_buffers(g, op, "cortex-m0plus").scratch == ()
    assert cmsis_nn_buffers(g, op, "cortex-m55").scratch == (4 * 124 * 25,)
    g, op = _conv_graph("DEPTHWISE_CONV_2D", 1, 8, 8, 8, 8, (3, 3), 1)   # arm_depthwise_conv_3x3_s8
    assert cmsis_nn_buffers(g, op, "cortex-m7").scratch == ()
    g, op = _fc_graph(1, 64, 4, per_channel=True)
    assert cmsis_nn_buffers(g, op, "cortex-m4") == ((), 0)
    assert cmsis_nn_buffers(g, op, "cortex-m55") == ((), 16)       # kernel sums: persistent, 16-aligned
    g, op = _fc_graph(4, 64, 6, out_rank=4)                         # conv 1x1 path, per-tensor weights
    assert cmsis_nn_buffers(g, op, "cortex-m4").scratch == (6 * 4 * 2,)


# -- against CMSIS-NN's C functions --------------------------------------------------------------------
class Dims(ctypes.Structure):
    _fields_ = [("n", ctypes.c_int32), ("h", ctypes.c_int32), ("w", ctypes.c_int32), ("c", ctypes.c_int32)]


class Tile(ctypes.Structure):
    _fields_ = [("w", ctypes.c_int32), ("h", ctypes.c_int32)]


class Act(ctypes.Structure):
    _fields_ = [("min", ctypes.c_int32), ("max", ctypes.c_int32)]


class ConvParams(ctypes.Structure):
    _fields_ = [("input_offset", ctypes.c_int32), ("output_offset", ctypes.c_int32), ("stride", Tile),
                ("padding", Tile), ("dilation", Tile), ("activation", Act)]


class DwParams(ctypes.Structure):
    _fields_ = [("input_offset", ctypes.c_int32), ("output_offset", ctypes.c_int32), ("ch_mult", ctypes.c_int32),
                ("stride", Tile), ("padding", Tile), ("dilation", Tile), ("activation", Act)]


_SOURCES = ["ConvolutionFunctions/arm_convolve_get_buffer_sizes_s8.c",
            "ConvolutionFunctions/arm_convolve_get_buffer_sizes_s16.c",
            "ConvolutionFunctions/arm_depthwise_conv_get_buffer_sizes_s8.c",
            "FullyConnectedFunctions/arm_fully_connected_get_buffer_sizes_s8.c",
            "PoolingFunctions/arm_avgpool_get_buffer_sizes_s8.c"]
_DEFINES = {"none": [], "dsp": ["ARM_MATH_DSP"], "mve": ["ARM_MATH_DSP", "ARM_MATH_MVEI"]}


@pytest.fixture(scope="module")
def cmsis_libs(tmp_path_factory):
    if not TFLM_DIR:
        pytest.skip("TFLM_DIR (a TensorFlow Lite Micro tree with its downloads) is not set")
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no host C compiler (gcc)")
    nn = Path(TFLM_DIR) / "tensorflow/lite/micro/tools/make/downloads/cmsis_nn"
    assert nn.is_dir(), f"{nn} missing: run TFLM's make once so it downloads CMSIS-NN"
    out = tmp_path_factory.mktemp("cmsis_nn")
    libs = {}
    for isa, defs in _DEFINES.items():
        # The ISA macros are defined after CMSIS-NN's headers, so only the buffer-size sources see them:
        # the headers' inline DSP/MVE kernels need Arm intrinsics a host compiler does not have.
        objs = []
        for i, src in enumerate(_SOURCES):
            unit = out / f"{isa}_{i}.c"
            unit.write_text('#include "arm_nnfunctions.h"\n#include "arm_nnsupportfunctions.h"\n'
                            + "".join(f"#define {d}\n" for d in defs) + f'#include "{nn / "Source" / src}"\n')
            obj = unit.with_suffix(".o")
            subprocess.run([cc, "-c", "-fPIC", "-O1", "-w", f"-I{nn / 'Include'}", str(unit), "-o", str(obj)],
                           check=True)
            objs.append(str(obj))
        so = out / f"libbuf_{isa}.so"
        subprocess.run([cc, "-shared", *objs, "-o", str(so)], check=True)
        lib = ctypes.CDLL(str(so))
        for name in ("arm_convolve_wrapper_s8_get_buffer_size", "arm_depthwise_conv_wrapper_s8_get_buffer_size"):
            getattr(lib, name).restype = ctypes.c_int32
        lib.arm_convolve_wrapper_s16_get_buffer_size.restype = ctypes.c_int32
        lib.arm_fully_connected_s8_get_buffer_size.restype = ctypes.c_int32
        lib.arm_avgpool_s8_get_buffer_size.restype = ctypes.c_int32
        libs[isa] = lib
    return libs


def _random_conv(rng, kind):
    k = (int(rng.choice([1, 3, 5, 7])), int(rng.choice([1, 3, 5, 7])))
    if rng.random() < 0.2:
        k = (1, int(rng.choice([3, 5, 8])))
    h = 1 if k[0] == 1 and rng.random() < 0.4 else int(rng.integers(4, 20))
    w = int(rng.integers(4, 20))
    stride = int(rng.choice([1, 2]))
    cin = int(rng.choice([1, 3, 4, 8, 12, 16, 30]))
    dil = 2 if rng.random() < 0.1 else 1
    if kind == "CONV_2D":
        cout = int(rng.choice([4, 8, 16]))
    else:
        cout = cin if rng.random() < 0.8 else cin * int(rng.choice([2, 4]))
    padding = "SAME" if rng.random() < 0.8 else "VALID"
    if padding == "VALID" and (h < (k[0] - 1) * dil + 1 or w < (k[1] - 1) * dil + 1):
        padding = "SAME"
    return _conv_graph(kind, 1, h, w, cin, cout, k, stride, padding, dil)


@pytest.mark.tflm_tree
@pytest.mark.parametrize("isa", list(_DEFINES))
def test_scratch_model_equals_cmsis_nn(cmsis_libs, isa):
    lib = cmsis_libs[isa]
    core = CORES[isa]
    rng = np.random.default_rng(7)
    checked = 0
    for _ in range(150):
        for kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            g, op = _random_conv(rng, kind)
            geo = op_geometry(g, op)
            n, h, w, cin = geo.in_shape
            _, oh, ow, cout = geo.out_shape
            ind, outd = Dims(n, h, w, cin), Dims(n, oh, ow, cout)
            if kind == "CONV_2D":
                p = ConvParams(0, 0, Tile(geo.stride_w, geo.stride_h), Tile(geo.pad_w, geo.pad_h),
                               Tile(geo.dilation_w, geo.dilation_h), Act(-128, 127))
                fd = Dims(1, geo.kernel_h, geo.kernel_w, cin)   # cmsis_nn/conv.cc: n = 1, c = filter's cin
                want = lib.arm_convolve_wrapper_s8_get_buffer_size(ctypes.byref(p), ctypes.byref(ind),
                                                                   ctypes.byref(fd), ctypes.byref(outd))
            else:
                p = DwParams(0, 0, cout // cin, Tile(geo.stride_w, geo.stride_h), Tile(geo.pad_w, geo.pad_h),
                             Tile(geo.dilation_w, geo.dilation_h), Act(-128, 127))
                fd = Dims(1, geo.kernel_h, geo.kernel_w, cout)  # cmsis_nn/depthwise_conv.cc
                want = lib.arm_depthwise_conv_wrapper_s8_get_buffer_size(ctypes.byref(p), ctypes.byref(ind),
                                                                         ctypes.byref(fd), ctypes.byref(outd))
            got = sum(cmsis_nn_buffers(g, op, core).scratch)
            assert got == max(want, 0), (isa, kind, geo, want, got)
            checked += 1
    # int16 convolutions (16x8 models): arm_convolve_wrapper_s16_get_buffer_size
    for _ in range(50):
        g, op = _random_conv(rng, "CONV_2D")
        g = Graph((g.tensors[0]._replace(itemsize=2), *g.tensors[1:3], g.tensors[3]._replace(itemsize=2)),
                  g.ops, g.inputs, g.outputs)
        geo = op_geometry(g, op)
        n, h, w, cin = geo.in_shape
        p = ConvParams(0, 0, Tile(geo.stride_w, geo.stride_h), Tile(geo.pad_w, geo.pad_h),
                       Tile(geo.dilation_w, geo.dilation_h), Act(-32768, 32767))
        want = lib.arm_convolve_wrapper_s16_get_buffer_size(ctypes.byref(p), ctypes.byref(Dims(n, h, w, cin)),
                                                            ctypes.byref(Dims(1, geo.kernel_h, geo.kernel_w, cin)),
                                                            ctypes.byref(Dims(*geo.out_shape)))
        assert sum(cmsis_nn_buffers(g, op, core).scratch) == want, (isa, geo, want)
    # avgpool: one int32 per channel on DSP only; FC s8: MVE kernel sums (persistent in TFLM).
    for c in (1, 8, 13, 64):
        assert lib.arm_avgpool_s8_get_buffer_size(4, c) == (c * 4 if isa == "dsp" else 0)
        g, op = _fc_graph(1, 32, c, per_channel=True)
        fd = Dims(32, 1, 1, c)
        want = lib.arm_fully_connected_s8_get_buffer_size(ctypes.byref(fd))
        b = cmsis_nn_buffers(g, op, core)
        assert b.persistent == -(-want // 16) * 16 and b.scratch == ()
    assert checked == 300
