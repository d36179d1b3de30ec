"""`ofa-mcu build`: build a generated firmware folder with make (arm-none-eabi-gcc, TFLM_DIR)."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="folder written by `ofa-mcu codegen`")
    p.add_argument("--tflm-dir", help="TensorFlow Lite Micro source tree (default: $TFLM_DIR)")
    p.add_argument("--reference-kernels", action="store_true",
                   help="TFLM reference kernels instead of CMSIS-NN (bit-exact with the host runtime)")
    p.add_argument("-j", "--jobs", type=int, default=None, help="parallel make jobs")


def run(args) -> int:
    from ..codegen.make import build

    elf = build(args.dir, tflm_dir=args.tflm_dir, reference_kernels=args.reference_kernels, jobs=args.jobs)
    print(f"build: {elf}; next: ofa-mcu flash {args.dir}")
    return 0
