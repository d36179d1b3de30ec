from __future__ import annotations

import argparse
import json

from ..boards import list_boards, load_board


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    p.add_argument("board", nargs="?", help="board id, with `show`")
    p.add_argument("--json", action="store_true", help="machine-readable JSON")


def _kb(n: int) -> str:
    return f"{n / 1024:.0f}K" if n < 1 << 20 else f"{n / (1 << 20):.2g}M"


def run(args) -> int:
    from ..errors import UsageError

    if args.action == "show":
        if not args.board:
            raise UsageError("`ofa-mcu boards show` needs a board id", hint="e.g. ofa-mcu boards show nucleo-f746zg")
        b = load_board(args.board)
        d = b.to_dict()
        if args.json:
            print(json.dumps(d, indent=2))
        else:
            width = max(len(k) for k in d)
            for k, v in d.items():
                print(f"{k:<{width}}  {v}")
        return 0
    boards = list_boards()
    if args.json:
        print(json.dumps([b.to_dict() for b in boards], indent=2))
        return 0
    head = ("id", "core", "MHz", "SRAM", "flash", "usable SRAM", "usable flash", "runner")
    rows = [(b.id, b.core, f"{b.clock_mhz:g}", _kb(b.sram_bytes), _kb(b.flash_bytes),
             _kb(b.usable_sram_bytes), _kb(b.usable_flash_bytes), b.flash_runner.tool) for b in boards]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0
