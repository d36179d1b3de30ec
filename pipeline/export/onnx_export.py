"""PyTorch -> ONNX, simplified and put in the shape onnx2tf converts without layout transposes.

Two rewrites, both exact: onnxsim folds the `ZeroPad2d` of stride-2 convolutions into the Conv's
asymmetric pads (onnx2tf then emits SAME convolutions, no PAD op), and a spatial `ReduceMean` over
NCHW axes (2, 3) becomes `GlobalAveragePool + Flatten` (onnx2tf otherwise transposes back to NCHW
before the mean). The result is checked against PyTorch with onnxruntime.
"""
from __future__ import annotations

import copy
import io
import os
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._io import write_bytes
from ..errors import ExportError

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
ONNX_TOLERANCE = 1e-4


@dataclass(frozen=True)
class OnnxResult:
    path: Path
    opset: int
    max_abs_diff: float
    num_parity_samples: int
    node_types: tuple[str, ...]


def _canonical_global_pool(model) -> int:
    """Replace ReduceMean over axes (2, 3) of a 4-D tensor by GlobalAveragePool (+ Flatten). Returns count."""
    import onnx
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    shapes = {}
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = len(dims)
    new_nodes, count = [], 0
    for n in g.node:
        if n.op_type == "ReduceMean":
            attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
            axes = attrs.get("axes")
            if axes is None and len(n.input) > 1 and n.input[1] in inits:
                axes = inits[n.input[1]].tolist()
            rank = shapes.get(n.input[0])
            if axes is not None and rank == 4 and sorted(int(a) % 4 for a in axes) == [2, 3]:
                keep = int(attrs.get("keepdims", 1))
                pooled = n.output[0] if keep else n.output[0] + "__gap"
                new_nodes.append(helper.make_node("GlobalAveragePool", [n.input[0]], [pooled],
                                                  name=(n.name or "ReduceMean") + "/gap"))
                if not keep:
                    new_nodes.append(helper.make_node("Flatten", [pooled], [n.output[0]], axis=1,
                                                      name=(n.name or "ReduceMean") + "/flatten"))
                count += 1
                continue
        new_nodes.append(n)
    if count:
        del g.node[:]
        g.node.extend(new_nodes)
        onnx.checker.check_model(model)
    return count


SIMPLIFY_WORKER = Path(__file__).with_name("_workers") / "onnx_simplify.py"


def _simplify_in_child(onnx_bytes: bytes, timeout_s: float = 300.0):
    """onnxsim in a child process: it segfaults in a process that has loaded TensorFlow."""
    import onnx

    with tempfile.TemporaryDirectory(prefix="ofa-mcu-onnxsim-") as tmp:
        src, dst = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        src.write_bytes(onnx_bytes)
        try:
            r = subprocess.run([sys.executable, str(SIMPLIFY_WORKER), str(src), str(dst)], capture_output=True,
                               text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise ExportError(f"onnxsim did not finish within {timeout_s:.0f} s") from None
        if r.returncode == 2:
            raise ExportError("onnxsim could not validate the simplified ONNX graph")
        if r.returncode != 0:
            tail = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise ExportError(f"onnxsim could not simplify the ONNX graph (exit {r.returncode}): {tail}")
        return onnx.load(str(dst))


def export_onnx(model, path: str | os.PathLike, *, parity_x: np.ndarray, opset: int = 13,
                tolerance: float = ONNX_TOLERANCE) -> OnnxResult:
    """Export `model` (NCHW float input) to `path`; parity_x: float32 NCHW samples for the check."""
    import onnx
    import onnxruntime as ort
    import torch

    if not 13 <= opset <= 17:
        raise ExportError(f"ONNX opset {opset} is outside the supported range 13-17",
                          hint="onnx2tf 1.29 is tested with opsets 13-17")
    model = copy.deepcopy(model).eval()
    example = torch.from_numpy(np.ascontiguousarray(parity_x[:1], dtype=np.float32))
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), buf, opset_version=opset, dynamo=False,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], do_constant_folding=True)
    except Exception as e:
        raise ExportError(f"torch.onnx.export failed: {e.__class__.__name__}: {str(e).splitlines()[0]}",
                          hint="the model must be a static eval-mode module with standard layers") from None
    simplified = _simplify_in_child(buf.getvalue())
    proto = onnx.shape_inference.infer_shapes(simplified)
    _canonical_global_pool(proto)
    data = proto.SerializeToString()

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    diffs = []
    with torch.no_grad():
        for x in parity_x:
            xb = np.ascontiguousarray(x[None], dtype=np.float32)
            ref = model(torch.from_numpy(xb)).numpy()
            got = sess.run(None, {INPUT_NAME: xb})[0]
            diffs.append(float(np.max(np.abs(ref - got))))
    max_diff = max(diffs) if diffs else float("nan")
    if not max_diff <= tolerance:
        raise ExportError(f"ONNX output differs from PyTorch: max abs diff {max_diff:.3g} > {tolerance:g} "
                          f"over {len(diffs)} samples",
                          hint="the PyTorch model may hold ops the ONNX exporter approximates; "
                               "export it in eval mode")
    path = write_bytes(path, data)
    return OnnxResult(Path(path), opset, max_diff, len(diffs), tuple(n.op_type for n in proto.graph.node))
