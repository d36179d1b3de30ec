"""`builtin:shapes`: a hard 10-class RGB image dataset, drawn procedurally from a seed (no download).

Each 32x32 image shows one large *target* shape (its class) among smaller distractor shapes of other
classes, on a textured background (two-colour gradient plus stripes or checks), with random colour,
scale, rotation, position, partial occlusion by a distractor, blur-free anti-aliasing (4x supersampling)
and pixel noise. The classes differ only in outline (circle, square, triangle, pentagon, hexagon, star,
cross, ring, crescent, arrow), several of them barely at this size (pentagon / hexagon / circle), so a
network has to resolve shape at the target's scale while ignoring colour, texture and clutter: small
subnets lose many more points than large ones (the benchmark's point), unlike on the digits.

Generation is pure numpy with one `np.random.Generator` per image seeded by (seed, image index), so the
bytes are identical on every machine and any image can be regenerated alone. The arrays are cached as
`.npz` under OFA_MCU_CACHE (default ~/.cache/ofa-mcu)/shapes/, keyed by the generator version, size,
count and seed, written atomically.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

VERSION = 1  # bump when the drawing changes: the cache key includes it
CLASSES = ("circle", "square", "triangle", "pentagon", "hexagon", "star", "cross", "ring", "crescent", "arrow")
SIZE = 32
PER_CLASS = 600        # 6,000 images: 3,600 train, 600 holdout, 600 calibration, 1,200 test
GENERATION_SEED = 0    # the content seed of builtin:shapes (the split seed is separate)
_SUPER = 4             # supersampling factor for anti-aliased edges


def cache_root() -> Path:
    return Path(os.environ.get("OFA_MCU_CACHE", Path.home() / ".cache" / "ofa-mcu")) / "shapes"


def _polygon_inside(px: np.ndarray, py: np.ndarray, verts: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test for every (px, py) against the closed polygon `verts` (K, 2)."""
    inside = np.zeros(px.shape, bool)
    k = len(verts)
    for i in range(k):
        x1, y1 = verts[i]
        x2, y2 = verts[(i + 1) % k]
        crosses = (y1 > py) != (y2 > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            xint = (x2 - x1) * (py - y1) / (y2 - y1) + x1
        inside ^= crosses & (px < xint)
    return inside


def _regular(n: int, r: float = 1.0, phase: float = 0.0) -> np.ndarray:
    a = phase + 2 * np.pi * np.arange(n) / n
    return np.stack([r * np.cos(a), r * np.sin(a)], 1)


def _mask(cls: int, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Coverage of class `cls` in shape coordinates (u, v): the shape spans about [-1, 1]^2."""
    name = CLASSES[cls]
    if name == "circle":
        return u * u + v * v <= 1.0
    if name == "square":
        return (np.abs(u) <= 0.82) & (np.abs(v) <= 0.82)
    if name == "triangle":
        return _polygon_inside(u, v, _regular(3, 1.05, -np.pi / 2))
    if name == "pentagon":
        return _polygon_inside(u, v, _regular(5, 1.0, -np.pi / 2))
    if name == "hexagon":
        return _polygon_inside(u, v, _regular(6, 1.0, 0.0))
    if name == "star":
        inner = rng.uniform(0.38, 0.5)
        pts = np.empty((10, 2))
        pts[0::2] = _regular(5, 1.05, -np.pi / 2)
        pts[1::2] = _regular(5, inner, -np.pi / 2 + np.pi / 5)
        return _polygon_inside(u, v, pts)
    if name == "cross":
        t = rng.uniform(0.26, 0.36)
        return ((np.abs(u) <= t) & (np.abs(v) <= 0.95)) | ((np.abs(v) <= t) & (np.abs(u) <= 0.95))
    if name == "ring":
        rr = u * u + v * v
        inner = rng.uniform(0.45, 0.62)
        return (rr <= 1.0) & (rr >= inner * inner)
    if name == "crescent":
        off = rng.uniform(0.35, 0.55)
        return (u * u + v * v <= 1.0) & ((u - off) ** 2 + v * v > 0.8 ** 2)
    if name == "arrow":
        shaft = (u >= -0.95) & (u <= 0.15) & (np.abs(v) <= rng.uniform(0.18, 0.26))
        head = _polygon_inside(u, v, np.array([[0.05, -0.75], [1.0, 0.0], [0.05, 0.75]]))
        return shaft | head
    raise ValueError(name)


def _shape_coverage(cls, cx, cy, scale, angle, aspect, rng, grid):
    """Anti-aliased coverage (SIZE, SIZE) in [0, 1] of one shape centred at (cx, cy), radius `scale` px."""
    gx, gy = grid
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = gx - cx, gy - cy
    u = (c * dx + s * dy) / (scale * aspect)
    v = (-s * dx + c * dy) / (scale / aspect)
    m = _mask(cls, u, v, rng).astype(np.float32)
    return m.reshape(SIZE, _SUPER, SIZE, _SUPER).mean((1, 3))


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0.0, 1.0, 3).astype(np.float32)


def _background(rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / (SIZE - 1)
    a, b = _colour(rng), _colour(rng)
    theta = rng.uniform(0, 2 * np.pi)
    t = np.clip(0.5 + (np.cos(theta) * (xx - 0.5) + np.sin(theta) * (yy - 0.5)), 0, 1)[..., None]
    img = a * (1 - t) + b * t
    kind = rng.integers(3)
    if kind == 1:   # stripes
        period = rng.uniform(3.0, 8.0)
        phi = rng.uniform(0, 2 * np.pi)
        w = np.sin(2 * np.pi * (np.cos(phi) * xx + np.sin(phi) * yy) * SIZE / period)
        img = img + rng.uniform(0.08, 0.25) * w[..., None] * (_colour(rng) - 0.5)
    elif kind == 2:  # checks
        period = int(rng.integers(3, 7))
        chk = ((np.arange(SIZE)[:, None] // period + np.arange(SIZE)[None, :] // period) % 2) * 2.0 - 1.0
        img = img + rng.uniform(0.06, 0.2) * chk[..., None] * (_colour(rng) - 0.5)
    return img.astype(np.float32)


def draw_image(cls: int, rng: np.random.Generator, grid) -> np.ndarray:
    """One uint8 (SIZE, SIZE, 3) image of class `cls`."""
    img = _background(rng)
    bg_mean = img.mean((0, 1))
    # The target: large, anywhere mostly inside the frame, any rotation, a little stretched.
    scale = rng.uniform(0.24, 0.42) * SIZE
    cx, cy = rng.uniform(0.3, 0.7, 2) * SIZE
    angle = rng.uniform(0, 2 * np.pi)
    aspect = np.exp(rng.uniform(-0.18, 0.18))
    # A target colour that is not too close to the background (else the image carries no label).
    for _ in range(8):
        fg = _colour(rng)
        if np.abs(fg - bg_mean).sum() > 0.45:
            break
    n_distract = int(rng.integers(1, 4))
    layers = []
    for _ in range(n_distract):
        dcls = int(rng.integers(len(CLASSES) - 1))
        dcls += dcls >= cls  # any class but the target's
        dscale = scale * rng.uniform(0.3, 0.55)
        d = _shape_coverage(dcls, *(rng.uniform(0.05, 0.95, 2) * SIZE), dscale, rng.uniform(0, 2 * np.pi),
                            np.exp(rng.uniform(-0.2, 0.2)), rng, grid)
        layers.append((d, _colour(rng), bool(rng.random() < 0.35)))  # some distractors lie on top
    for d, col, _ in (l for l in layers if not l[2]):
        img = img * (1 - d[..., None]) + col * d[..., None]
    t = _shape_coverage(cls, cx, cy, scale, angle, aspect, rng, grid)
    shade = 1.0 + rng.uniform(-0.25, 0.25) * (np.linspace(-1, 1, SIZE)[None, :, None])  # lit from a side
    img = img * (1 - t[..., None]) + np.clip(fg * shade, 0, 1) * t[..., None]
    for d, col, _ in (l for l in layers if l[2]):
        img = img * (1 - d[..., None]) + col * d[..., None]
    img = img + rng.normal(0.0, rng.uniform(0.02, 0.08), img.shape).astype(np.float32)
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


def generate_shapes(per_class: int = PER_CLASS, seed: int = GENERATION_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(x uint8 (N, SIZE, SIZE, 3), y int64 (N,)): `per_class` images of every class, classes interleaved.

    Image i is class i % 10, drawn with its own generator seeded by (VERSION, seed, i)."""
    n = per_class * len(CLASSES)
    off = (np.arange(SIZE * _SUPER, dtype=np.float32) + 0.5) / _SUPER
    gy, gx = np.meshgrid(off, off, indexing="ij")
    grid = (gx.ravel(), gy.ravel())
    x = np.empty((n, SIZE, SIZE, 3), np.uint8)
    y = (np.arange(n) % len(CLASSES)).astype(np.int64)
    for i in range(n):
        x[i] = draw_image(int(y[i]), np.random.default_rng([VERSION, seed, i]), grid)
    return x, y


def shapes_source(seed: int = GENERATION_SEED, per_class: int = PER_CLASS):
    """(x, y, class names) of builtin:shapes, generated on first use and cached."""
    from .._io import atomic_path

    key = hashlib.sha256(repr((VERSION, SIZE, per_class, seed)).encode()).hexdigest()[:12]
    path = cache_root() / f"shapes-{key}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as f:
                return f["x"], f["y"], list(CLASSES)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache file is regenerated below
    x, y = generate_shapes(per_class, seed)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, x=x, y=y)
    except OSError:
        pass  # a read-only cache: generated again next time
    return x, y, list(CLASSES)
