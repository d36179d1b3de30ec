"""Flash beyond the model, from real firmware builds, against pipeline/costs/flash.py.

For every (board, model): generate the firmware, build it (arm-none-eabi-gcc, TFLite Micro + CMSIS-NN from
TFLM_DIR, int8-only kernel registrations, -Os app, --gc-sections), and measure with arm-none-eabi-size:
flash = text + data; beyond-model flash = flash - the model array; predicted = flash.runtime_code_bytes +
APP_CODE_BYTES. Targets (issue 12.6): |predicted - linked| / linked <= 5% per build, and beyond-model flash
<= 60 kB on Cortex-M4.

    TFLM_DIR=... .venv/bin/python benchmarks/bench_firmware_flash.py [--tflm-dir DIR] \
        [--boards qemu-mps2-an386 qemu-mps2-an500 ...] [--models extra.tflite ...] [--fit] [--out JSON]

Models: three tiny int8 models built in code (tests/tiny_models.py: 8x8x1 digits, 16x16x3, a MobileNetV2
block with a 5x5 depthwise) plus any --models (e.g. TFLM's person_detect.tflite or the MLPerf Tiny
reference models; never committed). `--fit` prints the linker-map attribution per op (for reference only:
the map puts the libc / soft-float code an op pulls in under libc, so it cannot give per-op costs).

The flash model's tables come from differential links instead, never from these models:

    TFLM_DIR=... .venv/bin/python benchmarks/bench_firmware_flash.py --differential \
        --boards qemu-mps2-an386 qemu-mps2-an500 --write-data pipeline/costs/flash_runtime.json

links tiny base models (FULLY_CONNECTED only; RESHAPE only; RESHAPE with an image input) with each op of
DIFF_OPS registered singly (codegen extra_ops), the pairs of DIFF_PAIRS (shared code) and the sets of
DIFF_CHECK_SETS (additivity, not fitted), and fits per core. `--refit A.json B.json` fits earlier
differential runs' builds again without building; `--repredict JSON` predicts an earlier model run again.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from pipeline._io import write_json  # noqa: E402
from pipeline.costs.flash import DEFAULT_BUILD_TYPE  # noqa: E402  (what `make` builds)

TARGET_REL_ERR = 0.05
TARGET_M4_BEYOND = 60 * 1024
DEFAULT_BOARDS = ["qemu-mps2-an386", "qemu-mps2-an500", "qemu-mps2-an505", "qemu-mps3-an547"]

# TFLite Micro kernel file stem (kernels/*.cc, kernels/cmsis_nn/*.cc) -> the TFLite op it implements.
KERNEL_OPS = {
    "conv": "CONV_2D", "depthwise_conv": "DEPTHWISE_CONV_2D", "fully_connected": "FULLY_CONNECTED",
    "add": "ADD", "softmax": "SOFTMAX", "pooling": "AVERAGE_POOL_2D", "reduce": "MEAN", "pad": "PAD",
    "reshape": "RESHAPE", "quantize": "QUANTIZE", "dequantize": "DEQUANTIZE", "mul": "MUL",
    "transpose_conv": "TRANSPOSE_CONV", "concatenation": "CONCATENATION", "logistic": "LOGISTIC",
    "hard_swish": "HARD_SWISH", "strided_slice": "STRIDED_SLICE", "mean": "MEAN",
}
# CMSIS-NN source file prefix -> op (functions only that op's kernel calls).
CMSIS_OPS = [
    ("arm_convolve", "CONV_2D"), ("arm_nn_mat_mult_kernel", "CONV_2D"), ("arm_nn_mat_mult_s8", "CONV_2D"),
    ("arm_depthwise", "DEPTHWISE_CONV_2D"), ("arm_nn_depthwise", "DEPTHWISE_CONV_2D"),
    ("arm_fully_connected", "FULLY_CONNECTED"), ("arm_nn_vec_mat_mult", "FULLY_CONNECTED"),
    ("arm_elementwise_add", "ADD"), ("arm_elementwise_mul", "MUL"), ("arm_softmax", "SOFTMAX"),
    ("arm_avgpool", "AVERAGE_POOL_2D"), ("arm_max_pool", "MAX_POOL_2D"),
]
_MAP_LINE = re.compile(r"^\s*(\S+)?\s+0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]+)\s+(\S+\.(?:o|a\(\S+\.o\)|obj))\s*$")


def member_op(member: str) -> str | None:
    """The op an object file belongs to, or None (framework: interpreter, allocator, libc, app...)."""
    stem = Path(member).stem
    for suffix in ("_common", "_int8", "_s8"):
        if stem.endswith(suffix) and stem[: -len(suffix)] in KERNEL_OPS:
            stem = stem[: -len(suffix)]
    if stem in KERNEL_OPS:
        return KERNEL_OPS[stem]
    for prefix, op in CMSIS_OPS:
        if stem.startswith(prefix):
            return op
    return None


def flash_by_object(map_path: Path) -> dict[str, int]:
    """Bytes placed in flash per input object (archive members as `lib.a(member.o)`), from an ld map."""
    sizes: dict[str, int] = defaultdict(int)
    in_map, pending = False, None
    for line in map_path.read_text(errors="replace").splitlines():
        if line.startswith("Linker script and memory map"):
            in_map = True
            continue
        if not in_map:
            continue
        head = line.split()[0] if line.strip() else ""
        if line.startswith(" .") and len(line.split()) == 1:
            pending = head  # long section name: its address/size/file follow on the next line
            continue
        m = _MAP_LINE.match(line)
        if not m:
            pending = None
            continue
        section = m.group(1) or pending
        pending = None
        if section is None or not section.startswith((".text", ".rodata", ".data", ".ARM", ".isr_vector",
                                                       ".init_array", ".preinit_array", ".fini_array")):
            continue
        size = int(m.group(3), 16)
        obj = m.group(4)
        am = re.search(r"\(([^()]+\.o)\)$", obj)
        sizes[am.group(1) if am else Path(obj).name] += size
    return dict(sizes)


def measure(fw: Path, tflm: str, build_type: str = DEFAULT_BUILD_TYPE) -> dict:
    t0 = time.monotonic()
    r = subprocess.run(["make", "-C", str(fw), "-j2", f"TFLM_DIR={tflm}", f"TFLM_BUILD_TYPE={build_type}",
                        "app.elf"], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stdout[-3000:] + r.stderr[-3000:])
    build_s = time.monotonic() - t0
    out = subprocess.run(["arm-none-eabi-size", str(fw / "app.elf")], capture_output=True, text=True,
                         check=True).stdout.splitlines()[1].split()
    text, data = int(out[0]), int(out[1])
    by_obj = flash_by_object(fw / "app.map")
    per_op: dict[str, int] = defaultdict(int)
    for obj, n in by_obj.items():
        op = member_op(obj)
        if op:
            per_op[op] += n
    return {"text": text, "data": data, "flash": text + data, "build_s": round(build_s, 1),
            "kernel_bytes": dict(per_op), "attributed_bytes": sum(by_obj.values())}


def tiny_models(tmp: Path) -> list[Path]:
    from firmware_helpers import make_scratch_heavy_tflite
    from tiny_models import make_tiny_int8_tflite

    out = []
    p, _ = make_tiny_int8_tflite(tmp / "digits8.tflite")
    out.append(p)
    p, _ = make_tiny_int8_tflite(tmp / "rgb16.tflite", resolution=16, channels=3, num_classes=10, seed=5)
    out.append(p)
    out.append(make_scratch_heavy_tflite(tmp / "mbv2_block.tflite"))
    return out


# --differential: the ops whose marginal flash is measured (those the search space and the reference models
# use, all in pipeline/tflite/micro_ops.py), the pairs checked for shared code, and the multi-op sets that
# check additivity (never fitted).
DIFF_OPS = ["CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MEAN", "AVERAGE_POOL_2D", "MAX_POOL_2D",
            "RESHAPE", "SOFTMAX", "PAD", "QUANTIZE", "DEQUANTIZE", "MUL", "CONCATENATION", "STRIDED_SLICE"]
DIFF_PAIRS = [("CONV_2D", "DEPTHWISE_CONV_2D"), ("AVERAGE_POOL_2D", "MAX_POOL_2D"), ("ADD", "MUL"),
              ("MEAN", "SOFTMAX"), ("QUANTIZE", "DEQUANTIZE"), ("SOFTMAX", "DEQUANTIZE"),
              ("CONV_2D", "FULLY_CONNECTED"), ("DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
DIFF_CHECK_SETS = [["CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN", "SOFTMAX"],
                   ["DEPTHWISE_CONV_2D", "RESHAPE", "SOFTMAX", "PAD"],
                   ["CONV_2D", "AVERAGE_POOL_2D", "MUL", "CONCATENATION", "QUANTIZE"],
                   [op for op in DIFF_OPS if op != "FULLY_CONNECTED"]]
SHARED_MIN_BYTES = 64   # a pair's interaction below this is noise (alignment), not shared code


def base_models(tmp: Path) -> dict[str, Path]:
    """The differential bases, tiny int8 models built in code: `fc` (one FULLY_CONNECTED, vector input),
    `reshape` (one RESHAPE, vector input: gives FULLY_CONNECTED's own marginal) and `reshape_image` (one
    RESHAPE, 4-D int8 image input: the firmware's pixel LUT and conversion, the app's image-input bytes)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf
    from tiny_models import integer_tflite_from_keras, int8_tflite_from_keras

    tf.keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    out = {}
    inp = tf.keras.Input((16,), batch_size=1)
    out["fc"] = tf.keras.Model(inp, tf.keras.layers.Dense(10)(inp)), "vector"
    inp = tf.keras.Input((16,), batch_size=1)
    out["reshape"] = tf.keras.Model(inp, tf.keras.layers.Reshape((4, 4))(inp)), "vector"
    inp = tf.keras.Input((4, 4, 1), batch_size=1)
    out["reshape_image"] = tf.keras.Model(inp, tf.keras.layers.Reshape((16,))(inp)), "image"
    paths = {}
    for name, (model, kind) in out.items():
        if kind == "vector":
            data = integer_tflite_from_keras(model, rng.normal(size=(32, 16)).astype(np.float32))
        else:
            data = int8_tflite_from_keras(model, rng.integers(0, 256, size=(32, 4, 4, 1), dtype=np.uint8))
        paths[name] = tmp / f"base_{name}.tflite"
        paths[name].write_bytes(data)
    return paths


def differential(args, tmp: Path) -> int:
    """Link the base models with extra registrations, fit per core, write the data file flash.py loads."""
    from pipeline.boards import load_board
    from pipeline.codegen import generate_firmware
    from pipeline.tflite.model_info import read_tflite

    bases = base_models(tmp)
    for name, path in bases.items():
        ops = sorted({op.name for op in read_tflite(path)[0].ops})
        print(f"base {name}: ops {ops}", flush=True)
    builds = [("fc", ())] + [("fc", (op,)) for op in DIFF_OPS if op != "FULLY_CONNECTED"]
    builds += [("reshape", ()), ("reshape", ("FULLY_CONNECTED",)), ("reshape_image", ())]
    for a, b in DIFF_PAIRS:  # a pair with FULLY_CONNECTED (in the fc base) is measured on the RESHAPE base
        if b == "FULLY_CONNECTED":
            builds += [("reshape", (a,)), ("reshape", (a, b))]
        else:
            builds.append(("fc", (a, b)))
    builds += [("fc", tuple(s)) for s in DIFF_CHECK_SETS]
    if args.reverse:  # a second process from the other end halves a long run; --refit merges both
        builds = builds[::-1]
    rows = []
    for board_id in args.boards:
        board = load_board(board_id)
        for i, (base, extra) in enumerate(builds):
            model = bases[base]
            data = model.read_bytes()
            fw = generate_firmware(model, board, tmp / f"{board_id}-d{i}", extra_ops=list(extra))
            m = measure(fw, args.tflm_dir, args.build_type)
            row = {"board": board_id, "core": board.core, "build_type": args.build_type, "base": base,
                   "extra_ops": list(extra),
                   "model_bytes": len(data), "text": m["text"], "data": m["data"], "flash": m["flash"],
                   "beyond_model_bytes": m["flash"] - len(data), "build_s": m["build_s"]}
            rows.append(row)
            write_json(args.out, {"rows": rows, "partial": True})  # a cut-off run keeps its builds
            print(f"{board.core:>10} {base:<14} +{','.join(extra) or '-':<60} beyond model "
                  f"{row['beyond_model_bytes']:>7} B ({m['build_s']} s)", flush=True)
    return fit_and_write(rows, args)


def fit_and_write(rows: list[dict], args) -> int:
    kinds = sorted({r.get("build_type", DEFAULT_BUILD_TYPE) for r in rows})
    if len(kinds) != 1:
        raise SystemExit(f"rows of several build types ({', '.join(kinds)}): refit one build type at a time")
    table = fit_differential(rows)
    write_json(args.out, {"rows": rows, "fit": table, "build_type": kinds[0],
                          "measured_on": "linked firmware (arm-none-eabi-size)",
                          "machine": {"nproc": os.cpu_count(), "platform": platform.platform()}})
    if args.write_data:
        write_runtime_data(Path(args.write_data), table, kinds[0])
        print(f"wrote the {kinds[0]} tables of {args.write_data}")
    return 0


def fit_differential(rows: list[dict]) -> dict:
    """Per core: per-op marginals over the fc base, the framework, the image-input app bytes, shared code
    between pairs, and the additivity check on the sets (measured vs the fitted tables).

    FULLY_CONNECTED is in the fc base, so its own bytes come from the RESHAPE base, measured beside CONV_2D:
    FULLY_CONNECTED alone over RESHAPE also brings the quantization arithmetic every quantized kernel
    needs (QuantizeMultiplier's soft-double code, frexp...), which belongs to the framework of any real
    model; beside CONV_2D it is already there. framework = fc base - FULLY_CONNECTED's bytes."""
    out = {}
    for core in sorted({r["core"] for r in rows}):
        rs = [r for r in rows if r["core"] == core]

        def y(base, extra=()):
            hits = [r["beyond_model_bytes"] for r in rs if r["base"] == base and tuple(r["extra_ops"]) == tuple(extra)]
            if not hits:
                raise RuntimeError(f"{core}: no build of base {base} + {extra}")
            return hits[0]

        base = y("fc")
        ops = {op: y("fc", (op,)) - base for op in DIFF_OPS if op != "FULLY_CONNECTED"}
        ops["FULLY_CONNECTED"] = y("reshape", ("CONV_2D", "FULLY_CONNECTED")) - y("reshape", ("CONV_2D",))
        fc_beside_dw = y("reshape", ("DEPTHWISE_CONV_2D", "FULLY_CONNECTED")) - y("reshape", ("DEPTHWISE_CONV_2D",))
        quant_math = y("reshape", ("FULLY_CONNECTED",)) - y("reshape") - ops["FULLY_CONNECTED"]
        framework = base - ops["FULLY_CONNECTED"]
        image = y("reshape_image") - y("reshape")
        shared = []
        for a, b in DIFF_PAIRS:
            if b == "FULLY_CONNECTED":
                continue  # measured on the RESHAPE base: FULLY_CONNECTED's own bytes and their check
            inter = y("fc", (a, b)) - y("fc", (a,)) - y("fc", (b,)) + base
            if abs(inter) >= SHARED_MIN_BYTES:
                shared.append({"ops": [a, b], "bytes": int(inter)})
        table = {"framework_bytes": int(framework), "image_input_bytes": int(image),
                 "op_bytes": {k: int(v) for k, v in sorted(ops.items())}, "shared": shared,
                 "fc_bytes_beside_depthwise": int(fc_beside_dw), "quantize_math_bytes": int(quant_math)}
        checks = []
        for s in DIFF_CHECK_SETS:
            measured = y("fc", tuple(s))
            predicted = predict_from_table(table, ["FULLY_CONNECTED", *s])
            checks.append({"ops": ["FULLY_CONNECTED", *s], "measured": measured, "predicted": predicted,
                           "rel_err": round((predicted - measured) / measured, 4)})
        table["additivity_checks"] = checks
        out[core] = table
        print(f"{core}: framework (app included) {framework} B, image input +{image} B, FULLY_CONNECTED "
              f"{ops['FULLY_CONNECTED']} B beside CONV_2D / {fc_beside_dw} B beside DEPTHWISE_CONV_2D, "
              f"quantization arithmetic {quant_math} B, shared {shared}")
        print("   " + ", ".join(f"{k} {v}" for k, v in table["op_bytes"].items()))
        for c in checks:
            print(f"   additivity {'+'.join(c['ops'])}: measured {c['measured']} predicted {c['predicted']} "
                  f"({c['rel_err']:+.2%})")
    return out


def predict_from_table(table: dict, ops) -> int:
    ops = set(ops)
    total = table["framework_bytes"] + sum(table["op_bytes"][o] for o in ops)
    total += sum(s["bytes"] for s in table["shared"] if set(s["ops"]) <= ops)
    return int(total)


BUILD_DESCRIPTIONS = {
    "release_with_logs": "release_with_logs (NDEBUG, TFLM log and error strings kept), CMSIS-NN, int8-only "
                         "registrations, app -Os, --gc-sections",
    "release": "release (NDEBUG + TF_LITE_STRIP_ERROR_STRINGS), CMSIS-NN, int8-only registrations, app -Os, "
               "--gc-sections",
}


def write_runtime_data(path: Path, fit: dict, build_type: str = DEFAULT_BUILD_TYPE) -> None:
    """Write (or replace) the tables of one build type in the data file; the other build types stay."""
    import datetime

    from pipeline._io import read_json
    from pipeline.codegen.ops import TFLM_COMMIT
    from pipeline.costs.flash import APP_CODE_BYTES

    gcc = subprocess.run(["arm-none-eabi-gcc", "-dumpversion"], capture_output=True, text=True).stdout.strip()
    cores = {}
    for core, t in fit.items():
        cores[core] = {"status": "measured", "framework_bytes": t["framework_bytes"] - APP_CODE_BYTES,
                       "image_input_bytes": t["image_input_bytes"], "op_bytes": t["op_bytes"],
                       "shared": t["shared"], "quantize_math_bytes": t["quantize_math_bytes"],
                       "fc_bytes_beside_depthwise": t["fc_bytes_beside_depthwise"],
                       "additivity_checks": t["additivity_checks"]}
    m4 = cores.get("cortex-m4")
    if m4 is not None:
        for core, factor in ESTIMATED_CORE_FACTORS.items():
            if core not in cores:
                cores[core] = {"status": "estimated, not measured", "scaled_from": "cortex-m4", "factor": factor}
    tables = read_json(path).get("build_types", {}) if path.exists() else {}
    tables[build_type] = {"build": BUILD_DESCRIPTIONS[build_type], "date": datetime.date.today().isoformat(),
                          "cores": cores}
    data = {"what": "flash of the TFLite Micro runtime (framework + registered int8 kernels) beyond the model; "
                    "framework_bytes excludes the app's nominal APP_CODE_BYTES (pipeline/costs/flash.py); "
                    "one table per TFLite Micro build type",
            "method": "differential links: a FULLY_CONNECTED-only int8 model linked with base registrations, then "
                      "with each op registered singly (codegen extra_ops); op bytes = linked (text + data) minus "
                      "the base; FULLY_CONNECTED's own bytes from a RESHAPE-only base with CONV_2D registered "
                      "(so the quantization arithmetic every quantized kernel shares stays in the framework); "
                      "framework = the base minus FULLY_CONNECTED minus app_code_bytes; shared bytes = the "
                      "interaction of a linked pair (negative: code the two share); image_input_bytes = a "
                      "4-D int8 image input (pixel LUT and conversion) minus a vector input. No real model is "
                      "used for the fit (benchmarks/bench_firmware_flash.py --differential)",
            "tflm_commit": TFLM_COMMIT, "compiler": f"arm-none-eabi-gcc {gcc}",
            "measured_on": "linked firmware (arm-none-eabi-size)", "app_code_bytes": APP_CODE_BYTES,
            "default_build_type": DEFAULT_BUILD_TYPE,
            "build_types": {k: tables[k] for k in sorted(tables, key=lambda k: k != DEFAULT_BUILD_TYPE)}}
    write_json(path, data)


# Cores without a measured table (for a build type): the Cortex-M4 table scaled by code density (estimates,
# not measurements). Cortex-M0+/M3: Thumb-1 / no DSP, CMSIS-NN builds without the DSP paths (smaller kernels,
# larger framework code: net 0.95x on M0+, 1.0 on M3). M33 and M55 have measured release_with_logs tables;
# their release tables scale M4's by the measured release_with_logs ratio over the six hold-out models
# (M33/M4 0.98-1.00; M55/M4 0.81-0.92: the MVE kernels replace, not add to, the scalar ones).
ESTIMATED_CORE_FACTORS = {"cortex-m0plus": 0.95, "cortex-m3": 1.0, "cortex-m33": 1.0, "cortex-m55": 0.87}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tflm-dir", default=os.environ.get("TFLM_DIR"))
    ap.add_argument("--boards", nargs="+", default=DEFAULT_BOARDS)
    ap.add_argument("--models", nargs="*", default=[], help="more .tflite files (int8, NHWC image input)")
    ap.add_argument("--fit", action="store_true",
                    help="print the linker-map attribution per op and the remainder (for reference: flash.py's "
                         "tables come from --differential, since the map puts libc/soft-float code an op pulls in "
                         "under libc)")
    ap.add_argument("--differential", action="store_true",
                    help="link base models with each op registered singly (and pairs, and check sets); fit per core")
    ap.add_argument("--write-data", metavar="JSON",
                    help="with --differential: write the fitted tables (e.g. pipeline/costs/flash_runtime.json)")
    ap.add_argument("--reverse", action="store_true",
                    help="with --differential: build the list from its end (run beside a forward run, then --refit)")
    ap.add_argument("--refit", nargs="+", metavar="JSON",
                    help="no builds: fit (and --write-data) the rows of earlier --differential runs' JSON")
    ap.add_argument("--repredict", metavar="JSON",
                    help="no builds: predict the builds of an earlier run's JSON again with the current flash model")
    ap.add_argument("--build-type", choices=tuple(BUILD_DESCRIPTIONS), default=DEFAULT_BUILD_TYPE,
                    help="the firmware's TFLM_BUILD_TYPE (release also strips TFLM's error strings)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.refit:  # no builds: fit the rows of earlier --differential runs (e.g. one per core)
        from pipeline._io import read_json

        args.out = args.out or str(HERE / "results" / "bench_firmware_flash_differential.json")
        return fit_and_write([r for f in args.refit for r in read_json(f)["rows"]], args)
    if args.repredict:
        from pipeline._io import read_json

        args.out = args.out or args.repredict
        return summarize(read_json(args.repredict)["rows"], args)
    if args.out is None:
        args.out = str(HERE / "results" / ("bench_firmware_flash_differential.json" if args.differential
                                            else "bench_firmware_flash.json"))
    if not args.tflm_dir:
        ap.error("--tflm-dir or TFLM_DIR is required (a TensorFlow Lite Micro tree)")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from pipeline.boards import load_board
    from pipeline.codegen import generate_firmware
    from pipeline.costs.flash import is_image_input
    from pipeline.tflite.model_info import read_tflite

    if args.differential:
        with tempfile.TemporaryDirectory(prefix="ofa-flash-diff-") as tmp:
            return differential(args, Path(tmp))
    rows = []
    with tempfile.TemporaryDirectory(prefix="ofa-flash-") as tmp:
        tmp = Path(tmp)
        models = tiny_models(tmp) + [Path(m) for m in args.models]
        for board_id in args.boards:
            board = load_board(board_id)
            for model in models:
                info, data = read_tflite(model)
                ops = sorted({op.name for op in info.ops})
                fw = generate_firmware(model, board, tmp / f"{board_id}-{model.stem}")
                m = measure(fw, args.tflm_dir, args.build_type)
                beyond = m["flash"] - len(data)
                row = {"board": board_id, "core": board.core, "build_type": args.build_type, "model": model.name,
                       "model_bytes": len(data),
                       "ops": ops, "image_input": is_image_input(info.input.shape, info.input.dtype), **m,
                       "beyond_model_bytes": beyond}
                rows.append(row)
                print(f"{board.core:>13} {model.name:<24} flash {m['flash']:>8} B, beyond model {beyond:>7} B, "
                      f"build {m['build_s']} s", flush=True)
    return summarize(rows, args)


def summarize(rows: list[dict], args) -> int:
    """Predict every build's beyond-model flash with pipeline/costs/flash.py (as it is now), print the
    table, write the JSON. `--repredict JSON` re-runs only this on earlier builds (after a refit)."""
    from pipeline.costs.flash import APP_CODE_BYTES, RUNTIME_DATA, runtime_code_bytes

    if not RUNTIME_DATA.exists():
        write_json(args.out, {"rows": rows, "measured_on": "linked firmware (arm-none-eabi-size)"})
        print(f"no {RUNTIME_DATA.name} yet: builds written to {args.out}; run --differential --write-data, "
              f"then --repredict {args.out}")
        return 0
    for row in rows:
        predicted = runtime_code_bytes(row["ops"], row["core"], image_input=row["image_input"],
                                       build_type=row.get("build_type", DEFAULT_BUILD_TYPE)) + APP_CODE_BYTES
        row["predicted_beyond_bytes"] = predicted
        row["rel_err"] = round((predicted - row["beyond_model_bytes"]) / row["beyond_model_bytes"], 4)
        print(f"{row['core']:>13} {row['model']:<28} beyond model {row['beyond_model_bytes']:>7} B, predicted "
              f"{predicted:>7} B ({row['rel_err']:+.1%})")
    worst = max(abs(r["rel_err"]) for r in rows)
    m4 = [r["beyond_model_bytes"] for r in rows if r["core"] == "cortex-m4"]
    kinds = sorted({r.get("build_type", DEFAULT_BUILD_TYPE) for r in rows})
    result = {"rows": rows, "worst_abs_rel_err": worst, "target_rel_err": TARGET_REL_ERR,
              "m4_beyond_model_max_bytes": max(m4) if m4 else None, "target_m4_beyond_bytes": TARGET_M4_BEYOND,
              "met_rel_err": worst <= TARGET_REL_ERR, "met_m4_size": bool(m4) and max(m4) <= TARGET_M4_BEYOND,
              "flash_model": f"pipeline/costs/{RUNTIME_DATA.name} (differential links; these models not used)",
              "measured_on": "linked firmware (arm-none-eabi-size), no hardware needed",
              "tflm_build": "; ".join(BUILD_DESCRIPTIONS[k] for k in kinds),
              "machine": {"nproc": os.cpu_count(), "platform": platform.platform()}}
    print(f"worst |predicted - linked| / linked: {worst:.1%} (target <= {TARGET_REL_ERR:.0%}); "
          f"Cortex-M4 beyond-model max {result['m4_beyond_model_max_bytes']} B (target <= {TARGET_M4_BEYOND})")
    if getattr(args, "fit", False):
        print(fit_tables(rows))
    write_json(args.out, result)
    return 0


def fit_tables(rows: list[dict]) -> str:
    """Per core: op kernel bytes (median over builds that link the op) and the framework (median of
    beyond-model minus the kernels), as the literal pipeline/costs/flash.py holds."""
    from pipeline.costs.flash import APP_CODE_BYTES

    per_core: dict[str, dict] = {}
    for core in sorted({r["core"] for r in rows}):
        rs = [r for r in rows if r["core"] == core]
        ops: dict[str, list[int]] = defaultdict(list)
        for r in rs:
            for op, n in r["kernel_bytes"].items():
                ops[op].append(n)
        table = {op: int(statistics.median(v)) for op, v in sorted(ops.items())}
        framework = int(statistics.median(r["beyond_model_bytes"] - sum(r["kernel_bytes"].values()) - APP_CODE_BYTES
                                          for r in rs))
        per_core[core] = {"framework": framework, "ops": table}
    return "RUNTIME_BYTES = " + repr(per_core)


if __name__ == "__main__":
    sys.exit(main())
