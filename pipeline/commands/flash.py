"""`ofa-mcu flash`: program a built firmware with the board's runner (make flash)."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="folder written by `ofa-mcu codegen` and built by `ofa-mcu build`")
    p.add_argument("--port", help="serial port, for runners that flash over it (bossac, ambiq)")


def run(args) -> int:
    from ..codegen.make import flash

    flash(args.dir, port=args.port)
    return 0
