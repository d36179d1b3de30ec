"""Audio datasets: `audio:PATH` (one subfolder per keyword, 16 kHz mono 16-bit WAV files) as spectrograms.

Features come from TensorFlow Lite Micro's audio frontend (tensorflow/lite/experimental/microfrontend, the
one micro_speech and microWakeWord run on the device), through the `pymicro-features` package (its C code,
compiled): 30 ms Hann windows every 10 ms, 512-point FFT, 40 mel filterbank channels over 125-7500 Hz,
noise reduction, PCAN gain control and log scaling; pymicro-features reports each value as the frontend's
uint16 / 25.6. Each clip is cut or zero-padded to `CLIP_SAMPLES` (1 s), giving 98 frames; adjacent frame
pairs are averaged (49 frames, 20 ms apart) and each value becomes a uint8 "pixel" round(value * 10),
clipped to 255. So a sample is a uint8 49x40x1 image and the rest of the pipeline (training, export, the
input contract's table, codegen, check) treats it like any 1-channel image whose height != width.

`FEATURE_PARAMS` is recorded in the dataset description (and so in the export report beside the model),
so a firmware computing features on the device can run the frontend with the same settings.
"""
from __future__ import annotations

import hashlib
import wave
from pathlib import Path

import numpy as np

from ..errors import DataError, ToolMissingError

SAMPLE_RATE = 16000
CLIP_SAMPLES = 16000
FRAME_POOL = 2          # frontend frames averaged into one feature row
UINT8_PER_UNIT = 10.0   # uint8 feature = round(frontend value * 10)
FEATURE_PARAMS = {
    "frontend": "tflite-micro microfrontend via pymicro-features 2.0.2",
    "sample_rate_hz": SAMPLE_RATE, "clip_samples": CLIP_SAMPLES,
    "window_ms": 30, "step_ms": 10, "fft_size": 512, "channels": 40,
    "lower_band_hz": 125.0, "upper_band_hz": 7500.0, "noise_reduction": True, "pcan": True, "log_scale": True,
    "frontend_value": "uint16 output / 25.6", "frame_pool": FRAME_POOL, "uint8_per_unit": UINT8_PER_UNIT,
    "shape": [49, 40, 1],
}


def _frontend():
    try:
        from pymicro_features import MicroFrontend
    except ImportError:
        raise ToolMissingError("audio features need the pymicro-features package (TFLite Micro's audio "
                               "frontend)", hint="pip install pymicro-features==2.0.2") from None
    return MicroFrontend()


def features(pcm: np.ndarray) -> np.ndarray:
    """int16 mono 16 kHz samples -> uint8 (49, 40, 1) features (module docstring)."""
    pcm = np.asarray(pcm, dtype=np.int16)[:CLIP_SAMPLES]
    if len(pcm) < CLIP_SAMPLES:
        pcm = np.concatenate([pcm, np.zeros(CLIP_SAMPLES - len(pcm), np.int16)])
    fe = _frontend()
    audio = pcm.astype("<i2").tobytes()
    rows, pos, step = [], 0, 160 * 2  # feed 10 ms at a time, as a device's audio callback would
    while pos + step <= len(audio):
        out = fe.process_samples(audio[pos:pos + step])
        pos += out.samples_read * 2
        if out.features:
            rows.append(out.features)
    f = np.asarray(rows, dtype=np.float32)  # (98, 40)
    f = f[: len(f) // FRAME_POOL * FRAME_POOL].reshape(-1, FRAME_POOL, f.shape[1]).mean(axis=1)
    return np.clip(np.round(f * UINT8_PER_UNIT), 0, 255).astype(np.uint8)[..., None]


def read_wav(path: Path) -> np.ndarray:
    """16-bit mono 16 kHz PCM WAV -> int16 samples; anything else is a DataError naming the file."""
    try:
        with wave.open(str(path), "rb") as w:
            rate, channels, width, n = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
            data = w.readframes(n)
    except (wave.Error, EOFError, OSError) as e:
        raise DataError(f"{path}: not a readable WAV file ({e})", hint="remove or replace that file") from None
    if rate != SAMPLE_RATE or channels != 1 or width != 2:
        raise DataError(f"{path}: {rate} Hz, {channels} channel(s), {8 * width}-bit; audio datasets take "
                        f"16 kHz mono 16-bit PCM", hint="convert it, e.g. sox IN.wav -r 16000 -c 1 -b 16 OUT.wav")
    return np.frombuffer(data, dtype="<i2").astype(np.int16)


def load_audio_folder(root: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One subfolder per class of WAV files -> (uint8 (N, 49, 40, 1) features, labels, class names)."""
    if not root.is_dir():
        raise DataError(f"{root}: not a directory",
                        hint="audio:PATH takes a folder with one subfolder of 16 kHz WAV files per keyword")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise DataError(f"{root}: {len(classes)} class subfolder(s); keyword spotting needs at least two",
                        hint="put clips in ROOT/yes/001.wav, ROOT/no/002.wav, ...")
    xs, ys = [], []
    for ci, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.is_file() and p.suffix.lower() == ".wav")
        if not files:
            raise DataError(f"{root / name}: class folder holds no .wav files")
        for p in files:
            xs.append(features(read_wav(p)))
            ys.append(ci)
    return np.stack(xs), np.asarray(ys, dtype=np.int64), classes


def folder_digest(root: Path) -> str:
    """Names, sizes and modification times of the WAV files: the key of the feature cache."""
    h = hashlib.sha256(repr(FEATURE_PARAMS).encode())
    for p in sorted(root.rglob("*.wav")):
        st = p.stat()
        h.update(f"{p.relative_to(root)}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]
