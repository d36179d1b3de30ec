"""Patch-based inference in stock TFLite ops: rewrite an exported int8 model into its patched twin.

`patch_tflite(data, space, arch, plan)` takes the unpatched full-int8 model the export wrote and
applies the plan of `pipeline.supernet.patches` to the flatbuffer itself: the prefix ops are
repeated per patch on STRIDED_SLICE / PAD / CONCATENATION plumbing, with VALID padding, each patch
tensor carrying the quantization of the unpatched tensor it is a region of. Nothing is re-converted
or re-calibrated, so no scale can drift between patches (a per-patch conversion would calibrate a
different scale for every patch output, and CONCATENATION in TFLM refuses inputs whose scale differs
from its output's). Every patch op references the *same* weight and bias tensors, so the weights are
stored once in flash; only the small int32 slice/pad operands are new (`model_bytes` reports it).

Ops run branch by branch, patch after patch, so TFLM's greedy planner frees every branch tensor
before the next patch starts; only the patch outputs (one split tensor in total) stay alive until
the CONCATENATION.

`export_patched` is the export-stage step: rewrite, check the op policy (PAD is allowed here: it pads
a patch at the image border, not a full activation), compare the int8 outputs of both models in the
TFLite Micro runtime on every given input (they must be identical), and measure both arenas.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._io import write_bytes
from ..errors import ExportError
from ..supernet.patches import PatchPlan, PatchSpec, rewrite_graph
from ..supernet.space import SearchSpace, SubnetArch
from ..tflite.model_info import _schema, inspect_tflite

PATCHED_NAME = "model_int8.tflite"
UNPATCHED_NAME = "model_int8.unpatched.tflite"
_NEW_OPS = {"STRIDED_SLICE": 2, "PAD": 2, "CONCATENATION": 2}   # builtin -> op version for int8


def _opcode(m, fb, name: str) -> int:
    code = getattr(fb.BuiltinOperator, name)
    for i, oc in enumerate(m.operatorCodes):
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == code:
            return i
    oc = fb.OperatorCodeT()
    oc.builtinCode = code
    oc.deprecatedBuiltinCode = min(code, 127)
    oc.version = _NEW_OPS[name]
    m.operatorCodes.append(oc)
    return len(m.operatorCodes) - 1


def patch_tflite(data: bytes, plan: PatchPlan) -> bytes:
    """The patched model (bytes) of the unpatched int8 model `data` exported for `plan.net`."""
    import flatbuffers

    fb = _schema()
    info = inspect_tflite(data)
    m = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(data, 0))
    if len(m.subgraphs) != 1:
        raise ExportError("patching needs a single-subgraph model", hint="patch the model `ofa-mcu export` wrote")
    sg = m.subgraphs[0]
    op_io = [(tuple(op.inputs), tuple(op.outputs)) for op in info.ops]
    rg = rewrite_graph(plan, op_io=op_io, is_const=[t.is_constant for t in info.tensors],
                       op_kinds=[op.name for op in info.ops], graph_input=info.inputs[0],
                       graph_output=info.outputs[0])

    tensors = []
    for key, val in rg.tensors:
        if key == "old":
            tensors.append(copy.deepcopy(sg.tensors[val]))
        elif key == "const":
            arr = np.asarray(val.values, dtype=np.int32).reshape(val.shape)
            buf = fb.BufferT()
            buf.data = np.frombuffer(arr.astype("<i4").tobytes(), dtype=np.uint8)
            m.buffers.append(buf)
            t = fb.TensorT()
            t.shape = list(val.shape)
            t.type = fb.TensorType.INT32
            t.buffer = len(m.buffers) - 1
            t.name = f"patches/const_{len(tensors)}".encode()
            tensors.append(t)
        else:
            pt = plan.tensors[val]
            like = info.inputs[0] if pt.like < 0 else op_io[pt.like][1][0]
            t = copy.deepcopy(sg.tensors[like])
            t.shape = list(pt.shape)
            t.shapeSignature = None
            t.buffer = 0   # activations own no data (buffer 0 is the empty sentinel)
            t.name = f"patch{val}".encode()   # short: names are stored in flash
            tensors.append(t)

    ops = []
    for rop in rg.ops:
        if rop.source_op is not None:
            op = copy.deepcopy(sg.operators[rop.source_op])
            if rop.valid_padding:
                op.builtinOptions.padding = fb.Padding.VALID
            op.inputs = list(rop.inputs)
        else:
            op = fb.OperatorT()
            op.opcodeIndex = _opcode(m, fb, rop.kind)
            if rop.kind == "STRIDED_SLICE":
                op.builtinOptionsType = fb.BuiltinOptions.StridedSliceOptions
                op.builtinOptions = fb.StridedSliceOptionsT()
            elif rop.kind == "PAD":
                op.builtinOptionsType = fb.BuiltinOptions.PadOptions
                op.builtinOptions = fb.PadOptionsT()
            else:
                op.builtinOptionsType = fb.BuiltinOptions.ConcatenationOptions
                op.builtinOptions = fb.ConcatenationOptionsT()
                op.builtinOptions.axis = rop.plan_op.axis
        op.inputs = list(rop.inputs)
        op.outputs = list(rop.outputs)
        ops.append(op)

    old_to_new = {val: n for n, (key, val) in enumerate(rg.tensors) if key == "old"}
    sg.tensors, sg.operators = tensors, ops
    sg.inputs, sg.outputs = list(rg.inputs), list(rg.outputs)
    for sig in m.signatureDefs or []:
        for tm in list(sig.inputs or []) + list(sig.outputs or []):
            tm.tensorIndex = old_to_new[tm.tensorIndex]
    desc = m.description.decode() if isinstance(m.description, bytes) else (m.description or "")
    m.description = f"{desc} | ofa-mcu patches {plan.spec}".encode()
    b = flatbuffers.Builder(len(data) + 4096)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


@dataclass
class PatchedExport:
    plan: PatchPlan
    spec: str
    patched_path: Path
    unpatched_path: Path
    model_bytes: int
    unpatched_model_bytes: int
    weight_bytes: int
    unpatched_weight_bytes: int
    samples_compared: int
    identical_samples: int
    arena_bytes: int | None
    unpatched_arena_bytes: int | None
    macs: int
    unpatched_macs: int

    @property
    def identical(self) -> bool:
        return self.identical_samples == self.samples_compared

    def to_dict(self) -> dict:
        d = {k: v for k, v in vars(self).items() if k != "plan"}
        d["patched_path"], d["unpatched_path"] = self.patched_path.name, self.unpatched_path.name
        d["plan"] = self.plan.to_dict()
        d["identical"] = self.identical
        d["halo_mac_overhead"] = round(self.macs / self.unpatched_macs - 1.0, 4)
        if self.arena_bytes and self.unpatched_arena_bytes:
            d["arena_ratio"] = round(self.arena_bytes / self.unpatched_arena_bytes, 4)
        return d


def allowed_violations(info) -> list:
    """Op-policy violations of a patched model, PAD excepted (it pads one patch, not an activation)."""
    from .checks import op_violations
    return [v for v in op_violations(info) if v.op != "PAD"]


def outputs_identical(plain: bytes, patched: bytes, x_int8: np.ndarray) -> int:
    """How many inputs give byte-identical int8 outputs in the TFLite Micro runtime."""
    from .compare import run_tflm, safe_arena_bytes

    a = run_tflm(plain, x_int8, safe_arena_bytes(plain))
    b = run_tflm(patched, x_int8, safe_arena_bytes(patched))
    return int(np.sum(np.all(a.reshape(len(a), -1) == b.reshape(len(b), -1), axis=1)))


def export_patched(tflite_path: str | os.PathLike, space: SearchSpace, arch: SubnetArch,
                   spec: "PatchSpec | str", *, board_sram: int | None = None, x_int8: np.ndarray,
                   measure: bool = True, seed: int = 0) -> PatchedExport:
    """Patch the exported model at `tflite_path` in place (the unpatched one is kept beside it as
    model_int8.unpatched.tflite); raise ExportError if any output differs."""
    from ..costs.patches import choose_patches
    from ..supernet.space import macs
    from .arena import measure_arena

    tflite_path = Path(tflite_path)
    plan = choose_patches(space, arch, PatchSpec.parse(spec))
    if plan is None:
        raise ExportError(f"--patches {spec}: no patch setting lowers the arena of {arch}",
                          hint="export with --patches off")
    plain = tflite_path.read_bytes()
    patched = patch_tflite(plain, plan)
    info, plain_info = inspect_tflite(patched), inspect_tflite(plain)
    bad = allowed_violations(info)
    if bad:
        raise ExportError("the patched model breaks the op policy:\n  " + "\n  ".join(map(str, bad)))
    same = outputs_identical(plain, patched, x_int8)
    if same != len(x_int8):
        raise ExportError(f"the patched model's int8 outputs differ from the unpatched model's on "
                          f"{len(x_int8) - same} of {len(x_int8)} inputs",
                          hint="this is a bug in the patch plan; export with --patches off")
    unpatched_path = Path(write_bytes(tflite_path.with_name(UNPATCHED_NAME), plain))
    write_bytes(tflite_path, patched)
    arena = plain_arena = None
    if measure:
        sample = x_int8[:4]
        arena = measure_arena(tflite_path, inputs_int8=sample, seed=seed).min_arena_bytes
        plain_arena = measure_arena(unpatched_path, inputs_int8=sample, seed=seed).min_arena_bytes
    return PatchedExport(plan, str(PatchSpec.parse(spec)), tflite_path, unpatched_path, info.model_bytes,
                         plain_info.model_bytes, info.weight_bytes, plain_info.weight_bytes, len(x_int8), same,
                         arena, plain_arena, plan.macs, macs(space, arch))
