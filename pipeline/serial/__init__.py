"""Host side of the ofa-mcu wire protocol (docs/PROTOCOL.md): link, client, accuracy check, virtual board,
profiling. Heavy pieces (TFLM, the native device) are imported only by the functions that need them."""
from __future__ import annotations

from .client import DeviceError, InvokeResult, LinkStats, OpCycles, ProtocolClient
from .framing import DeviceInfo
from .link import find_port, open_port


def check(port, model_path, data_spec, **kwargs) -> dict:
    """Measure accuracy and agreement on the device; see pipeline.serial.checker.run_check."""
    from .checker import run_check
    return run_check(port, model_path, data_spec, **kwargs)


def profile(port, model_path, board, **kwargs) -> dict:
    """Collect per-op cycles; see pipeline.serial.profiler.run_profile."""
    from .profiler import run_profile
    return run_profile(port, model_path, board, **kwargs)


__all__ = ["DeviceError", "DeviceInfo", "InvokeResult", "LinkStats", "OpCycles", "ProtocolClient", "check",
           "find_port", "open_port", "profile"]
