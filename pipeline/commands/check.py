"""`ofa-mcu check`: accuracy and agreement of the firmware on the board, over serial."""
from __future__ import annotations

import argparse


def add_sim_arguments(p: argparse.ArgumentParser, *, prefix: str = "") -> None:
    g = p.add_argument_group("virtual board" + (" (with --port sim)" if prefix else ""))
    g.add_argument("--drop-rate", type=float, default=0.0, metavar="P", help="drop each byte with probability P")
    g.add_argument("--corrupt-rate", type=float, default=0.0, metavar="P",
                   help="corrupt each byte with probability P")
    g.add_argument("--reset-after", type=str, default="", metavar="N[,M...]",
                   help="reset the board once after N received frames (then after M, ...)")
    g.add_argument("--delay-ms", type=float, default=0.0, metavar="D",
                   help="delay each reply by a further random 0..D ms")
    g.add_argument("--turnaround-ms", type=float, default=1.0, metavar="T",
                   help="latency added to each reply, like a USB serial adapter (default 1 ms)")
    g.add_argument("--window", type=int, default=8, help="input frames the host may pipeline (default 8)")
    g.add_argument("--sim-seed", type=int, default=0, help="seed of the fault injection")


def sim_options(args, board_id: str | None):
    from ..errors import UsageError
    from ..serial.sim import SimOptions

    try:
        resets = tuple(int(v) for v in args.reset_after.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"--reset-after takes frame counts like 300 or 300,700, not '{args.reset_after}'") from None
    for name in ("drop_rate", "corrupt_rate"):
        if not 0.0 <= getattr(args, name) < 1.0:
            raise UsageError(f"--{name.replace('_', '-')} must be in [0, 1)")
    return SimOptions(baud=args.baud or 115200, turnaround_ms=args.turnaround_ms, drop_rate=args.drop_rate,
                      corrupt_rate=args.corrupt_rate, reset_after=resets, delay_ms=args.delay_ms,
                      seed=args.sim_seed, window=args.window, board=board_id)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", required=True, help="serial device, pyserial URL, `auto` (USB VID/PID of the "
                                                 "board), `qemu` (build the firmware and run it on the emulated "
                                                 "--board) or `sim` (a virtual board: the host runtime, not "
                                                 "the firmware)")
    p.add_argument("--model", required=True, help="the model_int8.tflite the firmware was built from")
    p.add_argument("--data", required=True, help="dataset spec; its test split is sent (e.g. builtin:digits); "
                                                 "npz:PATH with int8/int16/float x shaped like the model input "
                                                 "(all samples are sent)")
    p.add_argument("--board", help="board id (for --port auto, the clock and the default baud)")
    p.add_argument("--baud", type=int, help="baud rate (default: the board's, else 115200)")
    p.add_argument("--out", help="folder for check.jsonl and check_report.json (default: beside the model)")
    p.add_argument("--gate", type=float, default=0.99,
                   help="minimum share of samples agreeing with the host on the metric (default 0.99)")
    p.add_argument("--metric", choices=("auto", "top1", "mse"), default="auto",
                   help="top1: argmax agreement (classifiers); mse: anomaly-score agreement (autoencoders); "
                        "auto (default): top1 when the data has labels matching the output length, else mse "
                        "when the output is shaped like the input")
    p.add_argument("--limit", type=int, help="check only the first N test samples")
    p.add_argument("--protocol", choices=("binary", "eembc"), default="binary",
                   help="binary: the ofa-mcu wire protocol (default); eembc: the MLPerf Tiny runner's text "
                        "protocol (firmware built with PROTOCOL=EEMBC or BOTH, or MLPerf Tiny reference "
                        "firmware; docs/PROTOCOL.md)")
    p.add_argument("--seed", type=int, default=0, help="dataset split seed (default 0)")
    p.add_argument("--timeout", type=float, default=0.5, help="seconds to wait for a reply before retrying")
    p.add_argument("--retries", type=int, default=10, help="retries per request before giving up")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = p.add_argument_group("firmware in QEMU (with --port qemu)")
    g.add_argument("--firmware", metavar="DIR", help="generated firmware folder to build and run (default: the "
                                                     "model's firmware/ if generated for it, else firmware-BOARD/)")
    g.add_argument("--tflm-dir", metavar="DIR", help="TensorFlow Lite Micro tree (default: $TFLM_DIR, or the "
                                                     "one the folder remembers)")
    add_sim_arguments(p, prefix="sim")


def run(args) -> int:
    from ..serial import check

    opts = sim_options(args, args.board) if args.port == "sim" else None
    port = args.port
    if port == "qemu":  # build the firmware and start it on the emulated board; its UART is the port
        from ..boards import load_board
        from ..codegen.qemu_board import open_qemu_port

        board = load_board(args.board) if args.board else None
        port = open_qemu_port(board, args.model, args.baud or 115200, firmware=args.firmware,
                              tflm_dir=args.tflm_dir)
    try:
        check(port, args.model, args.data, out_dir=args.out, baud=args.baud, board=args.board, gate=args.gate,
              limit=args.limit, seed=args.seed, timeout_s=args.timeout, retries=args.retries, sim_options=opts,
              progress=False if args.no_progress else None, metric=args.metric, protocol=args.protocol)
    finally:
        if not isinstance(port, str):
            port.close()
    return 0
