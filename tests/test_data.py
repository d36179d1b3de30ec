"""Datasets: built-in digits, image folders and .npz, deterministic stratified splits, clear errors."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipeline.data import SPLITS, load_dataset, resize_images
from pipeline.errors import DataError


def test_builtin_digits_is_real_offline_data():
    d = load_dataset("builtin:digits")
    assert d.x.shape == (1797, 8, 8, 1) and d.x.dtype == np.uint8
    assert d.num_classes == 10 and d.channels == 1
    assert d.x.max() == 255 and d.x.min() == 0
    rgb = load_dataset("builtin:digits-rgb")
    assert rgb.channels == 3 and rgb.x.shape[0] == 1797
    assert not np.array_equal(rgb.x[..., 0], rgb.x[..., 1])  # tinted, not grey copies


def test_splits_are_deterministic_disjoint_complete_and_stratified():
    a, b = load_dataset("builtin:digits", seed=3), load_dataset("builtin:digits", seed=3)
    c = load_dataset("builtin:digits", seed=4)
    idx = {s: a.split(s).indices for s in SPLITS}
    for s in SPLITS:
        assert np.array_equal(idx[s], b.split(s).indices)
    assert not np.array_equal(idx["test"], c.split("test").indices)
    allidx = np.concatenate(list(idx.values()))
    assert len(allidx) == len(set(allidx.tolist())) == len(a.y)  # disjoint and complete
    overall = np.bincount(a.y, minlength=10) / len(a.y)
    for s in SPLITS:
        y = a.split(s).y
        frac = np.bincount(y, minlength=10) / len(y)
        assert np.abs(frac - overall).max() < 0.02, s  # class balance follows the whole set
        assert len(y) == pytest.approx(a.fractions[s] * len(a.y), abs=10)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_resize_keeps_dtype_and_range_and_is_deterministic():
    d = load_dataset("builtin:digits")
    x = d.split("holdout", 24).x
    assert x.shape[1:] == (24, 24, 1) and x.dtype == np.uint8
    assert np.array_equal(x, resize_images(d.split("holdout").x, 24))
    small = resize_images(x, 12)
    assert small.shape[1:] == (12, 12, 1)


def _folder(tmp_path, classes=("a", "b"), per_class=4, mode="L", size=(10, 10)):
    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / c / f"{i}.png")
    return root


def test_image_folder_grayscale_and_rgb(tmp_path):
    d = load_dataset(f"folder:{_folder(tmp_path)}")
    assert d.x.shape == (8, 10, 10, 1) and d.class_names == ["a", "b"]
    d3 = load_dataset(str(_folder(tmp_path / "rgb", mode="RGB")))
    assert d3.channels == 3


def test_npz_uint8_and_float(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (40, 6, 6), dtype=np.uint8)
    y = np.arange(40) % 4
    np.savez(tmp_path / "d.npz", x=x, y=y)
    d = load_dataset(str(tmp_path / "d.npz"))
    assert d.x.shape == (40, 6, 6, 1) and d.num_classes == 4
    np.savez(tmp_path / "f.npz", x=x.astype(np.float32) / 255.0, y=y)
    assert np.array_equal(load_dataset(f"npz:{tmp_path / 'f.npz'}").x, d.x)


# -- bad input: each error names the culprit -----------------------------------------------------
def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class subfolders"):
        load_dataset(f"folder:{tmp_path / 'empty'}")


def test_class_folder_without_images(tmp_path):
    root = _folder(tmp_path)
    (root / "c").mkdir()
    with pytest.raises(DataError) as e:
        load_dataset(f"folder:{root}")
    assert str(root / "c") in str(e.value)


def test_single_class(tmp_path):
    root = _folder(tmp_path, classes=("only",))
    with pytest.raises(DataError, match="only one class"):
        load_dataset(f"folder:{root}")


def test_corrupt_image_names_the_file(tmp_path):
    root = _folder(tmp_path)
    bad = root / "b" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(DataError) as e:
        load_dataset(f"folder:{root}")
    assert str(bad) in str(e.value)


def test_mixed_image_sizes_name_the_file(tmp_path):
    root = _folder(tmp_path)
    odd = root / "a" / "odd.png"
    Image.fromarray(np.zeros((5, 7), np.uint8)).save(odd)
    with pytest.raises(DataError) as e:
        load_dataset(f"folder:{root}")
    assert str(odd) in str(e.value)


def test_labels_outside_range(tmp_path):
    x = np.zeros((12, 4, 4), np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1, 5] * 4))
    with pytest.raises(DataError) as e:
        load_dataset(str(tmp_path / "d.npz"))
    assert "d.npz" in str(e.value) and "0..N-1" in str(e.value)
    np.savez(tmp_path / "n.npz", x=x, y=np.array([-1, 0, 1] * 4))
    with pytest.raises(DataError, match="n.npz"):
        load_dataset(str(tmp_path / "n.npz"))


def test_mismatched_lengths(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((10, 4, 4), np.uint8), y=np.arange(9) % 2)
    with pytest.raises(DataError) as e:
        load_dataset(str(tmp_path / "d.npz"))
    assert "10 samples" in str(e.value) and "9 labels" in str(e.value)


def test_npz_missing_array(tmp_path):
    np.savez(tmp_path / "d.npz", images=np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(DataError, match=r"missing array\(s\) \['x', 'y'\]"):
        load_dataset(str(tmp_path / "d.npz"))


def test_npz_float_out_of_range(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.full((8, 4, 4), 3.0), y=np.arange(8) % 2)
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        load_dataset(str(tmp_path / "d.npz"))


def test_too_few_samples_per_class(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((6, 4, 4), np.uint8), y=np.array([0, 0, 0, 0, 0, 1]))
    with pytest.raises(DataError, match="class '1' has 1 sample"):
        load_dataset(str(tmp_path / "d.npz"))


def test_unknown_spec_and_builtin():
    with pytest.raises(DataError, match="cannot tell"):
        load_dataset("/no/such/thing")
    with pytest.raises(DataError, match="unknown built-in dataset 'cifar'") as e:
        load_dataset("builtin:cifar")
    assert "builtin:shapes" in e.value.hint and "builtin:digits" in e.value.hint
    with pytest.raises(DataError, match="not found"):
        load_dataset("npz:/no/such.npz")


# -- builtin:shapes -------------------------------------------------------------------------------
def test_shapes_are_deterministic_balanced_rgb_and_seed_dependent():
    from pipeline.data.shapes import CLASSES, SIZE, generate_shapes

    x, y = generate_shapes(per_class=3, seed=5)
    assert x.shape == (30, SIZE, SIZE, 3) and x.dtype == np.uint8 and y.dtype == np.int64
    assert np.bincount(y).tolist() == [3] * len(CLASSES) == [3] * 10
    x2, y2 = generate_shapes(per_class=3, seed=5)
    assert x.tobytes() == x2.tobytes() and y.tobytes() == y2.tobytes()       # same seed, same bytes
    x3, _ = generate_shapes(per_class=3, seed=6)
    assert not np.array_equal(x, x3)
    # Image i depends only on (seed, i): a larger set starts with the same images.
    x4, _ = generate_shapes(per_class=4, seed=5)
    assert np.array_equal(x4[:30], x)
    # Colour images with texture and noise, not flat binary masks; no two images equal.
    assert not np.array_equal(x[..., 0], x[..., 1])
    assert all(len(np.unique(im)) > 50 for im in x)
    assert len({im.tobytes() for im in x}) == len(x)


def test_shapes_builtin_is_cached_and_registered(tmp_path, monkeypatch):
    from pipeline.data import shapes

    monkeypatch.setenv("OFA_MCU_CACHE", str(tmp_path))
    x, y, names = shapes.shapes_source(seed=1, per_class=2)
    files = list((tmp_path / "shapes").glob("shapes-*.npz"))
    assert len(files) == 1 and names == list(shapes.CLASSES)
    stamp = files[0].stat().st_mtime_ns
    x2, y2, _ = shapes.shapes_source(seed=1, per_class=2)            # from the cache, same arrays
    assert files[0].stat().st_mtime_ns == stamp and np.array_equal(x, x2) and np.array_equal(y, y2)
    files[0].write_bytes(b"damaged")                                  # a damaged cache is regenerated
    x3, _, _ = shapes.shapes_source(seed=1, per_class=2)
    assert np.array_equal(x, x3)
    # load_dataset("builtin:shapes") reads the same source (here: a small one, to stay fast)
    monkeypatch.setattr(shapes, "PER_CLASS", 10)
    monkeypatch.setattr(shapes.shapes_source, "__defaults__", (shapes.GENERATION_SEED, 10))
    d = load_dataset("builtin:shapes")
    assert d.x.shape == (100, 32, 32, 3) and d.channels == 3 and d.num_classes == 10
    assert d.class_names[:3] == ["circle", "square", "triangle"]
    assert {s: len(d.split(s)) for s in SPLITS} == {"train": 60, "holdout": 10, "calibration": 10, "test": 20}
