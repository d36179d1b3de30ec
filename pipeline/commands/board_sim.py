"""`ofa-mcu board-sim`: serve the wire protocol on a pseudo-terminal with the firmware's protocol.c."""
from __future__ import annotations

import argparse
import signal
import sys
import time

from .check import add_sim_arguments, sim_options


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="the model_int8.tflite to serve")
    p.add_argument("--board", help="board id: its clock and core drive the simulated latency")
    p.add_argument("--baud", type=int, default=115200, help="line rate the bytes are paced at (default 115200)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fault injection")
    p.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    p.add_argument("--protocol", choices=("binary", "eembc", "both"), default="binary",
                   help="binary: ofa-mcu's wire protocol (default); eembc: the MLPerf Tiny runner's text "
                        "protocol; both: the first byte decides, as a firmware built with PROTOCOL=BOTH")
    add_sim_arguments(p)


def run(args) -> int:
    from ..serial.sim import VirtualBoard, require_model, sim_summary

    args.sim_seed = args.seed if args.sim_seed == 0 else args.sim_seed
    import dataclasses

    opts = dataclasses.replace(sim_options(args, args.board), protocol=args.protocol)
    vb = VirtualBoard(require_model(args.model), opts)
    path = vb.start()
    print(path, flush=True)  # first line: the port, for scripts
    print(sim_summary(vb), file=sys.stderr, flush=True)
    # Ctrl-C (SIGINT) or SIGTERM stops the board cleanly, even when it was started with SIGINT ignored (a
    # background job of a non-interactive shell, or a parent that ignores it, passes that on): a server
    # that ignores its documented stop signal would hang whoever stops it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    t_end = time.monotonic() + args.duration if args.duration else None
    try:
        while t_end is None or time.monotonic() < t_end:
            time.sleep(0.2)
            if vb.error is not None:
                raise vb.error
    finally:
        vb.stop()
        print(f"board-sim: {vb.stats.frames_in} frames in, {vb.stats.invokes} inferences, "
              f"{vb.stats.resets} resets", file=sys.stderr)
    return 0
