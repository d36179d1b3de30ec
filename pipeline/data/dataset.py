from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError

SPLITS = ("train", "holdout", "calibration", "test")
DEFAULT_FRACTIONS = {"train": 0.6, "holdout": 0.1, "calibration": 0.1, "test": 0.2}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
BUILTIN_IMAGES = ("digits", "digits-rgb", "shapes")
BUILTINS = BUILTIN_IMAGES + ("keywords", "keywords-small")  # every builtin:NAME (keywords: keywords.py)


@dataclass(frozen=True)
class Split:
    x: np.ndarray  # uint8, (N, H, W, C)
    y: np.ndarray  # int64, (N,)
    indices: np.ndarray  # positions in the full dataset, for provenance

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Dataset:
    name: str
    spec: str
    x: np.ndarray
    y: np.ndarray
    class_names: list[str]
    seed: int
    fractions: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_FRACTIONS))
    features: dict | None = None  # audio datasets: the feature parameters (pipeline/data/audio.py)
    _split_idx: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self._split_idx = stratified_split(self.y, self.fractions, self.seed)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return int(self.x.shape[3])

    @property
    def native_resolution(self) -> tuple[int, int]:
        return int(self.x.shape[1]), int(self.x.shape[2])

    def split(self, name: str, resolution: int | tuple[int, int] | None = None) -> Split:
        if name not in self._split_idx:
            raise DataError(f"unknown split '{name}'", hint=f"use one of {list(SPLITS)}")
        idx = self._split_idx[name]
        x = self.x[idx]
        if isinstance(resolution, int) and self.features:
            # A spectrogram: `resolution` is the number of time frames; the feature axis stays as computed.
            resolution = (resolution, self.native_resolution[1])
        if resolution is not None:
            x = resize_images(x, resolution)
        return Split(x=x, y=self.y[idx], indices=idx)

    def fingerprint(self) -> str:
        """A hash of the data and the split, recorded by every stage that consumes them."""
        h = hashlib.sha256()
        h.update(self.x.tobytes())
        h.update(self.y.astype(np.int64).tobytes())
        h.update(repr((self.seed, sorted(self.fractions.items()))).encode())
        return h.hexdigest()[:16]

    def describe(self) -> dict:
        return {"spec": self.spec, "name": self.name, "num_samples": int(len(self.y)),
                "num_classes": self.num_classes, "class_names": list(self.class_names),
                "channels": self.channels, "native_resolution": list(self.native_resolution),
                "seed": self.seed, "fractions": dict(self.fractions),
                "split_sizes": {k: int(len(v)) for k, v in self._split_idx.items()},
                "fingerprint": self.fingerprint(),
                **({"features": dict(self.features)} if self.features else {})}


def stratified_split(y: np.ndarray, fractions: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """Per class, shuffle with a seeded generator and cut by the fractions; every split gets each class
    when the class has enough samples. Deterministic for (y, fractions, seed)."""
    names = [n for n in SPLITS if fractions.get(n, 0) > 0]
    total = sum(fractions[n] for n in names)
    if abs(total - 1.0) > 1e-6:
        raise DataError(f"split fractions sum to {total}, not 1.0: {fractions}")
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        idx = idx[rng.permutation(len(idx))]
        n = len(idx)
        # Largest-remainder rounding so the counts add up to n exactly.
        raw = np.array([fractions[s] * n for s in names])
        counts = np.floor(raw).astype(int)
        for j in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
            counts[j] += 1
        start = 0
        for s, cnt in zip(names, counts):
            parts[s].append(idx[start:start + cnt])
            start += cnt
    return {s: np.sort(np.concatenate(parts[s])) for s in names}


def resize_images(x: np.ndarray, resolution: int | tuple[int, int]) -> np.ndarray:
    """uint8 NHWC -> uint8 NHWC at resolution x resolution, or (height, width) for a non-square model
    input (bilinear, antialiased when shrinking).

    The one resize every consumer uses, so host and board see the same pixels."""
    height, width = (resolution, resolution) if isinstance(resolution, int) else map(int, resolution)
    if x.shape[1] == height and x.shape[2] == width:
        return x
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float()
    shrink = height < x.shape[1] or width < x.shape[2]
    t = F.interpolate(t, size=(height, width), mode="bilinear", align_corners=False, antialias=shrink)
    return t.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


# -- sources --------------------------------------------------------------------------------------
def _builtin_digits(rgb: bool, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.clip(np.round(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[..., None]
    y = d.target.astype(np.int64)
    if rgb:
        rng = np.random.default_rng(seed + 7919)
        fg = rng.uniform(0.4, 1.0, size=(len(x), 1, 1, 3))
        bg = rng.uniform(0.0, 0.3, size=(len(x), 1, 1, 3))
        a = x.astype(np.float64) / 255.0
        x = np.clip(np.round((a * fg + (1 - a) * bg) * 255.0), 0, 255).astype(np.uint8)
    return x, y, [str(i) for i in range(10)]


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in ("x", "y") if k not in f.files]
            if missing:
                raise DataError(f"{path}: missing array(s) {missing}; found {f.files}",
                                hint="save with np.savez(path, x=images, y=labels)")
            x, y = f["x"], f["y"]
            names = [str(n) for n in f["class_names"]] if "class_names" in f.files else None
    except DataError:
        raise
    except Exception as e:  # zipfile / pickle errors: the file itself is bad
        raise DataError(f"{path}: cannot read as .npz ({e})") from None
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[3] not in (1, 3):
        raise DataError(f"{path}: 'x' must be (N,H,W) or (N,H,W,C) with C in (1,3), got shape {x.shape}")
    if y.ndim != 1:
        raise DataError(f"{path}: 'y' must be one-dimensional, got shape {y.shape}")
    if len(x) != len(y):
        raise DataError(f"{path}: 'x' has {len(x)} samples but 'y' has {len(y)} labels",
                        hint="x and y must have the same length")
    if x.dtype != np.uint8:
        if not np.issubdtype(x.dtype, np.floating):
            raise DataError(f"{path}: 'x' must be uint8 or float in [0,1], got {x.dtype}")
        if x.size and (np.nanmin(x) < 0 or np.nanmax(x) > 1 or np.isnan(x).any()):
            raise DataError(f"{path}: float 'x' must lie in [0, 1]")
        x = np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: 'y' must hold integer class ids, got {y.dtype}")
    y = y.astype(np.int64)
    k = int(y.max()) + 1 if len(y) else 0
    if len(y) and (y.min() < 0 or set(np.unique(y)) != set(range(k))):
        bad = sorted(set(np.unique(y).tolist()) - set(range(k)))
        raise DataError(f"{path}: labels must be 0..N-1 with every class present; "
                        f"found min {int(y.min())}, max {int(y.max())}"
                        + (f", invalid {bad[:5]}" if bad else
                           f", missing {sorted(set(range(k)) - set(np.unique(y).tolist()))[:5]}"))
    return x, y, names or [str(i) for i in range(k)]


MAX_IMAGE_PIXELS = 4096 * 4096  # far above any MCU model's input; Pillow's own bomb guard is at 179 M


def _load_folder(root: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from PIL import Image, UnidentifiedImageError

    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class subfolders found",
                        hint="put images in one subfolder per class: ROOT/cat/001.png, ROOT/dog/002.png")
    images, labels, size, mode = [], [], None, None
    for ci, cname in enumerate(classes):
        files = sorted(p for p in (root / cname).iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{root / cname}: class folder holds no PNG/JPEG images")
        for p in files:
            try:
                with Image.open(p) as im:
                    if im.width * im.height > MAX_IMAGE_PIXELS:  # before decoding a byte of it
                        raise DataError(f"{p}: image of {im.width}x{im.height} pixels, more than the "
                                        f"{MAX_IMAGE_PIXELS:,} a folder dataset image may have",
                                        hint="resize the images to the model's resolution first (e.g. 96x96)")
                    im.load()
                    m = "L" if im.mode in ("L", "1", "I;16", "I", "LA", "P") and _is_gray(im) else "RGB"
                    arr = np.asarray(im.convert(m))
            except Image.DecompressionBombError as e:  # Pillow's guard fires in open(), before our check
                raise DataError(f"{p}: image too large for a dataset image ({e})",
                                hint="resize the images to the model's resolution first (e.g. 96x96)") from None
            except (UnidentifiedImageError, OSError, SyntaxError) as e:
                raise DataError(f"{p}: corrupt or unreadable image ({e.__class__.__name__})",
                                hint="remove or replace that file") from None
            if size is None:
                size = arr.shape[:2]
            elif arr.shape[:2] != size:
                raise DataError(f"{p}: image size {arr.shape[1]}x{arr.shape[0]} differs from the first "
                                f"image's {size[1]}x{size[0]}", hint="resize all images to one size first")
            images.append(arr)
            labels.append(ci)
            mode = "RGB" if (mode == "RGB" or m == "RGB") else "L"
    if len(classes) < 2:
        raise DataError(f"{root}: only one class ('{classes[0]}') found; classification needs at least two")
    if mode == "RGB":
        x = np.stack([a if a.ndim == 3 else np.repeat(a[..., None], 3, axis=2) for a in images])
    else:
        x = np.stack(images)[..., None]
    return x.astype(np.uint8), np.asarray(labels, dtype=np.int64), classes


def _is_gray(im) -> bool:
    if im.mode != "P":
        return True
    rgb = np.asarray(im.convert("RGB"))
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def load_dataset(spec: str, *, seed: int = 0, fractions: dict[str, float] | None = None) -> Dataset:
    """Load a dataset by spec (see the package docstring) and cut its deterministic splits."""
    spec = str(spec)
    kind, _, rest = spec.partition(":")
    features = None
    if kind == "audio" or (kind == "builtin" and rest.startswith("keywords")):
        from .keywords import audio_source
        x, y, names, name, features = audio_source(kind, rest, seed)
    elif kind == "builtin":
        if rest not in BUILTIN_IMAGES:
            raise DataError(f"unknown built-in dataset '{rest}'",
                            hint="built-in datasets: " + ", ".join(f"builtin:{k}" for k in BUILTINS))
        if rest == "shapes":
            from .shapes import shapes_source
            x, y, names = shapes_source()
        else:
            x, y, names = _builtin_digits(rest == "digits-rgb", seed)
        name = rest
    elif kind == "npz" or (not rest and spec.endswith(".npz")):
        path = Path(rest if kind == "npz" else spec).expanduser()
        x, y, names = _load_npz(path)
        name = path.stem
    elif kind == "folder" or (not rest and os.path.isdir(spec)):
        path = Path(rest if kind == "folder" else spec).expanduser()
        x, y, names = _load_folder(path)
        name = path.name
    else:
        raise DataError(f"cannot tell what dataset '{spec}' is",
                        hint="use builtin:digits, builtin:shapes, builtin:keywords, folder:PATH (one subfolder per class), "
                             "audio:PATH (one subfolder of 16 kHz WAV files per keyword) or npz:PATH")
    if len(y) == 0:
        raise DataError(f"{spec}: the dataset is empty")
    if len(names) < 2:
        raise DataError(f"{spec}: only one class found; classification needs at least two")
    fr = dict(fractions or DEFAULT_FRACTIONS)
    counts = np.bincount(y, minlength=len(names))
    need = sum(1 for v in fr.values() if v > 0)
    if counts.min() < need:
        cls = int(np.argmin(counts))
        raise DataError(f"{spec}: class '{names[cls]}' has {counts.min()} sample(s); each class needs at least "
                        f"{need} to appear in every split ({', '.join(k for k, v in fr.items() if v > 0)})")
    return Dataset(name=name, spec=spec, x=x, y=y, class_names=list(names), seed=seed, fractions=fr,
                   features=features)
