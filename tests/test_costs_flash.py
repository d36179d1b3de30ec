"""The runtime flash model's data (pipeline/costs/flash_runtime.json, fitted from real differential links by
benchmarks/bench_firmware_flash.py --differential; the hold-out check against linked firmware is that
benchmark) and how pipeline/costs/flash.py uses it."""
from __future__ import annotations

from itertools import combinations

from pipeline.codegen.ops import TFLM_COMMIT
from pipeline.costs import flash
from pipeline.costs.flash import runtime_code_bytes, runtime_data, runtime_table
from pipeline.tflite.micro_ops import OP_TABLE

MEASURED = ("cortex-m4", "cortex-m7")
ESTIMATED = ("cortex-m0plus", "cortex-m3", "cortex-m33", "cortex-m55")


def test_data_says_what_was_measured_and_how():
    d = runtime_data()
    assert d["tflm_commit"] == TFLM_COMMIT  # refit when the pinned runtime moves
    for key in ("method", "compiler", "build_type", "date", "measured_on"):
        assert d[key], key
    assert d["app_code_bytes"] == flash.APP_CODE_BYTES  # the framework is stored net of the app's share
    for core in MEASURED:
        assert d["cores"][core]["status"] == "measured"
    for core in ESTIMATED:  # no measurement: labelled, and derived from a measured table
        entry = d["cores"][core]
        assert entry["status"] == "estimated, not measured" and "op_bytes" not in entry
        assert d["cores"][entry["scaled_from"]]["status"] == "measured" and 0.5 < entry["factor"] < 2


def test_tables_are_plausible_and_name_real_ops():
    for core in MEASURED:
        t, factor, status = runtime_table(core)
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
    for core in ESTIMATED:
        factor = runtime_data()["cores"][core]["factor"]
        assert runtime_code_bytes(kinds, core) == round(m4 * factor)
    t, _, _ = runtime_table("cortex-m4")
    assert runtime_code_bytes(["FULLY_CONNECTED", "SVDF"], "cortex-m4") - runtime_code_bytes(
        ["FULLY_CONNECTED"], "cortex-m4") == max(t["op_bytes"].values())
