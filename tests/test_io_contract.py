"""Atomic artifact writes and the input contract shared by every consumer of an int8 model."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline import _io
from pipeline.contract import InputContract


def test_atomic_write_keeps_old_file_when_interrupted(tmp_path):
    target = tmp_path / "report.json"
    _io.write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with _io.atomic_path(target) as tmp:
            tmp.write_text('{"v": 2, "half')
            raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no stray temp files


def test_jsonl_ignores_a_torn_last_line(tmp_path):
    log = tmp_path / "log.jsonl"
    _io.append_jsonl(log, {"i": 0})
    _io.append_jsonl(log, {"i": 1})
    with open(log, "a") as f:
        f.write('{"i": 2, "tor')
    assert [r["i"] for r in _io.read_jsonl(log)] == [0, 1]


def test_contract_lut_is_exact_for_the_canonical_quantization():
    c = InputContract(8, 8, 1, input_scale=1 / 255, input_zero_point=-128)
    assert np.array_equal(np.asarray(c.lut), np.arange(256) - 128)


def test_contract_matches_float_quantization_and_round_trips():
    c = InputContract(4, 4, 3, input_scale=0.0078125, input_zero_point=-3)
    px = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    q = c.quantize(px)
    real = px.astype(np.float64) / 255.0
    expected = np.clip(np.floor(real / c.input_scale + 0.5) + c.input_zero_point, -128, 127)
    assert q.dtype == np.int8 and np.array_equal(q, expected.astype(np.int8))
    assert InputContract.from_dict(json.loads(json.dumps(c.to_dict()))) == c


def test_contract_refuses_wrong_shape_and_dtype():
    c = InputContract(8, 8, 1, 1 / 255, -128)
    with pytest.raises(ValueError, match="does not match the model input"):
        c.quantize(np.zeros((1, 8, 8, 3), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        c.quantize(np.zeros((1, 8, 8, 1), np.float32))
