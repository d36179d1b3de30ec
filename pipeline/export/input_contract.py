"""Build the input contract from the exported model, and prove its table matches TFLite's own rounding.

The contract's 256-entry LUT is what host checks, firmware and the serial checker feed the int8 model.
`verify_contract` builds a one-op TFLite model (float32 -> QUANTIZE -> int8 with the model's input
scale and zero point), runs all 256 pixel values through TFLite's reference kernel and TFLite Micro,
and requires both to equal the LUT: so a float pipeline that quantizes on the device agrees too.
"""
from __future__ import annotations

import numpy as np

from ..contract import InputContract
from ..errors import ExportError
from .compare import reference_interpreter
from ..tflite.model_info import ModelInfo


def contract_from_model(info: ModelInfo) -> InputContract:
    """InputContract of an NHWC int8 model (raw uint8 pixels -> pixel/255 -> model input quantization)."""
    t = info.input
    _, h, w, c = t.shape
    return InputContract(height=int(h), width=int(w), channels=int(c), input_scale=float(t.scales[0]),
                         input_zero_point=int(t.zero_points[0]))


def quantize_op_model(scale: float, zero_point: int, n: int = 256) -> bytes:
    """A valid .tflite holding one QUANTIZE op: float32[n] -> int8[n] at (scale, zero_point)."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

    def tensor(name, ttype, quant=None):
        t = fb.TensorT()
        t.shape, t.type, t.buffer, t.name, t.quantization = [n], ttype, 0, name, quant
        return t

    q = fb.QuantizationParametersT()
    q.scale, q.zeroPoint = [float(scale)], [int(zero_point)]
    op = fb.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0], [1]
    sg = fb.SubGraphT()
    sg.tensors = [tensor("pixels_float", fb.TensorType.FLOAT32), tensor("input_int8", fb.TensorType.INT8, q)]
    sg.inputs, sg.outputs, sg.operators, sg.name = [0], [1], [op], "main"
    code = fb.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = fb.BuiltinOperator.QUANTIZE
    code.version = 1
    m = fb.ModelT()
    m.version, m.operatorCodes, m.subgraphs, m.buffers = 3, [code], [sg], [fb.BufferT()]
    m.description = "ofa-mcu input contract check"
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def verify_contract(contract: InputContract) -> dict:
    """Run every pixel value through TFLite's and TFLite Micro's QUANTIZE; raise if either differs."""
    from tflite_micro.python.tflite_micro import runtime as tflm

    pixels = np.arange(256, dtype=np.uint8)
    real = contract.to_float(pixels).astype(np.float32)
    lut = np.asarray(contract.lut, dtype=np.int8)
    model = quantize_op_model(contract.input_scale, contract.input_zero_point)

    ref = reference_interpreter(model)
    ref.set_tensor(ref.get_input_details()[0]["index"], real)
    ref.invoke()
    tfl = ref.get_tensor(ref.get_output_details()[0]["index"]).astype(np.int8)

    micro = tflm.Interpreter.from_bytes(model, arena_size=64 * 1024)
    micro.set_input(real, 0)
    micro.invoke()
    tfm = np.asarray(micro.get_output(0)).astype(np.int8)

    bad = [(name, np.flatnonzero(out != lut)) for name, out in (("TFLite", tfl), ("TFLite Micro", tfm))]
    bad = [(name, idx) for name, idx in bad if len(idx)]
    if bad:
        name, idx = bad[0]
        p = int(idx[0])
        got = tfl[p] if name == "TFLite" else tfm[p]
        raise ExportError(f"input contract LUT disagrees with {name}'s QUANTIZE on {len(idx)} of 256 pixel "
                          f"values (first: pixel {p} -> LUT {int(lut[p])}, {name} {int(got)})",
                          hint="pipeline/contract.py must round like TFLite (half away from zero)")
    return {"checked_pixel_values": 256, "tflite_quantize_equal": True, "tflm_quantize_equal": True}
