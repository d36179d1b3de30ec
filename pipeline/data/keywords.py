"""`builtin:keywords`: an offline keyword-spotting dataset, synthesized with espeak-ng at first use and cached.

Ten keywords (yes no up down left right on off stop go), `_silence_` (background noise only) and
`_unknown_` (other words), spoken by espeak-ng with many voices (English accents x voice variants), speeds
and pitches; each utterance is resampled to 16 kHz, placed at a random offset in a 1 s clip with background
noise (white, pink or brown, random level) and a random gain. Every choice comes from one seeded generator,
so the dataset is the same on every machine with the same espeak-ng. The clips are written as an
`audio:PATH` folder (one subfolder per class of 16 kHz WAV files) under the cache directory
(OFA_MCU_CACHE, default ~/.cache/ofa-mcu/keywords/<key>/); the features (pipeline/data/audio.py) are cached
beside them in features.npz.

`builtin:keywords-small` is the same with 4 keywords and fewer clips (tests, demos).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

from .._io import atomic_path
from ..errors import ToolMissingError
from .audio import CLIP_SAMPLES, SAMPLE_RATE

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN_WORDS = ("cat", "dog", "bird", "house", "tree", "seven", "happy", "wow", "bed", "marvin", "sheila",
                 "learn", "follow", "forward", "visual", "zero")
VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029")
VARIANTS = ("", "+m1", "+m2", "+m3", "+m4", "+m5", "+m7", "+f1", "+f2", "+f3", "+f4", "+f5", "+klatt",
            "+croak", "+whisper")
PRESETS = {
    "keywords": {"keywords": KEYWORDS, "per_class": 120, "utterances": 40},
    "keywords-small": {"keywords": KEYWORDS[:4], "per_class": 24, "utterances": 12},
}
VERSION = 1  # bump when the synthesis changes: the cache key includes it


def cache_root() -> Path:
    return Path(os.environ.get("OFA_MCU_CACHE", Path.home() / ".cache" / "ofa-mcu")) / "keywords"


def _espeak() -> str:
    exe = shutil.which("espeak-ng")
    if not exe:
        raise ToolMissingError("builtin:keywords is synthesized with espeak-ng, which is not installed",
                               hint="apt-get install --no-install-recommends espeak-ng")
    return exe


def _say(exe: str, word: str, voice: str, speed: int, pitch: int, tmp: Path) -> np.ndarray:
    out = tmp / "say.wav"
    subprocess.run([exe, "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(out), word], check=True,
                   capture_output=True, timeout=30)
    with wave.open(str(out), "rb") as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
    if rate != SAMPLE_RATE:
        from scipy.signal import resample_poly
        g = np.gcd(SAMPLE_RATE, rate)
        pcm = resample_poly(pcm, SAMPLE_RATE // g, rate // g)
    nz = np.flatnonzero(np.abs(pcm) > 200)  # trim espeak's leading/trailing silence
    return pcm[nz[0]:nz[-1] + 1] if len(nz) else pcm


def _noise(rng: np.random.Generator, n: int) -> np.ndarray:
    white = rng.normal(0.0, 1.0, n)
    kind = rng.integers(3)
    if kind == 0:
        return white
    spec = np.fft.rfft(white)
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    spec /= np.sqrt(f) if kind == 1 else f  # pink (1/f power) or brown (1/f^2)
    x = np.fft.irfft(spec, n)
    return x / (x.std() + 1e-9)


def _clip(rng: np.random.Generator, speech: np.ndarray | None) -> np.ndarray:
    clip = _noise(rng, CLIP_SAMPLES) * rng.uniform(20.0, 600.0)
    if speech is not None:
        speech = speech[:CLIP_SAMPLES] * rng.uniform(0.3, 1.0)
        start = int(rng.integers(0, CLIP_SAMPLES - len(speech) + 1))
        clip[start:start + len(speech)] += speech
    return np.clip(np.round(clip), -32768, 32767).astype(np.int16)


def _write_wav(path: Path, pcm: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.astype("<i2").tobytes())


def synthesize(root: Path, *, keywords=KEYWORDS, per_class: int = 120, utterances: int = 40,
               seed: int = 0) -> Path:
    """Write the audio:PATH folder (one subfolder per class) into `root`; return root.

    Each keyword gets `utterances` espeak-ng renderings (voice, variant, speed, pitch drawn from the seeded
    generator), each reused with different noise, offset and gain until there are `per_class` clips."""
    exe = _espeak()
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)

        def voices(words, n):
            said = []
            for k in range(n):
                word = words[k % len(words)] if len(words) > 1 else words[0]
                voice = VOICES[rng.integers(len(VOICES))] + VARIANTS[rng.integers(len(VARIANTS))]
                said.append(_say(exe, word, voice, int(rng.integers(110, 230)), int(rng.integers(20, 80)), tmp))
            return said

        classes = {w: voices([w], utterances) for w in keywords}
        classes["_unknown_"] = voices(list(UNKNOWN_WORDS), utterances)
        classes["_silence_"] = [None]
        for name, said in classes.items():
            d = root / name
            d.mkdir(exist_ok=True)
            for i in range(per_class):
                _write_wav(d / f"{i:04d}.wav", _clip(rng, said[i % len(said)]))
    return root


def keyword_folder(name: str = "keywords", seed: int = 0) -> Path:
    """The cached audio folder of a preset, synthesized on first use (atomically: a half-written
    folder from an interrupted run is never used)."""
    p = PRESETS[name]
    key = hashlib.sha256(repr((VERSION, name, p, seed)).encode()).hexdigest()[:12]
    final = cache_root() / f"{name}-{key}"
    if (final / ".complete").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=final.parent))
    try:
        synthesize(work, keywords=p["keywords"], per_class=p["per_class"], utterances=p["utterances"], seed=seed)
        (work / ".complete").write_text("synthesized by ofa-mcu pipeline/data/keywords.py\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(work, final)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return final


def cached_features(root: Path, compute):
    """features.npz beside the clips, keyed by the folder digest; compute() -> (x, y, names) on a miss."""
    from .audio import folder_digest

    digest = folder_digest(root)
    cache = root / f".features-{digest}.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as f:
            return f["x"], f["y"], [str(n) for n in f["class_names"]]
    x, y, names = compute()
    try:
        with atomic_path(cache) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, x=x, y=y, class_names=np.array(names))
    except OSError:
        pass  # a read-only folder: features are recomputed next time
    return x, y, names


def audio_source(kind: str, rest: str, seed: int):
    """(x, y, class names, name, feature parameters) of `audio:PATH` or `builtin:keywords[-small]`."""
    from ..errors import DataError
    from .audio import FEATURE_PARAMS, load_audio_folder

    if kind == "builtin":
        if rest not in PRESETS:
            raise DataError(f"unknown built-in dataset '{rest}'",
                            hint="built-in keyword datasets: " + ", ".join(f"builtin:{k}" for k in PRESETS))
        root, name = keyword_folder(rest), rest
    else:
        root = Path(rest).expanduser()
        name = root.name
        if not root.is_dir():
            raise DataError(f"{root}: not a directory",
                            hint="audio:PATH takes a folder with one subfolder of 16 kHz WAV files per keyword")
    x, y, names = cached_features(root, lambda: load_audio_folder(root))
    return x, y, names, name, dict(FEATURE_PARAMS)
