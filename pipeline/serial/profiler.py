"""Per-op cycles from the board (PROFILE command) -> the calibration file the latency model fits.

Format (docs/PROTOCOL.md, "Calibration file"): board, core, clock, cycle source, model, and per op
{index, op_type, op_code, class, kernel, input_shapes, output_shapes, macs, [elements], cycles (median
of the runs), cycles_runs}; `pipeline.costs.fit_latency(calibration["ops"], board)` fits it directly.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .._io import write_json
from ..boards import Board, load_board
from ..errors import ModelMismatchError, SerialLinkError, UsageError
from ..tflite.model_info import inspect_tflite
from .client import ProtocolClient
from .link import open_port
from .latency import model_macs, op_class_work, op_macs, op_shapes

FORMAT = "ofa-mcu-op-profile"
FORMAT_VERSION = 1


def run_profile(port, model_path, board: Board | str, *, out=None, baud: int | None = None, runs: int = 3,
                data_spec: str | None = None, seed: int = 0, timeout_s: float = 0.5, sim_options=None,
                cycles_per_instruction: float | None = None, log=print) -> dict:
    """Profile `runs` inferences on the device; write and return the calibration dict.

    Firmware in QEMU counts executed instructions, not cycles: such a profile is refused as a cycle
    calibration (UsageError) unless `cycles_per_instruction` says how to convert; the file then keeps the
    instruction counts beside the converted cycles and names the factor."""
    if cycles_per_instruction is not None and not cycles_per_instruction > 0:
        raise UsageError(f"--cycles-per-instruction must be positive, not {cycles_per_instruction}")
    model_path = Path(model_path)
    model = inspect_tflite(model_path)
    board = load_board(board) if isinstance(board, str) else board
    baud = baud or board.serial_baud
    if data_spec:
        from .inputs import check_data
        data = check_data(model_path, model, data_spec, seed=seed)
        q = data.quantized(0)
        x = np.ascontiguousarray(q).astype(q.dtype.newbyteorder("<")).tobytes()
    else:  # any defined input will do: integer kernel timing hardly depends on the values
        x = np.random.default_rng(seed).integers(0, 256, size=model.input.nbytes, dtype=np.uint8).tobytes()
    own_port = isinstance(port, str)
    ser = open_port(port, baud, board, model=model_path, sim_options=sim_options) if own_port else port
    client = ProtocolClient(ser, timeout_s=timeout_s)
    try:
        info = client.hello()
        if info.model_hash != model.hash16:
            raise ModelMismatchError(f"the device runs model {info.model_hash} but {model_path.name} is "
                                     f"{model.hash16}", hint="profile the model the firmware was built from")
        if info.counts_instructions and cycles_per_instruction is None:
            raise UsageError(
                f"{info.board_id} reports executed instructions (firmware in QEMU, -icount), not cycles of a "
                f"real core: they cannot calibrate the cycle model as they are",
                hint="profile the board's hardware, or pass --cycles-per-instruction X (a factor you measured, "
                     "e.g. hardware cycles / QEMU instructions for one model) to convert them explicitly")
        client.send_input(x)
        all_runs = [client.profile() for _ in range(max(1, runs))]
    finally:
        client.close() if own_port else client.detach()
    codes = [o.op_code for o in all_runs[0]]
    if codes != [o.code for o in model.ops]:
        raise SerialLinkError(f"the device profiled {len(codes)} ops {codes[:8]}... but the model has "
                              f"{len(model.ops)} ops {[o.code for o in model.ops][:8]}...",
                              hint="the firmware's profiler must report one entry per model op, in order")
    cpi = cycles_per_instruction if info.counts_instructions else None
    ops = []
    for op in model.ops:
        counted = [int(r[op.index].cycles) for r in all_runs]
        per_run = [int(round(c * cpi)) for c in counted] if cpi else counted
        cls, work, kernel = op_class_work(model, op)
        ins, outs = op_shapes(model, op)
        # op/class/kernel/macs|elements/cycles make each entry a row pipeline.costs.fit_latency reads as is
        ops.append({"index": op.index, "op_type": op.name, "op": op.name, "op_code": op.code,
                    "class": cls, "kernel": kernel,
                    "input_shapes": [list(s) for s in ins],
                    "output_shapes": [list(s) for s in outs], "macs": op_macs(model, op),
                    **({} if cls in ("conv", "pw", "dw", "fc") else {"elements": work}),
                    "cycles": int(np.median(per_run)), "cycles_runs": per_run,
                    **({"instructions": int(np.median(counted))} if cpi else {})})
    source = "simulated" if info.simulated else ("timer" if info.cycles_from_timer else "cycle counter")
    if cpi:
        source = f"QEMU instructions x {cpi:g} cycles per instruction (given)"
    result = {"format": FORMAT, "version": FORMAT_VERSION, "board": board.id, "core": board.core,
              "clock_hz": board.clock_hz, "cycle_source": source, "cycle_hz": board.clock_hz if cpi else info.cycle_hz,
              "simulated": info.simulated, "measured_on": info.measured_on,
              "cycles_per_instruction": cpi, "firmware_version": info.firmware_version,
              "device_board_id": info.board_id, "model": str(model_path), "model_sha256": model.sha256,
              "runs": len(all_runs), "total_macs": model_macs(model), "total_cycles": sum(o["cycles"] for o in ops),
              "ops": ops}
    out = Path(out) if out else model_path.with_name(f"profile_{board.id}.json")
    write_json(out, result)
    clock = board.clock_hz if cpi else info.cycle_hz
    ms = result["total_cycles"] / clock * 1e3 if clock else float("nan")
    log(f"profile: {len(ops)} ops, {result['total_cycles']} cycles ({ms:.3g} ms, {source}) on {board.id} "
        f"-> {out}")
    return result
