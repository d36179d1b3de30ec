"""A generated 96 x 96 image dataset for the patch-based-inference benchmark (npz, seeded).

Four classes of filled shapes (disc, square, triangle, cross) at a random position, size and grey level
on a noisy, randomly shaded background: a task whose images need their full 96 px (small shapes far from
the centre), unlike the 8 x 8 built-in digits. Written as `npz:PATH` input for `ofa-mcu train`.

    python benchmarks/patch_data.py /tmp/shapes96.npz --per-class 500 --size 96 --seed 0
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

CLASSES = ("disc", "square", "triangle", "cross")


def make_shapes(per_class: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    xs, ys = [], []
    for label in range(len(CLASSES)):
        for _ in range(per_class):
            r = rng.uniform(0.08, 0.22) * size
            cx, cy = rng.uniform(r, size - r, size=2)
            dx, dy = xx - cx, yy - cy
            if label == 0:
                mask = dx * dx + dy * dy <= r * r
            elif label == 1:
                mask = (np.abs(dx) <= r * 0.85) & (np.abs(dy) <= r * 0.85)
            elif label == 2:
                mask = (dy <= r * 0.8) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.6)
            else:
                w = r * 0.3
                mask = ((np.abs(dx) <= w) & (np.abs(dy) <= r)) | ((np.abs(dy) <= w) & (np.abs(dx) <= r))
            g = rng.uniform(0, 1, size=3)
            bg = 60 + 60 * (g[0] * xx + g[1] * yy) / size
            img = bg + rng.normal(0, 18, size=(size, size))
            img[mask] = rng.uniform(170, 250)
            xs.append(np.clip(img, 0, 255).astype(np.uint8)[..., None])
            ys.append(label)
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--per-class", type=int, default=500)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    x, y = make_shapes(a.per_class, a.size, a.seed)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(a.out, x=x, y=y, class_names=np.array(CLASSES))
    print(f"wrote {a.out}: {x.shape} uint8, {len(CLASSES)} classes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
