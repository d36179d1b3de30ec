"""Typed errors. Each carries a hint telling the user what to do next.

The CLI catches `OfaMcuError`, prints one line (`error: <message>` then `hint: <hint>`) and exits with the
class's `exit_code`. The codes are documented in README.md; keep the two in step.
"""
from __future__ import annotations


def printable(text: str) -> str:
    """Text from outside (a device, a file name, a board id) made safe to print and store: control
    characters (terminal escape codes, newlines) and other non-printables become `\\xNN` / `\\uNNNN`
    escapes, a backslash is doubled; everything else is kept."""
    out = []
    for c in str(text):
        if c == "\\":
            out.append("\\\\")
        elif c.isprintable():
            out.append(c)
        else:
            out.append(c.encode("unicode_escape").decode("ascii"))
    return "".join(out)


class OfaMcuError(Exception):
    exit_code = 1
    default_hint = ""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def __str__(self) -> str:
        return self.message


class UsageError(OfaMcuError):
    """The command line itself is wrong (missing or contradictory options)."""
    exit_code = 2
    default_hint = "run `ofa-mcu <command> --help` for the options"


class BoardError(OfaMcuError):
    """A board file is malformed or inconsistent, or a board id is unknown."""
    exit_code = 3
    default_hint = "see boards/schema.json and README.md 'Adding a board'"


class DataError(OfaMcuError):
    """A dataset spec, folder, array file or split is unusable."""
    exit_code = 4
    default_hint = "see README.md 'Datasets' for the accepted layouts"


class InputContractError(DataError):
    """The data and the model disagree on the input (shape, dtype) or on the class count: refused before
    the first sample, naming both sides."""
    exit_code = 4
    default_hint = "give data shaped and typed like the model input (README.md 'Datasets')"


class ConfigError(OfaMcuError):
    """A search space, subnet arch, schedule or run config is invalid."""
    exit_code = 5


class ExportError(OfaMcuError):
    """The PyTorch -> ONNX -> TFLite chain failed or produced an unusable model."""
    exit_code = 6


class UnsupportedOpError(ExportError):
    """The converted model holds ops TFLite Micro cannot run as int8 builtins."""
    exit_code = 6


class AccuracyGateError(OfaMcuError):
    """An accuracy or agreement gate was not met (the numbers are in the message)."""
    exit_code = 7


class BudgetError(OfaMcuError):
    """No subnet fits the requested SRAM / flash / latency budget."""
    exit_code = 8


class ToolMissingError(OfaMcuError):
    """An external program (compiler, flasher, QEMU) or tree (TFLite Micro) is not available."""
    exit_code = 9


class SerialLinkError(OfaMcuError):
    """The serial port is missing, busy, silent, or the device speaks another protocol."""
    exit_code = 10


class ModelMismatchError(SerialLinkError):
    """The firmware on the device runs a different model than the one being checked."""
    exit_code = 10


class ArtifactError(OfaMcuError):
    """A stage input (run directory, checkpoint, report) is missing or corrupt."""
    exit_code = 11
    default_hint = "re-run the stage that produces it, or check the path"


class NotBuiltError(OfaMcuError):
    """The command names a stage that this version of ofa-mcu does not implement yet."""
    exit_code = 12
