"""Escaping of untrusted text (board names from user board files, paths, device strings, error messages)
for the Markdown reports, which are often rendered as HTML (GitHub, wikis, IDE previews).

`md_text` makes text inert in both languages: HTML metacharacters become entities (`<script>` cannot open
a tag), Markdown metacharacters are backslash-escaped (a `|` cannot split a table cell, `[x](javascript:..)`
cannot form a link), control characters and newlines become spaces (one table row stays one row).
`md_code` is for inline code: it keeps the text verbatim inside backticks when it can.
"""
from __future__ import annotations

import html
import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]!|~])")  # enough to stop emphasis, links, images, cells, code


def md_text(value) -> str:
    text = _CONTROL.sub(" ", str(value))
    text = html.escape(text, quote=False)  # <, >, &: no tag, no entity trick
    return _MD_SPECIAL.sub(r"\\\1", text)


def md_code(value) -> str:
    """Inline code `...`; text holding a backtick or a control character falls back to `md_text`."""
    text = str(value)
    if "`" in text or _CONTROL.search(text):
        return md_text(text)
    return f"`{text}`"
