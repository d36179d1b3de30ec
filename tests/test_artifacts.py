"""The artifact table: one name per file stages hand over, stamped with a schema version; readers refuse
a missing, corrupt, foreign, newer/older or incomplete file with one line naming the file and the producer."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipeline import artifacts
from pipeline.errors import ArtifactError

REPO = Path(__file__).resolve().parents[1]


def _export_record() -> dict:
    return {"passed": True, "arch": {"resolution": 24}, "accuracy": {"int8_tflm": 0.9}, "arena": {"min_arena_bytes": 1},
            "model_bytes": 1000, "input_contract": {"height": 24}}


def test_round_trip_stamps_name_and_version(tmp_path):
    path = artifacts.write("export report", tmp_path, _export_record())
    assert path.name == "export_report.json"
    raw = json.loads(path.read_text())
    assert raw["artifact"] == {"name": "export report", "version": artifacts.artifact("export report").version}
    back = artifacts.read("export report", tmp_path)
    assert back["model_bytes"] == 1000 and back["arena"] == {"min_arena_bytes": 1}
    assert artifacts.read("export report", path) == back  # a file path works as well as its folder


def test_a_writer_cannot_write_an_incomplete_record(tmp_path):
    rec = _export_record()
    del rec["arena"]
    with pytest.raises(ValueError, match="arena"):
        artifacts.write("export report", tmp_path, rec)
    assert not (tmp_path / "export_report.json").exists()


@pytest.mark.parametrize("content, words", [
    (None, "missing"),
    ("{not json", "not valid JSON"),
    ("[1, 2]", "not an object"),
    ('{"passed": true}', "lacks the field 'arch'"),
    ('{"artifact": {"name": "check report", "version": 1}}', "not a export report"),
    ('{"artifact": {"name": "export report", "version": 99}}', "newer than this ofa-mcu"),
    ('{"artifact": {"name": "export report", "version": 0}}', "older than this ofa-mcu"),
])
def test_bad_files_are_refused_naming_file_and_producer(tmp_path, content, words):
    if content is not None:
        (tmp_path / "export_report.json").write_text(content)
    with pytest.raises(ArtifactError) as e:
        artifacts.read("export report", tmp_path)
    assert words in str(e.value) and "export_report.json" in str(e.value)
    assert "ofa-mcu export" in e.value.hint
    assert e.value.exit_code == 11


def test_wrong_field_type_is_refused(tmp_path):
    rec = _export_record()
    rec["model_bytes"] = "1000"
    (tmp_path / "export_report.json").write_text(json.dumps(rec))
    with pytest.raises(ArtifactError, match="'model_bytes' is str, not int"):
        artifacts.read("export report", tmp_path)


def test_files_written_before_the_stamp_are_read(tmp_path):
    (tmp_path / "export_report.json").write_text(json.dumps(_export_record()))
    assert artifacts.read("export report", tmp_path)["passed"] is True


def test_architecture_doc_lists_every_artifact():
    doc = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| ([a-z ]+) \| `([\w.]+)` \|", doc, re.M)}
    assert rows == {a.name: a.filename for a in artifacts.ARTIFACTS.values()}


def test_a_reader_may_rely_on_some_fields_only(tmp_path):
    (tmp_path / "export_report.json").write_text(json.dumps({"input_contract": {"height": 8}}))
    assert artifacts.read("export report", tmp_path, fields=("input_contract",))["input_contract"] == {"height": 8}
    with pytest.raises(ArtifactError, match="lacks the field 'arena'"):
        artifacts.read("export report", tmp_path)
    with pytest.raises(KeyError):
        artifacts.read("export report", tmp_path, fields=("nonsense",))


def test_stage_code_names_artifact_files_only_through_the_table():
    """An artifact's file name spelled as a literal outside artifacts.py is a second source of truth."""
    names = {a.filename for a in artifacts.ARTIFACTS.values()}
    offenders = []
    for path in (REPO / "pipeline").rglob("*.py"):
        if path.name == "artifacts.py":
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            for n in names:
                if re.search(r"[\"']" + re.escape(n) + r"[\"']", code):
                    offenders.append(f"{path.relative_to(REPO)}:{lineno}: {n}")
    assert offenders == [], "\n".join(offenders)
