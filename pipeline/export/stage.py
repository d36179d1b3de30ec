"""The export stage: supernet + arch -> model.onnx, model_int8.tflite, export_report.json.

Loads the supernet, re-calibrates BN for the arch (`calibrated_subnet`), exports with the calibration
split, crosschecks on the test split, measures the TFLite Micro arena, and writes the report. The
report is written even when a gate fails (with `passed: false`), then the gate's error is raised, so
a failed export can be inspected but never mistaken for a good one.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from .. import artifacts
from .._io import read_json, sha256_file
from ..errors import ArtifactError, ConfigError, UsageError
from .arena import measure_arena
from .convert import export_int8
from .compare import crosscheck

REPORT_NAME = artifacts.path("export report", ".").name
EXPORT_DEFAULTS = {"data_spec": None, "seed": 0, "max_drop_points": 2.0, "num_calib": 200, "opset": 13,
                   "patches": "off"}
# Settings keyed only when not at their default, so keys of earlier exports stay valid.
EXPORT_OPTIONAL = {"finetune_epochs": 0}


def export_key(supernet_dir: str | os.PathLike, arch, **settings) -> str:
    """What an export depends on, hashed: the supernet's weights and space, the arch, the export settings.

    A cached export is reused only under the same key, so retraining (new weights.pt) or another
    calibration / opset / seed exports again; the arch id alone would hand back a stale model. Settings
    that do not change the model (progress callbacks) are ignored."""
    import hashlib
    import json

    d = Path(supernet_dir)
    key = {"weights_sha256": sha256_file(d / "weights.pt") if (d / "weights.pt").is_file() else None,
           "space_sha256": sha256_file(d / "space.json") if (d / "space.json").is_file() else None,
           "arch": str(arch), **{k: settings.get(k, v) for k, v in EXPORT_DEFAULTS.items()},
           **{k: settings[k] for k, v in EXPORT_OPTIONAL.items() if settings.get(k, v) != v}}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def parse_arch(text_or_arch, space=None):
    """An arch from a SubnetArch, an id string, a JSON string, or a path to a JSON file."""
    from ..supernet.space import SubnetArch

    if isinstance(text_or_arch, SubnetArch):
        arch = text_or_arch
    else:
        text = str(text_or_arch).strip()
        p = Path(text)
        if not text.startswith("{") and p.suffix == ".json" and p.is_file():
            obj = read_json(p)
            obj = obj.get("arch", obj) if isinstance(obj, dict) else obj  # search.json nests it
            try:
                arch = SubnetArch.from_dict(obj)
            except (KeyError, TypeError) as e:
                raise ConfigError(f"{p}: not an arch JSON ({e})",
                                  hint="expected keys resolution, widths, kernels, expands") from None
        else:
            arch = SubnetArch.parse(text)
    if space is not None:
        space.check_arch(arch)
    return arch


def _dataset_spec(supernet_dir: Path, data_spec: str | None) -> tuple[str, int, str | None]:
    summary = artifacts.read("train summary", supernet_dir) if artifacts.exists("train summary", supernet_dir) else {}
    if data_spec is None:
        data_spec = summary.get("data")
        if not data_spec:
            raise UsageError(f"{artifacts.path('train summary', supernet_dir)} records no dataset, so the export does not know its data",
                             hint="pass --data SPEC (the dataset the supernet was trained on)")
    return str(data_spec), int(summary.get("data_seed", 0)), summary.get("fingerprint")


def export_subnet(supernet_dir: str | os.PathLike, arch, out_dir: str | os.PathLike, *,
                  data_spec: str | None = None, seed: int = 0, max_drop_points: float = 2.0,
                  num_calib: int = 200, opset: int = 13, patches: str = "off", finetune_epochs: int = 0,
                  progress: Callable[[str, str], None] | None = None) -> dict:
    """Run the export stage; return the report dict (also written to out_dir/export_report.json).

    progress(check, line) is called once per finished check (onnx, ops, crosscheck, arena).
    patches: "off", "auto", "RxC" or "RxC@bK" (see `pipeline.supernet.patches`): model_int8.tflite is
    then the patched model, proven output-identical to the unpatched one (kept as
    model_int8.unpatched.tflite) on the whole test split.
    finetune_epochs: fine-tune the subnet that many epochs with KD from the largest subnet before
    exporting (`pipeline.train.finetune`); 0 exports the supernet's weights as they are."""
    import torch

    from ..data import load_dataset
    from ..supernet import load_supernet
    from ..train import calibrated_subnet

    say = progress or (lambda check, line: None)
    t0 = time.perf_counter()
    supernet_dir, out_dir = Path(supernet_dir).resolve(), Path(out_dir).resolve()
    if not supernet_dir.is_dir():
        raise ArtifactError(f"{supernet_dir}: supernet directory not found",
                            hint="train one with `ofa-mcu train` and pass runs/NAME/supernet")
    arch = parse_arch(arch)  # a malformed arch is refused before the supernet is even loaded
    supernet = load_supernet(supernet_dir)
    arch = parse_arch(arch, supernet.space)
    spec, data_seed, trained_fp = _dataset_spec(supernet_dir, data_spec)
    ds = load_dataset(spec, seed=data_seed)
    if ds.channels != supernet.space.in_channels:
        raise ConfigError(f"dataset {spec} has {ds.channels} channel(s) but the supernet expects "
                          f"{supernet.space.in_channels}", hint="pass the dataset the supernet was trained on")

    finetune = None
    if finetune_epochs:
        from ..train.finetune import finetune_subnet
        from ..train.schedule import Schedule

        sched_path = supernet_dir / "schedule.json"
        schedule = Schedule.load(sched_path) if sched_path.exists() else None
        model, finetune = finetune_subnet(supernet, arch, ds, int(finetune_epochs), schedule=schedule, seed=seed)
        say("finetune", f"fine-tune: {finetune.epochs} epoch(s) with KD from the largest subnet, holdout "
                        f"{100 * finetune.holdout_acc_before:.2f}% -> {100 * finetune.holdout_acc_after:.2f}% "
                        f"({finetune.seconds:.1f} s)")
    else:
        model = calibrated_subnet(supernet, arch, ds, seed=seed)
    calib = ds.split("calibration", arch.resolution)
    test = ds.split("test", arch.resolution)

    res = export_int8(model, calib_x_uint8=calib.x, out_dir=out_dir, num_calib=num_calib, seed=seed, opset=opset)
    say("onnx", f"onnx parity: max |torch - onnxruntime| = {res.onnx.max_abs_diff:.2e} (opset {res.onnx.opset}); "
                f"TF float vs ONNX {res.tf_float_max_abs_diff:.2e}")
    counts = res.model.to_dict()["op_counts"]
    say("ops", f"ops: {len(res.model.ops)} int8 builtins, no PAD/TRANSPOSE, NHWC input "
               f"{list(res.model.input.shape)}: " + ", ".join(f"{k} x{v}" for k, v in counts.items()))

    t = time.perf_counter()
    cc = crosscheck(res.tflite_path, model, test.x, test.y, res.contract, max_drop_points=max_drop_points,
                    raise_on_fail=False)
    t_cc = time.perf_counter() - t
    say("crosscheck", ("crosscheck: " if cc.passed else "crosscheck FAILED: ") + cc.summary())

    patched = None
    if cc.passed and str(patches).strip().lower() not in ("off", "none", ""):
        from .patches import export_patched
        t = time.perf_counter()
        patched = export_patched(res.tflite_path, supernet.space, arch, patches,
                                 x_int8=res.contract.quantize(test.x), measure=False, seed=seed)
        plain_arena = measure_arena(patched.unpatched_path, inputs_int8=res.contract.quantize(test.x[:4]),
                                    seed=seed)
        patched.unpatched_arena_bytes = plain_arena.min_arena_bytes
        say("patches", f"patches {patched.plan.spec}: int8 outputs identical to the unpatched model on "
                       f"{patched.identical_samples}/{patched.samples_compared} test images; model "
                       f"{patched.unpatched_model_bytes} -> {patched.model_bytes} B, MACs "
                       f"+{100 * (patched.macs / patched.unpatched_macs - 1):.1f}% "
                       f"({time.perf_counter() - t:.1f} s)")

    t = time.perf_counter()
    arena = measure_arena(res.tflite_path, inputs_int8=res.contract.quantize(test.x[:4]), seed=seed)
    t_arena = time.perf_counter() - t
    say("arena", f"arena: {arena.min_arena_bytes} B minimum (head {arena.head_bytes} + tail {arena.tail_bytes}), "
                 f"floor {arena.floor_bytes} B, arena/floor {arena.arena_over_floor:.3f}, "
                 f"head/floor {arena.head_over_floor:.3f} ({len(arena.probes)} probes)")

    if patched is not None:
        patched.arena_bytes = arena.min_arena_bytes
        say("patches", f"patches: arena {patched.unpatched_arena_bytes} -> {arena.min_arena_bytes} B "
                       f"({arena.min_arena_bytes / patched.unpatched_arena_bytes:.2f}x)")
    timings = dict(res.timings_s, arena=t_arena, crosscheck=t_cc, stage_total=time.perf_counter() - t0,
                   **({"finetune": finetune.seconds} if finetune else {}))
    report = {
        "passed": cc.passed,
        "cache_key": export_key(supernet_dir, arch, data_spec=data_spec, seed=seed,
                                max_drop_points=max_drop_points, num_calib=num_calib, opset=opset,
                                patches=str(patches), finetune_epochs=int(finetune_epochs)),
        "finetune": finetune.to_dict() if finetune else {"epochs": 0},
        "arch": arch.to_dict(),
        "data": {"spec": spec, "seed": data_seed, "fingerprint": ds.fingerprint(),
                 "trained_on_fingerprint": trained_fp, "calibration_split": len(calib),
                 "test_split": len(test)},
        "supernet": str(supernet_dir),
        "seed": seed,
        "accuracy": {"float": cc.float_accuracy, "int8_tflite_ref": cc.tflite_ref_accuracy,
                     "int8_tflm": cc.tflm_accuracy, "drop_points": cc.drop_points,
                     "max_drop_points": max_drop_points, "argmax_agreement": cc.argmax_agreement},
        "crosscheck": cc.to_dict(),
        "arena": arena.to_dict(),
        "model_bytes": patched.model_bytes if patched else res.model.model_bytes,
        "patches": patched.to_dict() if patched else {"spec": "off"},
        "model_sha256": sha256_file(res.tflite_path),
        "input_contract": res.contract.to_dict(),
        "input_features": ds.features,  # audio: the frontend settings the device must use (data/audio.py)
        "export": res.to_dict(),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "tool_versions": res.tool_versions,
        "torch_threads": torch.get_num_threads(),
    }
    artifacts.write("export report", out_dir, report)
    cc.raise_if_failed()
    return report

