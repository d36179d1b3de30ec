"""Resumable stage bookkeeping for the orchestrators (deploy, catalog, demo).

A stage is skipped when its record in `stages.json` has the same input hash and all its outputs still
exist; otherwise it runs and its record is rewritten atomically after it finished. Inputs are hashed
from file contents and parameters, so editing a board file or retraining the supernet re-runs exactly
the stages downstream of the change.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import _io


def hash_inputs(*, files: list[str | os.PathLike] = (), params: dict | None = None) -> str:
    h = hashlib.sha256()
    for f in files:
        p = Path(f)
        h.update(str(p.name).encode())
        if p.is_dir():
            for sub in sorted(x for x in p.rglob("*") if x.is_file()):
                h.update(str(sub.relative_to(p)).encode())
                h.update(_io.sha256_file(sub).encode())
        elif p.exists():
            h.update(_io.sha256_file(p).encode())
        else:
            h.update(b"<missing>")
    h.update(json.dumps(params or {}, sort_keys=True, default=str).encode())
    return h.hexdigest()[:20]


@dataclass
class StageOutcome:
    name: str
    skipped: bool
    summary: dict
    seconds: float


class StageLog:
    """Records of finished stages in `<dir>/stages.json`."""

    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)
        self.path = self.dir / "stages.json"
        self.records: dict[str, dict] = json.loads(self.path.read_text()) if self.path.exists() else {}

    def is_fresh(self, name: str, inputs_hash: str) -> bool:
        rec = self.records.get(name)
        if not rec or rec.get("inputs_hash") != inputs_hash:
            return False
        return all((self.dir / o).exists() for o in rec.get("outputs", []))

    def run(self, name: str, inputs_hash: str, outputs: list[str], fn: Callable[[], dict],
            echo: Callable[[str], Any] = print) -> StageOutcome:
        if self.is_fresh(name, inputs_hash):
            summary = self.records[name].get("summary", {})
            echo(f"{name:<8} up to date (inputs unchanged): {summary.get('line', '')}")
            return StageOutcome(name, True, summary, 0.0)
        t0 = time.perf_counter()
        summary = fn() or {}
        seconds = time.perf_counter() - t0
        self.records[name] = {"inputs_hash": inputs_hash, "outputs": outputs, "summary": summary,
                              "seconds": round(seconds, 2), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        _io.write_json(self.path, self.records)
        echo(f"{name:<8} {summary.get('line', 'done')} ({seconds:.1f} s)")
        return StageOutcome(name, False, summary, seconds)
