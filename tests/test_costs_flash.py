"""The runtime flash model's data (pipeline/costs/flash_runtime.json, fitted from real differential links by
benchmarks/bench_firmware_flash.py --differential; the hold-out check against linked firmware is that
benchmark) and how pipeline/costs/flash.py uses it."""
from __future__ import annotations

from itertools import combinations

import pytest

from pipeline.codegen.ops import TFLM_COMMIT
from pipeline.costs import flash
from pipeline.costs.flash import DEFAULT_BUILD_TYPE, build_types, runtime_code_bytes, runtime_data, runtime_table
from pipeline.errors import ConfigError
from pipeline.tflite.micro_ops import OP_TABLE

# Per build type: cores with a table of their own (differential links) and cores scaled from Cortex-M4's.
MEASURED_BY_BUILD = {"release_with_logs": ("cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55"),
                     "release": ("cortex-m4", "cortex-m7")}
ALL_CORES = ("cortex-m0plus", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55")
MEASURED = MEASURED_BY_BUILD["release"]   # measured in every build type


def test_data_says_what_was_measured_and_how():
    d = runtime_data()
    assert d["tflm_commit"] == TFLM_COMMIT  # refit when the pinned runtime moves
    for key in ("method", "compiler", "measured_on"):
        assert d[key], key
    assert d["app_code_bytes"] == flash.APP_CODE_BYTES  # the framework is stored net of the app's share
    assert d["default_build_type"] == DEFAULT_BUILD_TYPE and {DEFAULT_BUILD_TYPE, "release"} <= set(build_types())
    for kind, entry in d["build_types"].items():
        assert entry["build"].startswith(kind) and entry["date"]
        cores = entry["cores"]
        for core in MEASURED_BY_BUILD[kind]:
            assert cores[core]["status"] == "measured"
        for core in set(ALL_CORES) - set(MEASURED_BY_BUILD[kind]):  # labelled, derived from a measured table
            e = cores[core]
            assert e["status"] == "estimated, not measured" and "op_bytes" not in e
            assert cores[e["scaled_from"]]["status"] == "measured" and 0.5 < e["factor"] < 2


def test_release_build_is_smaller_and_an_unknown_build_type_is_named():
    kinds = ["CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED"]
    for core in MEASURED:  # release strips TFLM's error strings: strictly less code, same kernels
        assert runtime_code_bytes(kinds, core, build_type="release") < runtime_code_bytes(kinds, core)
    assert runtime_code_bytes(kinds, "cortex-m4") == runtime_code_bytes(kinds, "cortex-m4",
                                                                         build_type=DEFAULT_BUILD_TYPE)
    with pytest.raises(ConfigError, match="debug"):
        runtime_code_bytes(kinds, "cortex-m4", build_type="debug")


def test_generated_makefile_builds_the_flash_models_default(tmp_path):
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))
    from tiny_models import make_tiny_int8_tflite

    from pipeline.codegen import generate_firmware
    model, _ = make_tiny_int8_tflite(tmp_path / "m.tflite")
    fw = generate_firmware(model, "qemu-mps2-an386", tmp_path / "fw")
    assert f"TFLM_BUILD_TYPE ?= {DEFAULT_BUILD_TYPE}\n" in (fw / "Makefile").read_text()


@pytest.mark.parametrize("build_type", ["release_with_logs", "release"])
def test_tables_are_plausible_and_name_real_ops(build_type):
    for core in MEASURED_BY_BUILD[build_type]:
        t, factor, status = runtime_table(core, build_type)
        assert factor == 1.0 and status == "measured"
        assert set(t["op_bytes"]) <= set(OP_TABLE)
        assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MEAN", "SOFTMAX"} <= set(t["op_bytes"])
        assert 10_000 < t["framework_bytes"] < 60_000
        assert all(0 <= v < 20_000 for v in t["op_bytes"].values())
        assert 0 <= t["image_input_bytes"] < 4_096
        for s in t["shared"]:  # code two ops share is counted once: never more than the smaller op
            assert set(s["ops"]) <= set(t["op_bytes"]) and -min(t["op_bytes"][o] for o in s["ops"]) <= s["bytes"]


def test_prediction_is_the_table_sum_and_grows_with_every_op():
    t, _, _ = runtime_table("cortex-m4")
    assert runtime_code_bytes(["FULLY_CONNECTED"], "cortex-m4", image_input=False) == \
        t["framework_bytes"] + t["op_bytes"]["FULLY_CONNECTED"]
    assert runtime_code_bytes(["FULLY_CONNECTED"], "cortex-m4") == \
        t["framework_bytes"] + t["op_bytes"]["FULLY_CONNECTED"] + t["image_input_bytes"]
    ops = sorted(t["op_bytes"])
    for core in MEASURED:
        for k in (1, 2):
            for subset in combinations(ops, k):
                base = runtime_code_bytes(subset, core)
                for extra in ops:
                    assert runtime_code_bytes({*subset, extra}, core) >= base, (core, subset, extra)


def test_unmeasured_cores_scale_the_m4_table_and_unknown_ops_are_not_free():
    kinds = ["CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED"]
    m4 = runtime_code_bytes(kinds, "cortex-m4")
    for core in set(ALL_CORES) - set(MEASURED_BY_BUILD[DEFAULT_BUILD_TYPE]):
        factor = runtime_data()["build_types"][DEFAULT_BUILD_TYPE]["cores"][core]["factor"]
        assert runtime_code_bytes(kinds, core) == round(m4 * factor)
    t, _, _ = runtime_table("cortex-m4")
    assert runtime_code_bytes(["FULLY_CONNECTED", "SVDF"], "cortex-m4") - runtime_code_bytes(
        ["FULLY_CONNECTED"], "cortex-m4") == max(t["op_bytes"].values())
