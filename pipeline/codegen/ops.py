"""The TFLite builtin ops the generated firmware can register, and how.

The table itself (`OP_TABLE`, `TFLM_COMMIT`) is a fact about the runtime and lives in
`pipeline/tflite/micro_ops.py`; this module turns a model's ops into resolver registrations.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import UnsupportedOpError, UsageError
from ..tflite.micro_ops import OP_TABLE, TFLM_COMMIT  # noqa: F401  (re-exported for codegen's users)


# Int8-only registrations declared in a kernel header that micro_mutable_op_resolver.h does not include (at
# TFLM_COMMIT): op_resolver.h includes it, or `Register_PAD_INT8` is undeclared.
INT8_DECL_HEADERS = {"PAD": "tensorflow/lite/micro/kernels/pad.h",
                     "TRANSPOSE": "tensorflow/lite/micro/kernels/transpose.h"}


@dataclass(frozen=True)
class OpRegistration:
    """One `resolver.AddXxx(...)` line of op_resolver.h."""
    builtin: str        # TFLite BuiltinOperator name, e.g. "CONV_2D"
    method: str         # MicroMutableOpResolver method, e.g. "AddConv2D"
    registration: str   # argument, e.g. "tflite::Register_CONV_2D_INT8()", or "" for the default kernel
    extra: bool = False  # registered beyond the model's ops (codegen's extra_ops)

    @property
    def int8_only(self) -> bool:
        return self.registration.endswith("_INT8()")

    @property
    def header(self) -> str:
        """The kernel header declaring the registration, when the resolver's header does not ("" else)."""
        return INT8_DECL_HEADERS.get(self.builtin, "") if self.int8_only else ""


def op_label(op) -> str:
    """How codegen names an op (an export OpInfo): the builtin name, or CUSTOM(code) for a custom op."""
    return f"CUSTOM({op.name})" if op.is_custom else op.name


def parse_extra_ops(extra_ops) -> tuple[str, ...]:
    """Op names to register beyond the model's (upper-cased, de-duplicated, order kept), each checked."""
    if extra_ops is None:
        return ()
    if isinstance(extra_ops, str):
        extra_ops = extra_ops.split(",")
    names = [str(n).strip().upper() for n in extra_ops]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in OP_TABLE]
    if unknown:
        shown = ", ".join(repr(n[:40]) for n in unknown[:5])
        raise UsageError(
            f"--extra-ops: unknown TFLite Micro op(s) {shown}; supported: {', '.join(sorted(OP_TABLE))}",
            hint="give builtin operator names separated by commas, e.g. --extra-ops SOFTMAX,RESHAPE")
    return tuple(dict.fromkeys(names))


def resolver_entries(ops_in_order: list[str], int8_ops: set[str], extra_ops=()) -> list[OpRegistration]:
    """One registration per distinct op, in first-use order, then the `extra_ops` the model does not use.

    `int8_ops` names the ops whose every instance in the model has int8 activations (and int8 weights),
    the only case where the int8-only kernel is correct. Any op missing from OP_TABLE is an error naming it.
    An extra op (registered for models that will replace this one, e.g. over-the-air updates) gets its
    int8-only kernel when it has one and every op of the model is int8 (an int8 model's successors are
    int8 too); otherwise the default kernel, which serves every type.
    """
    distinct = list(dict.fromkeys(ops_in_order))
    unknown = [op for op in distinct if op not in OP_TABLE]
    if unknown:
        raise UnsupportedOpError(
            f"the model uses op(s) the firmware generator cannot register: {', '.join(unknown)}",
            hint="TFLite Micro's MicroMutableOpResolver has no Add method for them (custom or Flex ops, or "
                 "ops TFLM lacks); change the model so the converter emits TFLM builtins only")
    extra = [op for op in parse_extra_ops(extra_ops) if op not in distinct]
    int8_model = bool(distinct) and all(op in int8_ops for op in distinct)
    entries = []
    for op in distinct + extra:
        method, takes_registration, has_int8 = OP_TABLE[op]
        int8 = op in int8_ops if op in distinct else int8_model
        reg = f"tflite::Register_{op}_INT8()" if (has_int8 and takes_registration and int8) else ""
        entries.append(OpRegistration(op, method, reg, extra=op not in distinct))
    return entries
