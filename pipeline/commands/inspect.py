"""`ofa-mcu inspect MODEL.tflite --board B [--json]`: predicted arena, flash, latency and fit of any model."""
from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="an int8/int16 .tflite file")
    p.add_argument("--board", required=True, help="board id (`ofa-mcu boards`)")
    p.add_argument("--calibration", help="latency calibration JSON for this board (`ofa-mcu profile`)")
    p.add_argument("--per-op", action="store_true", help="also print the per-op breakdown")
    p.add_argument("--json", action="store_true", help="machine-readable JSON")


def _kb(n: int) -> str:
    return f"{n:,} B ({n / 1024:.1f} KiB)"


def run(args) -> int:
    from ..boards import load_board
    from ..costs import inspect_model

    c = inspect_model(args.model, load_board(args.board), calibration=args.calibration)
    d = c.to_dict()
    if not args.per_op:
        d.pop("per_op")
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    print(f"{c.model} on {c.board} ({c.core}, {c.clock_hz / 1e6:g} MHz): {c.ops} ops, {c.macs:,} MACs, "
          f"input {c.input['dtype'].lower()} {c.input['shape']}")
    print(f"  arena, 64-bit host runtime      {_kb(c.arena_host_bytes)}  (predicted minimum)")
    print(f"  arena, {c.core} CMSIS-NN   {_kb(c.arena_cortex_m_bytes)}  (predicted minimum)")
    print(f"  firmware arena (codegen)        {_kb(c.firmware_arena_bytes)}")
    print(f"  SRAM needed / usable            {_kb(c.sram_bytes)} / {_kb(c.usable_sram_bytes)}  "
          f"margin {d['sram_margin_bytes']:+,} B")
    print(f"  flash: model {c.model_bytes:,} + runtime {c.runtime_code_bytes:,} + app {c.app_code_bytes:,} "
          f"= {_kb(c.flash_bytes)} / usable {_kb(c.usable_flash_bytes)}  margin {d['flash_margin_bytes']:+,} B")
    print(f"  runtime flash table             {c.core}: {c.flash_source}")
    print(f"  latency                         {c.latency_ms:.2f} ms ({c.cycles:,} cycles, {c.latency_source} "
          f"coefficients)")
    print(f"  fits: {'yes' if c.fits else 'NO'}")
    if args.per_op:
        for r in c.per_op:
            print(f"    #{r['index']:<3} {r['op']:<18} {r['class']:<5} work {r['work']:>10,}  "
                  f"{r['ms']:8.3f} ms  live {r['live_activation_bytes']:>8,} B  scratch {r['cmsis_scratch_bytes']:>6,} B")
    return 0
