"""`ofa-mcu codegen`: render a TFLite Micro firmware project for a board."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="the int8 .tflite (model_int8.tflite from `ofa-mcu export`)")
    p.add_argument("--board", required=True, help="board id (`ofa-mcu boards`)")
    p.add_argument("--out", required=True, help="folder to write the project into")
    p.add_argument("--report", help="export_report.json (default: the one beside the model, if any)")
    p.add_argument("--labels", help="text file with one class label per line (default: 0..N-1)")
    p.add_argument("--app-name", default="ofa_mcu_app", help="C identifier naming the application")
    p.add_argument("--extra-ops", metavar="OP,OP",
                   help="register these TFLite builtin ops too (comma-separated, e.g. SOFTMAX,RESHAPE): "
                        "a firmware that takes model updates needs the union of their ops")
    p.add_argument("--force", action="store_true",
                   help="overwrite files in --out that ofa-mcu did not generate (e.g. your own Makefile)")
    p.add_argument("--ignore-budget", action="store_true",
                   help="generate even when the arena or model exceeds the board's usable SRAM / flash")


def run(args) -> int:
    from ..errors import UsageError
    from ..codegen import generate_firmware

    from .._io import read_text_file

    labels = None
    if args.labels:
        labels = read_text_file(args.labels, what="labels file", max_bytes=4 << 20, error=UsageError).splitlines()
    out = generate_firmware(args.model, args.board, args.out, report=args.report, labels=labels,
                            app_name=args.app_name, force=args.force, ignore_budget=args.ignore_budget,
                            extra_ops=args.extra_ops or ())
    from .. import artifacts
    m = artifacts.read("firmware manifest", out)
    print(f"codegen: {out} for {m['board']}: {len(m['ops'])} ops ({', '.join(m['ops'])}), arena "
          f"{m['arena_bytes']} B ({m['arena_source']}), model {m['model_bytes']} B; next: ofa-mcu build {out}")
    return 0
