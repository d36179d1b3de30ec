"""Where the package's data folders are: `boards/` and `firmware_templates/`.

In a source checkout (and an editable install) they sit beside `pipeline/`, where users and the
project's docs expect them. A wheel carries copies inside the package (`pipeline/_resources/`, put
there by setup.py's build step), so an installed `ofa-mcu` works from any directory.
"""
from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
RESOURCE_NAMES = ("boards", "firmware_templates")


def resource_dir(name: str) -> Path:
    """The folder `name` (one of RESOURCE_NAMES): the installed copy if there is one, else the checkout's."""
    if name not in RESOURCE_NAMES:
        raise ValueError(f"unknown resource folder {name!r}; expected one of {RESOURCE_NAMES}")
    installed = _PACKAGE / "_resources" / name
    return installed if installed.is_dir() else _PACKAGE.parent / name
