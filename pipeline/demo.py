"""`ofa-mcu demo`: the whole pipeline on the built-in digits, checked on an emulated board: the firmware in
QEMU when it can be built here, else the host runtime on the board's virtual twin (and the report says which)."""
from __future__ import annotations

import time
from pathlib import Path

DEFAULT_BOARD = "qemu-mps2-an386"


def demo(out: str | Path = "runs/demo", board: str = DEFAULT_BOARD, *, seed: int = 0, quiet: bool = False) -> dict:
    from .deploy import DeployOptions, deploy

    t0 = time.perf_counter()
    out = Path(out)
    say = (lambda m: None) if quiet else (lambda m: print(m, flush=True))
    say(f"demo: train a supernet on builtin:digits, then search, export, generate firmware and check it on "
        f"{board}: the firmware itself in QEMU when arm-none-eabi-gcc, a TFLite Micro tree (TFLM_DIR) and "
        f"qemu-system-arm are here, else the host runtime on a virtual board; artifacts in {out}/")
    report = deploy(DeployOptions(board=board, run_dir=out, data="builtin:digits", port=None, seed=seed,
                                  quiet=quiet))
    board_dir = out / "boards" / board
    say("")
    say(f"demo finished in {time.perf_counter() - t0:.0f} s")
    say(f"  firmware folder: {board_dir / 'firmware'}  (README.md inside: make, make sim, make flash)")
    say(f"  report:          {board_dir / 'report.md'}")
    return report
