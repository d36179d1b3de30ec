"""`ofa-mcu demo`: the whole pipeline on the built-in digits, checked on an emulated board: the firmware in
QEMU when it can be built here, else the host runtime on the board's virtual twin (and the report says which)."""
from __future__ import annotations

import time
from pathlib import Path

DEFAULT_BOARD = "qemu-mps2-an386"
# The demo shows the whole loop in under 10 minutes on 2 cores, so it trains a smaller budget than the
# default (30 epochs) and labels fewer predictor samples than deploy's default (300); benchmarks use more.
DEMO_BUDGET_EPOCHS = 12
DEMO_PREDICTOR_SAMPLES = 150


def demo(out: str | Path = "runs/demo", board: str = DEFAULT_BOARD, *, seed: int = 0, quiet: bool = False) -> dict:
    from .deploy import DeployOptions, deploy

    t0 = time.perf_counter()
    out = Path(out)
    say = (lambda m: None) if quiet else (lambda m: print(m, flush=True))
    say(f"demo: train a supernet on builtin:digits ({DEMO_BUDGET_EPOCHS}-epoch budget), then search, export, generate firmware and check it on "
        f"{board}: the firmware itself in QEMU when arm-none-eabi-gcc, a TFLite Micro tree (TFLM_DIR) and "
        f"qemu-system-arm are here, else the host runtime on a virtual board; artifacts in {out}/")
    report = deploy(DeployOptions(board=board, run_dir=out, data="builtin:digits", port=None, seed=seed,
                                  budget=str(DEMO_BUDGET_EPOCHS), predictor_samples=DEMO_PREDICTOR_SAMPLES,
                                  quiet=quiet))
    board_dir = out / "boards" / board
    say("")
    say(f"demo finished in {time.perf_counter() - t0:.0f} s")
    say(f"  firmware folder: {board_dir / 'firmware'}  (README.md inside: make, make sim, make flash)")
    say(f"  report:          {board_dir / 'report.md'}")
    return report
