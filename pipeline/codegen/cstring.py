"""Escaping of user strings (labels, names, paths) for generated C, C++, Makefiles and comments.

A label such as ``"; puts("injected"); //`` must reach the firmware as data, never as code. C string
literals here use only printable ASCII: every other byte (control, DEL, non-ASCII UTF-8 bytes) becomes a
three-digit octal escape. Octal escapes stop after three digits, so unlike ``\\x`` escapes they cannot
swallow a following hex digit. ``?`` is escaped too, because ``-std=c99`` enables trigraphs (``??/`` is
a backslash).
"""
from __future__ import annotations

import re
import shlex

_SIMPLE = {ord('"'): '\\"', ord("\\"): "\\\\", ord("?"): "\\?", ord("\n"): "\\n", ord("\t"): "\\t",
           ord("\r"): "\\r"}


def c_string(value: str | bytes) -> str:
    """A C/C++ string literal (with its quotes) whose bytes are exactly the UTF-8 bytes of `value`."""
    data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    out = ['"']
    for b in data:
        if b in _SIMPLE:
            out.append(_SIMPLE[b])
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\{b:03o}")
    out.append('"')
    return "".join(out)


def comment_text(value: str) -> str:
    """Text safe inside a one-line comment of any generated language (C, Make, linker, Markdown)."""
    text = re.sub(r"[\x00-\x1f\x7f]+", " ", str(value))
    # Close no comment early: C block comments, HTML comments; and nothing that continues a C++ line.
    text = text.replace("*/", "* /").replace("/*", "/ *").replace("-->", "-- >").replace("\\", "/")
    return text.strip()


def c_identifier(value: str) -> str:
    """`value` mapped to a valid C identifier (letters, digits, underscore; not starting with a digit)."""
    ident = re.sub(r"[^A-Za-z0-9_]", "_", value)
    if not ident or ident[0].isdigit():
        ident = "_" + ident
    return ident


def make_word(value: str) -> str:
    """One shell word, quoted for a Makefile recipe (`$` doubled so make passes it to the shell)."""
    if re.search(r"[\x00-\x1f\x7f]", value):
        raise ValueError(f"control characters are not allowed in a command argument: {value!r}")
    return shlex.quote(value).replace("$", "$$")
