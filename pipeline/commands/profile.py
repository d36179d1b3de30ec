"""`ofa-mcu profile`: per-op cycles from the board, written as a latency-model calibration file."""
from __future__ import annotations

import argparse

from .check import add_sim_arguments, sim_options


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", required=True, help="serial device, pyserial URL, `auto` or `sim`")
    p.add_argument("--model", required=True, help="the model_int8.tflite the firmware was built from")
    p.add_argument("--board", required=True, help="board id (clock, core)")
    p.add_argument("--out", help="calibration JSON to write (default: profile_<board>.json beside the model)")
    p.add_argument("--baud", type=int, help="baud rate (default: the board's)")
    p.add_argument("--runs", type=int, default=3, help="profiled inferences; the median per op is kept")
    p.add_argument("--data", help="dataset spec: profile on its first test sample (default: a seeded image)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=0.5, help="seconds to wait for a reply before retrying")
    p.add_argument("--cycles-per-instruction", type=float, metavar="X",
                   help="convert the instruction counts of firmware in QEMU to cycles with this factor "
                        "(without it such a profile is refused as a cycle calibration)")
    add_sim_arguments(p, prefix="sim")


def run(args) -> int:
    from ..serial import profile

    opts = sim_options(args, args.board) if args.port == "sim" else None
    profile(args.port, args.model, args.board, out=args.out, baud=args.baud, runs=args.runs,
            data_spec=args.data, seed=args.seed, timeout_s=args.timeout, sim_options=opts,
            cycles_per_instruction=args.cycles_per_instruction)
    return 0
