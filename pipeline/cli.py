"""`ofa-mcu`: one subcommand per stage. Thin: parse, call the stage's entry point, map errors to exit codes.

Each subcommand lives in `pipeline/commands/<name>.py` with `add_arguments(parser)` and `run(args) -> int`,
imported only when that subcommand runs (so `ofa-mcu boards` does not pay for importing TensorFlow).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import textwrap

from .errors import NotBuiltError, OfaMcuError, printable

# name -> (one-line help, example)
COMMANDS: dict[str, tuple[str, str]] = {
    "boards": ("list the board catalog, or show one board", "ofa-mcu boards show nucleo-f746zg"),
    "train": ("train an OFA supernet with progressive shrinking", "ofa-mcu train --data builtin:digits --out runs/digits"),
    "search": ("find the most accurate subnet that fits a board", "ofa-mcu search --supernet runs/digits/supernet --board nucleo-f412zg"),
    "inspect": ("predicted arena, flash, latency and fit of any .tflite on a board", "ofa-mcu inspect model.tflite --board nucleo-l4r5zi"),
    "export": ("export a subnet to full-int8 TFLite, crosschecked", "ofa-mcu export --supernet runs/digits/supernet --arch r24-w50k3e4k3e4-... --out out/"),
    "codegen": ("render a TFLite Micro firmware project for a board", "ofa-mcu codegen --model out/model_int8.tflite --board qemu-mps2-an386 --out fw/"),
    "build": ("build a generated firmware project (make)", "ofa-mcu build fw/"),
    "flash": ("flash a built firmware with the board's runner (make flash)", "ofa-mcu flash fw/"),
    "check": ("measure accuracy on the board over serial", "ofa-mcu check --port auto --model out/model_int8.tflite --data builtin:digits"),
    "profile": ("collect per-op cycles from the board for the latency model", "ofa-mcu profile --port /dev/ttyACM0 --board nucleo-f746zg"),
    "board-sim": ("serve the wire protocol on a pseudo-terminal (virtual board)", "ofa-mcu board-sim --model out/model_int8.tflite"),
    "deploy": ("search, export, codegen, build, flash and check for one board", "ofa-mcu deploy --board qemu-mps2-an386 --supernet runs/digits/supernet"),
    "catalog": ("the best model for every board: files, tables, plots", "ofa-mcu catalog --supernet runs/digits/supernet --boards all"),
    "demo": ("train on the built-in data and deploy to an emulated board", "ofa-mcu demo"),
}

EXIT_CODES = """exit codes:
  0  success            5  invalid space/arch/config   9  tool or tree missing
  1  unexpected error   6  export failed               10 serial link / model mismatch
  2  usage error        7  accuracy gate not met       11 missing or corrupt artifact
  3  board error        8  budget infeasible           12 stage not built yet
  4  dataset error     130 interrupted (Ctrl-C): finished work is kept, re-run to resume"""


def _command_module(name: str):
    modname = f"pipeline.commands.{name.replace('-', '_')}"
    try:
        return importlib.import_module(modname)
    except ModuleNotFoundError as e:
        if e.name == modname:
            return None
        raise


def _subcommand_name(argv: list[str]) -> str | None:
    """The first positional word, skipping the global options (and the value of --boards-dir)."""
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a == "--boards-dir":
            skip = True
        elif not a.startswith("-"):
            return a if a in COMMANDS else None
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ofa-mcu",
        description="Once-for-All supernets for Cortex-M: train once, search per board, export to int8 "
                    "TFLite Micro, generate firmware, check accuracy on the board.",
        epilog="examples:\n" + "\n".join(f"  {ex}" for _, ex in COMMANDS.values()) + "\n\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verbose", "-v", action="store_true", help="show tracebacks and debug output")
    parser.add_argument("--boards-dir", metavar="DIR",
                        help="extra folder of board YAML files (also: OFA_MCU_BOARDS_DIR)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, (help_text, example) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=f"{help_text}.",
                           epilog=f"example:\n  {example}", formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(_command=name)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Find the subcommand before parsing, so its own options exist when `--help` is parsed.
    name = _subcommand_name(argv)
    module = _command_module(name) if name else None
    if module is not None:
        module.add_arguments(parser._subparsers._group_actions[0].choices[name])  # noqa: SLF001
    known, _ = parser.parse_known_args(argv)
    if not getattr(known, "command", None):
        parser.print_help()
        return 0 if not argv else 2
    args = parser.parse_args(argv)
    if args.boards_dir:
        os.environ["OFA_MCU_BOARDS_DIR"] = os.pathsep.join(
            p for p in (os.environ.get("OFA_MCU_BOARDS_DIR", ""), args.boards_dir) if p)
    try:
        if module is None:
            raise NotBuiltError(f"`ofa-mcu {known.command}` is not built yet in this version",
                                hint="see README.md for the stages that are available")
        from .validate import check_args
        check_args(known.command, args)
        return int(module.run(args) or 0)
    except OfaMcuError as e:
        if args.verbose:
            import traceback
            traceback.print_exc()
        # One line: a file name or device string inside the message cannot clear the screen or add lines.
        first, *detail = str(e.message).splitlines() or [""]
        print(f"error: {printable(first)}", file=sys.stderr)
        for line in detail:  # a tool's output tail: kept as lines, each escaped
            print(f"  | {printable(line)}", file=sys.stderr)
        if e.hint:
            print(textwrap.fill(f"hint: {printable(e.hint)}", width=100, subsequent_indent="      "),
                  file=sys.stderr)
        return e.exit_code
    except OSError as e:  # a disk full, a permission, a vanished file: no traceback, name the path
        if args.verbose:
            import traceback
            traceback.print_exc()
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"error: {printable(where)}{printable(e.strerror or e)}", file=sys.stderr)
        print("hint: check the path, its permissions and the free disk space (--verbose shows where)",
              file=sys.stderr)
        return 11
    except Exception as e:  # noqa: BLE001 - a bug: one line, the traceback only with --verbose
        if args.verbose:
            raise
        print(f"error: unexpected {e.__class__.__name__}: {printable(str(e))[:500]}", file=sys.stderr)
        print("hint: this is a bug in ofa-mcu; run again with --verbose for the traceback and report it",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: finished work is kept; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
