"""`ofa-mcu export`: one subnet -> model.onnx, model_int8.tflite, export_report.json (crosschecked)."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--supernet", required=True, metavar="DIR", help="trained supernet, e.g. runs/digits/supernet")
    p.add_argument("--arch", required=True, metavar="ID_OR_JSON",
                   help="arch id (r24-w50k3e4k3e4-...), a JSON object, or a .json file (search.json works)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--data", metavar="SPEC", help="dataset spec (default: the one in the supernet's summary.json)")
    p.add_argument("--max-drop", type=float, default=2.0, metavar="POINTS",
                   help="fail when int8 accuracy is more than this many points below float (default 2.0)")
    p.add_argument("--calib", type=int, default=200, metavar="N", help="calibration images (default 200)")
    p.add_argument("--seed", type=int, default=0, help="seed for calibration subsets (default 0)")
    p.add_argument("--opset", type=int, default=13, help="ONNX opset, 13-17 (default 13)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--finetune-epochs", type=int, default=None, metavar="N",
                   help="fine-tune the subnet N epochs on the training split with distillation from the supernet's largest subnet before exporting (default: the finetune_epochs of a search.json --arch, else 0)")
    p.add_argument("--patches", default="off", metavar="off|auto|RxC[@bK]",
                   help="patch-based inference: run the stem and first K blocks on R x C patches (stock "
                        "TFLite ops, outputs identical, lower arena); auto picks the grid (default off)")


def run(args) -> int:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import torch

    from ..errors import UsageError
    from ..export import export_subnet

    if args.calib < 1:
        raise UsageError(f"--calib must be >= 1, got {args.calib}")
    from ..supernet.patches import PatchSpec
    PatchSpec.parse(args.patches)  # a bad value fails before any work
    if args.max_drop < 0:
        raise UsageError(f"--max-drop must be >= 0, got {args.max_drop}")
    torch.set_num_threads(max(1, args.threads))
    finetune = args.finetune_epochs
    if finetune is None:
        finetune = _recorded_finetune(args.arch)
    report = export_subnet(args.supernet, args.arch, args.out, data_spec=args.data, seed=args.seed,
                           max_drop_points=args.max_drop, num_calib=args.calib, opset=args.opset,
                           patches=args.patches, finetune_epochs=finetune,
                           progress=lambda check, line: print(line, flush=True))
    print(f"wrote {args.out}/model.onnx, model_int8.tflite ({report['model_bytes']} B), export_report.json "
          f"in {report['timings_s']['stage_total']:.1f} s")
    return 0


def _recorded_finetune(arch: str) -> int:
    """finetune_epochs of a search.json given as --arch (written by `ofa-mcu search --finetune-epochs`)."""
    from pathlib import Path

    from .._io import read_json

    p = Path(str(arch))
    if p.suffix == ".json" and p.is_file():
        try:
            v = read_json(p).get("finetune_epochs", 0)
        except Exception:  # not an object: parse_arch names the problem
            return 0
        return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0
    return 0
