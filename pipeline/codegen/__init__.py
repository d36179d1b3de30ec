"""Firmware generation: a TFLite Micro project folder per board, rendered from firmware_templates/.

Public entry: `generate_firmware(model_path, board, out_dir, report=None, labels=None)`.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from .. import artifacts
from .._io import read_json, sha256_bytes, sha256_file, write_bytes, write_json, write_text
from ..boards import Board, load_board
from ..contract import InputContract
from ..errors import ArtifactError, BudgetError, UsageError
from ..tflite.model_info import ModelInfo, read_tflite
from .arena import ArenaPlan, plan_arena
from .context import (FirmwareContext, _tensor, board_context, check_contract, check_served_tensors,
                      core_flags, generator_version, model_data_lines)
from .ops import TFLM_COMMIT, op_label, parse_extra_ops, resolver_entries
from .render import render_files

__all__ = ["generate_firmware", "build_context", "plan_arena", "measured_arena_bytes", "FirmwareContext",
           "MANIFEST"]

MANIFEST = artifacts.path("firmware manifest", ".").name
MAX_LABEL_BYTES = 1024  # per label: kLabelLengths is uint16_t, and a label is for a display or a log line
MODEL_COPY, REPORT_COPY = "model_int8.tflite", artifacts.path("export report", ".").name


def measured_arena_bytes(report: dict) -> int | None:
    """The measured minimum TFLM arena (64-bit host runtime) of an export report, or None if it has none.

    The key is `arena.min_arena_bytes` (pipeline/export/arena.py ArenaReport). Never `arena_used_bytes()`
    (`recorded_total_bytes`): it under-reports the true minimum.
    """
    arena = report.get("arena")
    if arena is None:
        return None
    value = arena.get("min_arena_bytes") if isinstance(arena, dict) else None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ArtifactError("the export report's 'arena' has no positive 'min_arena_bytes'",
                            hint="re-run `ofa-mcu export`, which measures the minimum arena")
    return value


def read_model(path: Path) -> tuple[ModelInfo, bytes]:
    """The model and its bytes; the firmware serves exactly one input and one output tensor."""
    model, data = read_tflite(path)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ArtifactError(f"{path}: the firmware expects one input and one output tensor, the model has "
                            f"{len(model.inputs)} and {len(model.outputs)}")
    return model, data


def _int8_ops(model: ModelInfo) -> set[str]:
    """Ops whose every instance has int8 activations (and int8 weights where it has weights)."""
    ok: dict[str, bool] = {}
    for op in model.all_ops:
        tensors = [t for t in model.op_inputs(op) if t is not None]
        acts = [t for t in tensors if not t.is_constant] + list(model.op_outputs(op))
        weights = [t for t in tensors if t.is_constant and len(t.shape) > 1]
        good = all(t.dtype == "INT8" for t in acts) and all(t.dtype == "INT8" for t in weights)
        ok[op_label(op)] = ok.get(op_label(op), True) and good
    return {k for k, v in ok.items() if v}


def _load_report(model_path: Path, report: str | os.PathLike | dict | None) -> tuple[dict | None, bool]:
    if isinstance(report, dict):
        return report, True
    if report is None:
        default = artifacts.path("export report", model_path.parent)
        if not default.exists():
            return None, False
        report = default
    return artifacts.read("export report", report), True


def _labels(labels, report: dict | None, num_classes: int) -> tuple[str, ...]:
    if labels is None and report is not None:
        labels = report.get("labels")
    if labels is None:
        return tuple(str(i) for i in range(num_classes))
    labels = tuple(str(x) for x in labels)
    for i, label in enumerate(labels):
        if len(label.encode("utf-8")) > MAX_LABEL_BYTES:
            raise UsageError(f"label {i} is {len(label.encode('utf-8')):,} bytes long; labels may have at most "
                             f"{MAX_LABEL_BYTES} (UTF-8)", hint="shorten the label (one class name per line)")
    if len(labels) != num_classes:
        raise UsageError(f"{len(labels)} labels given for a model with {num_classes} outputs",
                         hint="give exactly one label per output class, in class-index order")
    return labels


def build_context(model_path: str | os.PathLike, board: Board, *, report=None, labels=None,
                  app_name: str = "ofa_mcu_app", extra_ops=()) -> FirmwareContext:
    """Everything the templates receive, checked: model, board, export report, labels."""
    model_path = Path(model_path)
    extra_ops = parse_extra_ops(extra_ops)  # a bad name fails before any file is read
    model, data = read_model(model_path)
    rep, used = _load_report(model_path, report)
    check_served_tensors(model, str(model_path))
    contract: InputContract | None = None
    if rep is not None and rep.get("input_contract") and rep["input_contract"].get("layout", "NHWC") == "NHWC":
        contract = InputContract.from_dict(rep["input_contract"])
        check_contract(contract, model)
    elif len(model.input.shape) == 4 and model.input.dtype == "INT8":
        shape = model.input.shape  # an image: raw uint8 pixels through the LUT (pixel / 255)
        contract = InputContract(shape[1], shape[2], shape[3], model.input.scale, model.input.zero_point)
    # else a tensor input (vector, int16): the host sends the tensor's values, there is no pixel table
    if rep is not None and rep.get("model_sha256"):
        if rep["model_sha256"] != model.sha256:
            raise ArtifactError("the export report describes another model (sha256 differs)",
                                hint="pass the export_report.json written next to this model")
    num_classes = model.output.shape[-1] if model.output.shape else 1
    measured = measured_arena_bytes(rep) if rep is not None else None
    arena: ArenaPlan = plan_arena(model, board.core, measured)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", app_name):
        raise UsageError(f"app name {app_name!r} is not a C identifier",
                         hint="use letters, digits and underscores, not starting with a digit")
    return FirmwareContext(
        generator=generator_version(), app_name=app_name, model_sha256=model.sha256,
        model_hash_bytes=tuple(bytes.fromhex(model.sha256)[:16]), model_bytes=model.model_bytes,
        model_data_lines=model_data_lines(data), input=_tensor(model.input), output=_tensor(model.output),
        input_lut=tuple(int(v) for v in contract.lut) if contract else (),
        pixel_scale=contract.pixel_scale if contract else 0.0,
        pixel_offset=contract.pixel_offset if contract else 0.0, labels=_labels(labels, rep, num_classes), num_classes=num_classes,
        ops=tuple(resolver_entries([op_label(op) for op in model.all_ops], _int8_ops(model), extra_ops)),
        op_count=len(model.all_ops), op_codes=tuple(op.code for op in model.ops),
        op_names=tuple(op_label(op) for op in model.ops), arena=arena, board=board_context(board),
        core=core_flags(board), tflm_commit=TFLM_COMMIT, report_used=used, data_spec=_data_spec(rep),
        input_kind="image" if contract else "tensor",
        input_features=tuple((str(k), str(v)) for k, v in ((rep or {}).get("input_features") or {}).items()))


def _data_spec(report: dict | None) -> str:
    data = (report or {}).get("data")
    spec = data.get("spec") if isinstance(data, dict) else data
    return spec if isinstance(spec, str) else ""


def _owned_files(out: Path) -> set[str]:
    """Files in `out` that an earlier codegen wrote: those its manifest lists (and the manifest)."""
    previous = out / MANIFEST
    if not previous.is_file():
        return set()
    try:
        m = read_json(previous)
    except ArtifactError:
        return set()
    if not isinstance(m, dict) or not str(m.get("generated_by", "")).startswith("ofa-mcu"):
        return set()
    return {n for n in m.get("files", []) if isinstance(n, str)} | {MANIFEST}


def _refuse_foreign(out: Path, files: dict[str, str], owned: set[str]) -> None:
    """Refuse to replace a file that no earlier codegen wrote here (the user's own Makefile, say)."""
    foreign = []
    for name, text in files.items():
        path = out / name
        if not path.exists() and not path.is_symlink():
            continue
        if not path.is_file():
            foreign.append(f"{name} (not a file)")
            continue
        if name in owned or sha256_file(path) == sha256_bytes(text.encode("utf-8")):
            continue  # ours, or already exactly what we would write
        foreign.append(name)
    if foreign:
        raise UsageError(f"{out}: would overwrite {len(foreign)} file(s) not generated by ofa-mcu: "
                         + ", ".join(sorted(foreign)[:6]) + (" ..." if len(foreign) > 6 else ""),
                         hint="choose an empty --out folder, or pass --force to overwrite them")


def check_fits(ctx: FirmwareContext, board: Board) -> None:
    """The arena must fit the board's usable SRAM and the model its usable flash (BudgetError otherwise)."""
    over = []
    if ctx.arena.bytes > board.usable_sram_bytes:
        over.append(f"tensor arena {ctx.arena.bytes:,} B > usable SRAM {board.usable_sram_bytes:,} B")
    if ctx.model_bytes > board.usable_flash_bytes:
        over.append(f"model {ctx.model_bytes:,} B > usable flash {board.usable_flash_bytes:,} B")
    if over:
        raise BudgetError(f"the model does not fit {board.id}: " + "; ".join(over),
                          hint="search for a subnet that fits this board (ofa-mcu search), or pass "
                               "--ignore-budget to generate the project anyway")


def generate_firmware(model_path: str | os.PathLike, board: Board | str, out_dir: str | os.PathLike, *,
                      report: str | os.PathLike | dict | None = None, labels=None,
                      app_name: str = "ofa_mcu_app", force: bool = False,
                      ignore_budget: bool = True, extra_ops=()) -> Path:
    """Render a self-contained firmware project for `board` into `out_dir`; return out_dir.

    `report` defaults to export_report.json beside the model (measured arena, input contract, labels);
    without one the arena is an estimate and model_settings.h says so. All files are rendered in memory
    first, then each is written atomically, so a failure leaves no half-written file.

    A file in `out_dir` that codegen did not write is never replaced unless `force`: the manifest
    (firmware.json, "generated_by": "ofa-mcu ...", "files") is the marker of what it wrote. Unless `ignore_budget`, an arena or model over the board's usable SRAM/flash is refused.

    `extra_ops` (builtin names, e.g. ["SOFTMAX", "RESHAPE"]) are registered beyond the model's own ops:
    a firmware that will take model updates needs the union of their ops. Unknown names are refused.
    """
    if isinstance(board, str):
        board = load_board(board)
    ctx = build_context(model_path, board, report=report, labels=labels, app_name=app_name,
                        extra_ops=extra_ops)
    if not ignore_budget:
        check_fits(ctx, board)
    files = render_files(ctx)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a directory", hint="choose another --out")
    owned = _owned_files(out)
    if not force:
        _refuse_foreign(out, {**files, MANIFEST: ""}, owned)
    stale = [n for n in owned if n not in files and "/" not in n and n not in (MANIFEST, MODEL_COPY)]
    for name, text in files.items():
        write_text(out / name, text)
    # The model and its report beside the sources, so `ofa-mcu check --model model_int8.tflite` works from the
    # folder as README.md writes it (the report carries the input contract and labels the check uses).
    copies = []
    model_path = Path(model_path)
    if model_path.resolve() != (out / MODEL_COPY).resolve():
        write_bytes(out / MODEL_COPY, model_path.read_bytes())
    copies.append(MODEL_COPY)
    rep, _ = _load_report(model_path, report)
    if rep is not None and model_path.with_name(REPORT_COPY).resolve() != (out / REPORT_COPY).resolve():
        write_json(out / REPORT_COPY, rep)  # verbatim: the report the model came with
    if rep is not None:
        copies.append(REPORT_COPY)
        stale = [n for n in stale if n != REPORT_COPY]
    for name in stale:  # generated last time for another family (e.g. startup.c), not any user file
        (out / name).unlink(missing_ok=True)
    artifacts.write("firmware manifest", out, {
        "generated_by": ctx.generator, "board": board.id, "model_sha256": ctx.model_sha256,
        "model_bytes": ctx.model_bytes, "arena_bytes": ctx.arena.bytes, "arena_source": ctx.arena.source,
        "arena_base_bytes": ctx.arena.base_bytes, "ops": [op.builtin for op in ctx.ops],
        "core": board.core, "family": board.family, "pico_sdk": ctx.board.pico_sdk,
        "flash_runner": {"tool": ctx.board.runner_tool, "program": ctx.board.runner_program,
                         "install": ctx.board.runner_install, "needs_port": ctx.board.runner_needs_port},
        "tflm_commit": ctx.tflm_commit, "files": sorted([*files, *copies])})
    return out
