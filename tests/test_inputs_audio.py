"""Audio datasets: TFLite Micro's audio frontend features, the audio:PATH folder, the espeak-ng keywords."""
from __future__ import annotations

import shutil
import wave

import numpy as np
import pytest

from pipeline.errors import DataError

pytest.importorskip("pymicro_features", reason="pymicro-features (TFLite Micro's audio frontend) is not installed")
ESPEAK = shutil.which("espeak-ng")
needs_espeak = pytest.mark.skipif(not ESPEAK, reason="espeak-ng is not installed")


def _wav(path, pcm, rate=16000, channels=1):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(pcm, "<i2").tobytes())


def test_features_are_the_micro_frontend_pooled_and_scaled():
    """Recomputed here straight from the frontend: 10 ms pushes, frame pairs averaged, value * 10 -> uint8."""
    from pymicro_features import MicroFrontend

    from pipeline.data.audio import features

    t = np.arange(16000) / 16000
    pcm = (3000 * np.sin(2 * np.pi * 440 * t) * (t > 0.3) * (t < 0.7)
           + np.random.default_rng(0).normal(0, 200, 16000)).astype(np.int16)
    fe, rows = MicroFrontend(), []
    raw = pcm.astype("<i2").tobytes()
    pos = 0
    while pos + 320 <= len(raw):
        out = fe.process_samples(raw[pos:pos + 320])
        pos += out.samples_read * 2
        rows += [out.features] if out.features else []
    rows = np.asarray(rows, np.float32)
    assert rows.shape == (98, 40)  # 30 ms windows every 10 ms over 1 s, 40 channels
    expected = np.clip(np.round(rows.reshape(49, 2, 40).mean(1) * 10), 0, 255).astype(np.uint8)
    got = features(pcm)
    assert got.shape == (49, 40, 1) and got.dtype == np.uint8
    assert np.array_equal(got[..., 0], expected)
    assert not features(np.zeros(16000, np.int16)).any()  # digital silence: all zero


def test_audio_folder_loads_and_refuses_wrong_formats(tmp_path):
    from pipeline.data import load_dataset

    rng = np.random.default_rng(1)
    for cls, freq in (("high", 2000), ("low", 300)):
        (tmp_path / "a" / cls).mkdir(parents=True)
        for i in range(5):
            t = np.arange(12000) / 16000  # shorter than 1 s: zero-padded
            _wav(tmp_path / "a" / cls / f"{i}.wav", 4000 * np.sin(2 * np.pi * freq * t) + rng.normal(0, 100, 12000))
    ds = load_dataset(f"audio:{tmp_path / 'a'}")
    assert ds.x.shape == (10, 49, 40, 1) and ds.class_names == ["high", "low"]
    assert ds.describe()["features"]["channels"] == 40 and ds.native_resolution == (49, 40)
    assert list((tmp_path / "a").glob(".features-*.npz"))  # cached beside the clips
    assert np.array_equal(load_dataset(f"audio:{tmp_path / 'a'}").x, ds.x)
    _wav(tmp_path / "a" / "low" / "bad.wav", np.zeros(100), rate=44100)
    with pytest.raises(DataError, match=r"bad.wav: 44100 Hz, 1 channel\(s\), 16-bit"):
        load_dataset(f"audio:{tmp_path / 'a'}")
    with pytest.raises(DataError, match="not a directory"):
        load_dataset(f"audio:{tmp_path / 'missing'}")


@needs_espeak
def test_keyword_synthesis_is_deterministic_and_has_silence_and_unknown(tmp_path):
    from pipeline.data.keywords import synthesize

    a = synthesize(tmp_path / "a", keywords=("yes", "no"), per_class=3, utterances=2, seed=5)
    b = synthesize(tmp_path / "b", keywords=("yes", "no"), per_class=3, utterances=2, seed=5)
    names = sorted(p.name for p in a.iterdir())
    assert names == ["_silence_", "_unknown_", "no", "yes"]
    for cls in names:
        for f in sorted((a / cls).iterdir()):
            assert f.read_bytes() == (b / cls / f.name).read_bytes()
            with wave.open(str(f)) as w:
                assert (w.getframerate(), w.getnchannels(), w.getnframes()) == (16000, 1, 16000)
    # speech is louder than the silence class' noise
    from pipeline.data.audio import read_wav

    def energy(cls):
        return np.mean([np.abs(read_wav(f)).mean() for f in (a / cls).iterdir()])
    assert energy("yes") > 1.5 * energy("_silence_")


@needs_espeak
def test_builtin_keywords_small_is_cached(tmp_path, monkeypatch):
    from pipeline.data import load_dataset
    from pipeline.data.keywords import keyword_folder

    monkeypatch.setenv("OFA_MCU_CACHE", str(tmp_path))
    ds = load_dataset("builtin:keywords-small")
    assert ds.num_classes == 6 and ds.x.shape[1:] == (49, 40, 1) and ds.features["sample_rate_hz"] == 16000
    folder = keyword_folder("keywords-small")
    stamp = (folder / ".complete").stat().st_mtime_ns
    again = load_dataset("builtin:keywords-small")
    assert (folder / ".complete").stat().st_mtime_ns == stamp and again.fingerprint() == ds.fingerprint()


def test_feature_parameters_reach_the_firmware(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from tiny_models import make_tiny_tensor_tflite

    from pipeline.codegen import generate_firmware
    from pipeline.data.audio import FEATURE_PARAMS

    model, _ = make_tiny_tensor_tflite(tmp_path / "kws.tflite", "kws")
    from pipeline.tflite.model_info import inspect_tflite
    report = {"input_features": FEATURE_PARAMS, "model_sha256": inspect_tflite(model).sha256}
    fw = generate_firmware(model, "qemu-mps2-an386", tmp_path / "fw", report=report)
    settings = (fw / "model_settings.h").read_text()
    assert "#define OFA_INPUT_IS_AUDIO_FEATURES 1" in settings
    assert "window_ms = 30" in settings and "channels = 40" in settings
