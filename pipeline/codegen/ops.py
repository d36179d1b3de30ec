"""The TFLite builtin ops the generated firmware can register, and how.

The table itself (`OP_TABLE`, `TFLM_COMMIT`) is a fact about the runtime and lives in
`pipeline/tflite/micro_ops.py`; this module turns a model's ops into resolver registrations.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import UnsupportedOpError
from ..tflite.micro_ops import OP_TABLE, TFLM_COMMIT  # noqa: F401  (re-exported for codegen's users)


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
