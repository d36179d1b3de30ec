"""A noisy line: the host measures the byte error rate and shrinks its SET_INPUT frames (and window) to
match, so a check with 1% of bytes corrupted and two device resets completes with default options and gives
exactly the clean run's results. Real pseudo-terminal, the firmware's protocol.c (ctypes), TFLM runtime."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import make_tiny_int8_tflite  # noqa: E402

from pipeline._io import read_jsonl  # noqa: E402
from pipeline.serial import check  # noqa: E402
from pipeline.serial.client import LineNoise  # noqa: E402
from pipeline.serial.sim import SimOptions  # noqa: E402


def test_frame_size_follows_the_error_rate():
    sizes = {}
    for p in (0.0, 1e-4, 1e-3, 1e-2, 5e-2):
        n = LineNoise()
        n.tries, n.bytes = 1000.0, 1000.0 * 100
        n.oks = 1000.0 * (1 - p) ** 100
        assert abs(n.byte_error_rate - p) < 1e-6
        sizes[p] = n.chunk_bytes(256)
    assert sizes[0.0] == sizes[1e-4] == 256  # a clean line keeps the device's full frame
    assert sizes[1e-3] < 256 and 24 <= sizes[1e-2] <= 48 and sizes[5e-2] == 16
    n = LineNoise()
    n.note(268, ok=False)  # one unlucky frame on an unknown line does not halve the frame
    assert n.chunk_bytes(256) >= 128


@pytest.mark.slow
def test_one_percent_corruption_and_two_resets_complete_identically(tmp_path):
    """Demo-size input (32x32x1: four full 256-byte frames per sample), default timeout, retries, baud."""
    model, _ = make_tiny_int8_tflite(tmp_path / "model_int8.tflite", resolution=32, channels=1)
    n = 40
    runs = {}
    for name, opts in (("clean", SimOptions()),
                       ("noisy", SimOptions(corrupt_rate=0.01, reset_after=(150, 330), seed=7))):
        runs[name] = check("sim", model, "builtin:digits", out_dir=tmp_path / name, limit=n, sim_options=opts,
                           log=lambda *_: None, progress=False)
    clean, noisy = runs["clean"], runs["noisy"]
    sim = noisy["virtual_board"]["stats"]
    assert sim["corrupted"] > 500 and sim["resets"] == 2 and noisy["link"]["resets"] == 2
    assert max(map(int, noisy["link"]["chunk_bytes"])) == 256 and min(map(int, noisy["link"]["chunk_bytes"])) <= 48
    for key in ("samples", "accuracy", "agreement"):
        assert noisy[key] == clean[key]
    a = {r["i"]: r for r in read_jsonl(tmp_path / "clean" / "check.jsonl") if r.get("kind") == "sample"}
    b = {r["i"]: r for r in read_jsonl(tmp_path / "noisy" / "check.jsonl") if r.get("kind") == "sample"}
    assert sorted(a) == sorted(b) == list(range(n))
    assert all(a[i]["output"] == b[i]["output"] for i in range(n))
    assert sim["invokes"] <= n + 2
