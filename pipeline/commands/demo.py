"""`ofa-mcu demo`: train on the built-in digits and deploy to an emulated board, checked on the firmware in QEMU
(or, without a cross-compiler / TFLM tree / QEMU, on the board's virtual twin: the host runtime)."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="run directory (default runs/demo); re-running resumes")
    p.add_argument("--board", default="qemu-mps2-an386", help="board id (default qemu-mps2-an386)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")


def run(args) -> int:
    from ..demo import demo

    demo(args.out, args.board, seed=args.seed, quiet=args.quiet)
    return 0
