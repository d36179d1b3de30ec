"""The one reader of .tflite files (ops, tensors, quantization, buffers) that every stage uses.

It sits below the stages (export, costs, codegen, serial, search all read models through it) and
imports nothing of theirs.
"""
from .model_info import (ModelInfo, OpInfo, SubgraphInfo, TensorInfo, inspect_tflite, op_name,
                         read_tflite)

__all__ = ["ModelInfo", "OpInfo", "SubgraphInfo", "TensorInfo", "inspect_tflite", "op_name", "read_tflite"]
