"""The files stages hand to each other: one table naming each artifact, its file, the stage that writes
it, its schema version and the fields a reader relies on.

Stages write through `write()` (atomic, stamped with `{"artifact": name, "version": N}`) and read through
`read()`, which refuses a file that is missing, not JSON, written by a newer ofa-mcu, or lacking a field
its readers use, with one line naming the file and the command that rewrites it. Files written before
the stamp existed carry no `artifact` key: they are read when every required field is present, so old
run folders keep working.

A new field is additive (no version bump); renaming or changing the meaning of a required field bumps
`version`, and `read()` then refuses older files with a hint to re-run the producer.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _io
from .errors import ArtifactError

STAMP = "artifact"


@dataclass(frozen=True)
class Artifact:
    name: str
    filename: str
    producer: str  # the command that (re)writes it: named in every refusal
    version: int
    required: tuple[tuple[str, type | tuple[type, ...]], ...]  # top-level field -> accepted JSON type(s)
    doc: str

    def path(self, directory: str | Path) -> Path:
        return Path(directory) / self.filename


_num = (int, float)
_ARTIFACTS = (
    Artifact("train config", "config.json", "ofa-mcu train", 1,
             (("data", str), ("seed", int)),
             "run folder: how the supernet was trained (data spec, seed, schedule, threads); --resume checks it"),
    Artifact("train summary", "summary.json", "ofa-mcu train", 1,
             (("data", str),),
             "supernet folder: dataset fingerprint, final accuracies, wall time"),
    Artifact("predictor report", "report.json", "ofa-mcu search", 1,
             (("num_samples", int), ("seed", int)),
             "predictor folder: how its labels were measured (images, protocol), held-out Kendall tau and RMSE"),
    Artifact("search result", "search.json", "ofa-mcu search", 1,
             (("board", str), ("arch", dict), ("budget", dict), ("measured", dict)),
             "board folder: the chosen subnet, its predicted and measured figures, the candidates"),
    Artifact("export report", "export_report.json", "ofa-mcu export", 1,
             (("passed", bool), ("arch", dict), ("accuracy", dict), ("arena", dict),
              ("model_bytes", int), ("input_contract", dict)),
             "board folder: float/int8 accuracy, crosscheck, measured arena, input contract, cache key"),
    Artifact("firmware manifest", "firmware.json", "ofa-mcu codegen", 1,
             (("files", list),),
             "firmware folder: the files codegen owns (never touches others), arena, board"),
    Artifact("check report", "check_report.json", "ofa-mcu check", 1,
             (("samples", int), ("agreement", dict), ("gate", dict)),
             "board folder: on-board accuracy vs host int8, agreement, latency, where measured"),
    Artifact("deploy report", "report.json", "ofa-mcu deploy", 1,
             (("board", str), ("arch", str)),
             "board folder: search, export, firmware and check figures in one place"),
    Artifact("catalog", "catalog.json", "ofa-mcu catalog", 1,
             (("boards", list),),
             "catalog folder: one row per (board, budget) deployment, compute account"),
)
ARTIFACTS: dict[str, Artifact] = {a.name: a for a in _ARTIFACTS}


def artifact(name: str) -> Artifact:
    try:
        return ARTIFACTS[name]
    except KeyError:
        raise KeyError(f"unknown artifact {name!r}; known: {', '.join(ARTIFACTS)}") from None


def filename(name: str) -> str:
    return artifact(name).filename


def path(name: str, directory: str | Path) -> Path:
    return artifact(name).path(directory)


def _problems(a: Artifact, record: Any, fields: tuple[str, ...] | None = None) -> list[str]:
    if not isinstance(record, dict):
        return [f"holds a JSON {type(record).__name__}, not an object"]
    out = []
    for field, kind in a.required:
        if fields is not None and field not in fields:
            continue
        if field not in record:
            out.append(f"lacks the field {field!r}")
        elif not isinstance(record[field], kind) or (kind is int and isinstance(record[field], bool)):
            want = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            out.append(f"field {field!r} is {type(record[field]).__name__}, not {want}")
    return out


def write(name: str, directory: str | Path, record: dict) -> Path:
    """Stamp `record` with its artifact name and version and write it atomically; a record lacking a
    field its readers need is a bug in the writing stage, so it raises before anything is written."""
    a = artifact(name)
    problems = _problems(a, record)
    if problems:
        raise ValueError(f"{a.name} ({a.filename}) {'; '.join(problems)}")
    stamped = {STAMP: {"name": a.name, "version": a.version}, **{k: v for k, v in record.items() if k != STAMP}}
    return _io.write_json(a.path(directory), stamped)


def read(name: str, where: str | Path, *, fields: tuple[str, ...] | None = None) -> dict:
    """The artifact `name` in folder `where` (or at path `where`), checked; ArtifactError otherwise.
    `fields`: a reader that relies on only some required fields names them (and accepts a partial record)."""
    a = artifact(name)
    unknown = set(fields or ()) - {f for f, _ in a.required}
    if unknown:
        raise KeyError(f"{a.name}: {sorted(unknown)} are not required fields; add them to the table first")
    where = Path(where)
    file = where if where.is_file() or where.suffix == ".json" else a.path(where)
    hint = f"re-run `{a.producer}` to write it again"
    if not file.is_file():
        raise ArtifactError(f"{file}: the {a.name} is missing", hint=f"run `{a.producer}` first, or check the path")
    try:
        record = _io.read_json(file)
    except ArtifactError as e:
        raise ArtifactError(str(e), hint=hint) from None
    stamp = record.get(STAMP) if isinstance(record, dict) else None
    if stamp is not None:
        if not isinstance(stamp, dict) or stamp.get("name") != a.name or not isinstance(stamp.get("version"), int):
            raise ArtifactError(f"{file}: not a {a.name} (its stamp says {stamp!r})", hint=hint)
        if stamp["version"] > a.version:
            raise ArtifactError(f"{file}: {a.name} version {stamp['version']} is newer than this ofa-mcu "
                                f"reads (version {a.version})", hint="upgrade ofa-mcu, or " + hint)
        if stamp["version"] < a.version:
            raise ArtifactError(f"{file}: {a.name} version {stamp['version']} is older than this ofa-mcu "
                                f"reads (version {a.version})", hint=hint)
    problems = _problems(a, record, fields)
    if problems:
        raise ArtifactError(f"{file}: the {a.name} {'; '.join(problems)}", hint=hint)
    return record


def exists(name: str, directory: str | Path) -> bool:
    return artifact(name).path(directory).is_file()
