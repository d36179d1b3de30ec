"""The supernet directory on disk (`runs/NAME/supernet/`).

  weights.pt     state dict of the supernet (BN statistics calibrated for the largest subnet)
  space.json     the SearchSpace, enough to rebuild the module
  schedule.json  the progressive-shrinking schedule it was trained with   (written by train)
  log.jsonl      one line per epoch                                        (written by train)
  checkpoints/   resume state, one file per finished epoch                 (written by train)
  summary.json   dataset spec + fingerprint, seed, final accuracies, wall time (written by train)
"""
from __future__ import annotations

import io
from pathlib import Path

import torch

from .._io import atomic_path, write_json
from ..errors import ArtifactError, ConfigError
from .model import OFASupernet, build_supernet
from .space import SearchSpace

WEIGHTS = "weights.pt"
SPACE = "space.json"


def save_supernet(supernet: OFASupernet, directory: str | Path) -> Path:
    """Write weights.pt and space.json atomically; return the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / SPACE, supernet.space.to_dict())
    with atomic_path(directory / WEIGHTS) as tmp:
        torch.save(supernet.state_dict(), tmp)
    return directory


def load_state(path: Path) -> dict:
    """torch.load with errors that name the file (weights_only: never unpickle code)."""
    if not path.exists():
        raise ArtifactError(f"{path}: file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, wrong format: the file is unusable either way
        raise ArtifactError(f"{path}: cannot load ({e.__class__.__name__}: {e})") from None


def load_supernet(directory: str | Path) -> OFASupernet:
    """Rebuild the supernet from `directory/space.json` and load `directory/weights.pt` (eval mode)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ArtifactError(f"{directory}: supernet directory not found",
                            hint="train one with `ofa-mcu train --data builtin:digits --out runs/NAME` "
                                 "and pass runs/NAME/supernet")
    try:
        space = SearchSpace.load(directory / SPACE)
    except ConfigError as e:
        raise ArtifactError(f"{directory / SPACE}: {e.message}") from None
    supernet = build_supernet(space)
    state = load_state(directory / WEIGHTS)
    try:
        supernet.load_state_dict(state)
    except RuntimeError as e:
        raise ArtifactError(f"{directory / WEIGHTS} does not match {directory / SPACE}: "
                            f"{str(e).splitlines()[0]}") from None
    return supernet.eval()


def state_bytes(state: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()
