"""`ofa-mcu deploy`: search -> export -> codegen -> build -> flash -> check -> report for one board.

Orchestration only: each step calls one stage's entry point and records its input hash in
`boards/<board>/stages.json`, so a re-run (after an interruption or a change) redoes exactly the
steps whose inputs changed. Steps that need something absent here (a cross-compiler, a TFLite Micro
tree, hardware) are reported once as skipped with what to do; that is not a failure of the steps that ran.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import artifacts
from .boards import Board, load_board
from .errors import ArtifactError, UsageError
from .resources import resource_dir
from .stages import StageLog, hash_inputs

_TEMPLATES = resource_dir("firmware_templates")


@dataclass
class DeployOptions:
    board: str
    run_dir: Path
    supernet: Path | None = None          # an existing supernet dir; else train from `data`
    data: str | None = None
    schedule: str | None = None
    budget: str | None = None             # training budget, "EPOCHS" or "Nm" (with `data`; see train --budget)
    space: str | None = None
    latency_ms: float | None = None
    sram_kb: float | None = None
    flash_kb: float | None = None
    port: str | None = None               # None: the firmware in QEMU on emulated boards when it can be built, else sim
    seed: int = 0
    threads: int = 1
    check_limit: int | None = None
    predictor_samples: int = 300
    max_candidates: int = 5
    quiet: bool = False
    extra: dict = field(default_factory=dict)
    patches: str = "off"   # search dimension: patch-based inference (pipeline.supernet.patches)
    finetune_epochs: int = 0   # fine-tune the chosen subnet with KD before export (pipeline.train.finetune)


def _echo(opts: DeployOptions) -> Callable[[str], None]:
    return (lambda _m: None) if opts.quiet else (lambda m: print(m, flush=True))


def _tool_status(board: Board, port: str | None, fw_dir: Path | None = None) -> dict[str, str | None]:
    """Why build / flash cannot run here, or None when they can."""
    from .codegen.make import remembered_tflm_dir

    build = None
    if shutil.which("arm-none-eabi-gcc") is None:
        build = "arm-none-eabi-gcc not found (apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib)"
    elif not (os.environ.get("TFLM_DIR") or (fw_dir is not None and remembered_tflm_dir(fw_dir))):
        build = "TFLM_DIR is not set (run `make tflm` in the firmware folder for how to get a TFLite Micro tree)"
    if build:
        flash = "nothing built"
    elif board.emulated:
        flash = None if shutil.which("qemu-system-arm") else "qemu-system-arm not found"
    elif port in (None, "sim"):
        flash = "no hardware port given (--port sim checks the host runtime on a virtual board, not the firmware)"
    else:
        flash = None
    return {"build": build, "flash": flash}


def check_port(board: Board, port: str | None, missing: dict[str, str | None]) -> str:
    """The port the check uses: as given; else on an emulated board the firmware in QEMU when it could be
    built and QEMU is here (`qemu`), else the virtual board (`sim`: the host runtime, not the firmware)."""
    if port is not None:
        return port
    return "qemu" if board.emulated and not (missing["build"] or missing["flash"]) else "sim"


def deploy(opts: DeployOptions) -> dict:
    """Run the whole chain for one board; return the report dict (also written as report.json/.md).
    One deploy at a time per board folder: a second one is refused (folder_lock), not interleaved."""
    from ._io import folder_lock

    board = load_board(opts.board)
    board_dir = Path(opts.run_dir) / "boards" / board.id
    with folder_lock(board_dir, "deploy"):
        return _deploy_locked(opts, board, board_dir)


def _deploy_locked(opts: DeployOptions, board, board_dir: Path) -> dict:
    echo = _echo(opts)
    run_dir = Path(opts.run_dir)
    stages = StageLog(board_dir)

    supernet_dir = _supernet(opts, run_dir, echo)

    # search + export ("never emit a model that does not fit": candidates are exported until one fits)
    search_hash = hash_inputs(files=[supernet_dir / "weights.pt", supernet_dir / "space.json", board.path],
                              params={"latency_ms": opts.latency_ms, "sram_kb": opts.sram_kb,
                                      "flash_kb": opts.flash_kb, "seed": opts.seed,
                                      "samples": opts.predictor_samples, "max_candidates": opts.max_candidates,
                                      **({"patches": opts.patches} if opts.patches != "off" else {}),
                                      **({"finetune_epochs": opts.finetune_epochs} if opts.finetune_epochs else {})})

    def run_search():
        from .search import select_and_verify
        from .search.predictor import get_predictor

        predictor = get_predictor(supernet_dir, num_samples=opts.predictor_samples, seed=opts.seed,
                                  progress=not opts.quiet)
        sel = select_and_verify(
            supernet_dir, board, board_dir, predictor=predictor, latency_ms=opts.latency_ms,
            sram_bytes=None if opts.sram_kb is None else int(opts.sram_kb * 1024),
            flash_bytes=None if opts.flash_kb is None else int(opts.flash_kb * 1024),
            seed=opts.seed, max_candidates=opts.max_candidates, export_cache=run_dir / "exports",
            search_kwargs={"patches": opts.patches} if opts.patches != "off" else None,
            export_kwargs={"finetune_epochs": opts.finetune_epochs} if opts.finetune_epochs else None,
            log=lambda m: echo(f"         {m}"))
        m = sel.measured
        acc = f"{100 * m.int8_acc:.2f}%" if m.int8_acc is not None else "?"
        return {"line": f"{sel.arch}: int8 {acc}, SRAM {m.sram_bytes / 1024:.1f}/{sel.budget.sram_bytes / 1024:.0f} KiB, "
                        f"flash {m.flash_bytes / 1024:.1f}/{sel.budget.flash_bytes / 1024:.0f} KiB, "
                        f"{len(sel.attempts)} export(s)",
                "arch": str(sel.arch)}

    stages.run("search", search_hash, [artifacts.filename("search result"), "model_int8.tflite",
                                       artifacts.filename("export report")], run_search, echo)
    model = board_dir / "model_int8.tflite"

    # codegen
    fw_dir = board_dir / "firmware"
    codegen_hash = hash_inputs(files=[model, artifacts.path("export report", board_dir), board.path, _TEMPLATES])

    def run_codegen():
        from .codegen import generate_firmware

        generate_firmware(model, board, fw_dir, report=artifacts.path("export report", board_dir))
        return {"line": f"firmware for {board.id} in {fw_dir}"}

    stages.run("codegen", codegen_hash, ["firmware/Makefile", "firmware/main.cc"], run_codegen, echo)

    # build + flash, when this machine can
    missing = _tool_status(board, opts.port, fw_dir)
    port = check_port(board, opts.port, missing)
    built = False
    if missing["build"]:
        echo(f"build    skipped: {missing['build']}")
    else:
        build_hash = hash_inputs(params={"sources": codegen_hash, "TFLM_DIR": os.environ.get("TFLM_DIR")})

        def run_build():
            from .codegen.make import build

            elf = build(fw_dir)
            return {"line": f"firmware built: {elf}"}

        stages.run("build", build_hash, ["firmware/app.elf"], run_build, echo)
        built = True
    if built and missing["flash"]:
        echo(f"flash    skipped: {missing['flash']}")
    elif built and not board.emulated:  # an emulated board has nothing to program; `make sim` runs it
        from .codegen.make import flash

        flash(fw_dir, port=port)
        echo("flash    done")

    # check on the board (or the virtual board)
    # The firmware's own binary is part of a qemu check's inputs: a rebuilt firmware is checked again.
    elf = fw_dir / "app.elf"
    check_hash = hash_inputs(files=[model, board.path] + ([elf] if port == "qemu" and elf.exists() else []),
                             params={"port": port, "data": _data_spec(supernet_dir, opts),
                                     "limit": opts.check_limit, "seed": opts.seed})

    def run_check():
        from .serial import check

        ser = port
        if port == "qemu":  # the firmware itself, on the emulated board
            from .codegen.qemu_board import open_qemu_port
            ser = open_qemu_port(board, model, board.serial_baud, firmware=fw_dir, log=lambda m: None)
        try:
            rep = check(ser, model, _data_spec(supernet_dir, opts), out_dir=board_dir, board=board,
                        limit=opts.check_limit, seed=opts.seed, progress=not opts.quiet, log=lambda m: None)
        finally:
            if not isinstance(ser, str):
                ser.close()
        return {"line": _check_line(rep)}

    if port == "sim" and board.emulated:
        echo("check    on the virtual board: the host runtime, not the firmware "
             f"({missing['build'] or missing['flash'] or 'asked for with --port sim'})")
    if port in ("sim", "qemu") or not (missing["flash"] or board.emulated):
        stages.run("check", check_hash, [artifacts.filename("check report")], run_check, echo)
    else:
        echo(f"check    skipped: {missing['flash']}")

    from .report.deploy_report import write_deploy_report

    report = write_deploy_report(board, supernet_dir, board_dir, missing=missing,
                                 stage_records=stages.records)
    echo(f"report   {board_dir / 'report.md'}")
    return report


def _check_line(rep: dict) -> str:
    return rep["summary"].removeprefix("check: ")


def _data_spec(supernet_dir: Path, opts: DeployOptions) -> str:
    if opts.data:
        return opts.data
    if artifacts.exists("train summary", supernet_dir):
        d = artifacts.read("train summary", supernet_dir)
        spec = d.get("data") if isinstance(d.get("data"), str) else (d.get("data") or {}).get("spec")
        if spec:
            return spec
    raise UsageError(f"cannot tell which dataset {supernet_dir} was trained on", hint="pass --data SPEC")


def _supernet(opts: DeployOptions, run_dir: Path, echo) -> Path:
    if opts.supernet is not None:
        sn = Path(opts.supernet)
        if not (sn / "weights.pt").exists():
            raise ArtifactError(f"{sn} holds no trained supernet (weights.pt missing)",
                                hint="train one with `ofa-mcu train --out RUN` and pass RUN/supernet")
        return sn
    if not opts.data:
        raise UsageError("deploy needs --supernet DIR or --data SPEC (to train first)")
    from .train import TrainConfig, final_summary_line, train_supernet

    sn = run_dir / "supernet"
    stages = StageLog(run_dir)
    h = hash_inputs(files=[p for p in (opts.schedule, opts.space) if p],
                    params={"data": opts.data, "seed": opts.seed,
                            **({"budget": str(opts.budget)} if opts.budget is not None else {})})

    def run_train():
        resume = (sn / "checkpoints").exists() and any((sn / "checkpoints").iterdir())
        train_supernet(TrainConfig(data=opts.data, out=str(run_dir), space=opts.space, schedule=opts.schedule,
                                   budget=opts.budget, seed=opts.seed, threads=opts.threads, resume=resume, quiet=opts.quiet))
        return {"line": final_summary_line(sn)}

    stages.run("train", h, ["supernet/weights.pt", "supernet/" + artifacts.filename("train summary")], run_train, echo)
    return sn
