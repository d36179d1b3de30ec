"""The export cache (pipeline/search/verify.py `_export`) reuses an export only under the same key:
weights, space, arch and export settings (`pipeline.export.stage.export_key`). Retraining changes the
weights, so the next deploy exports again instead of handing back the stale model."""
from __future__ import annotations

import json

from pipeline._io import write_json
from pipeline.export.stage import export_key
from pipeline.search.verify import _export
from pipeline.supernet.space import SubnetArch

ARCH = SubnetArch.parse("r24-w50k3e3-w100k5e4-w100k7e6")


def _fake_supernet(d, weights: bytes):
    d.mkdir(parents=True, exist_ok=True)
    (d / "weights.pt").write_bytes(weights)
    (d / "space.json").write_text(json.dumps({"note": "the key hashes this file's bytes"}))
    return d


def test_export_is_redone_when_weights_or_settings_change(tmp_path):
    calls = []

    def export_fn(supernet_dir, arch, out, **kw):
        """Stands in for export_subnet (slow; run for real in test_search_verify.py): writes the same
        files, with the key export_subnet records, and counts the calls."""
        calls.append(kw)
        out.mkdir(parents=True, exist_ok=True)
        (out / "model_int8.tflite").write_bytes(b"model %d" % len(calls))
        write_json(out / "export_report.json", {"passed": True, "arch": arch.to_dict(),
                                                "cache_key": export_key(supernet_dir, arch, **kw)})

    sn = _fake_supernet(tmp_path / "sn", b"weights v1")
    cache = tmp_path / "exports"
    d = _export(sn, ARCH, cache, export_fn, seed=0)
    assert len(calls) == 1
    assert _export(sn, ARCH, cache, export_fn, seed=0) == d and len(calls) == 1  # same key: reused
    _fake_supernet(sn, b"weights v2 (retrained)")
    _export(sn, ARCH, cache, export_fn, seed=0)
    assert len(calls) == 2 and (d / "model_int8.tflite").read_bytes() == b"model 2"  # stale export replaced
    _export(sn, ARCH, cache, export_fn, seed=0, opset=14)
    assert len(calls) == 3  # other export settings: another model
    _export(sn, ARCH, cache, export_fn, seed=0, opset=14, progress=print)
    assert len(calls) == 3  # a progress callback does not change the model


def test_key_depends_on_weights_space_arch_and_settings(tmp_path):
    sn = _fake_supernet(tmp_path / "sn", b"w")
    k = export_key(sn, ARCH)
    assert k == export_key(sn, ARCH, seed=0, opset=13, num_calib=200, max_drop_points=2.0, data_spec=None)
    other = SubnetArch.parse("r24-w50k3e3-w100k5e4-w100k7e4")
    assert len({k, export_key(sn, other), export_key(sn, ARCH, seed=1), export_key(sn, ARCH, num_calib=100),
                export_key(sn, ARCH, data_spec="builtin:digits-rgb")}) == 5
    (sn / "space.json").write_text("{}")
    assert export_key(sn, ARCH) != k
