"""Temporary files beside an output, for writing it atomically (write, then rename into place)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def temporary_beside(path: str | os.PathLike[str], suffix: str = ".partial") -> Path:
    """Create an empty, hidden file next to ``path`` and return its name.

    Unlike ``tempfile.mkstemp`` (mode 0600), the file gets the permissions any new file gets
    here (0666 less the umask), so the output renamed from it is as readable as one written
    directly.
    """
    p = Path(path)
    while True:
        tmp = p.with_name(f".{p.name}.{secrets.token_hex(4)}{suffix}")
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        return tmp


def write_text_atomically(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it: ``path`` is old or new, never half."""
    p = Path(path)
    tmp = temporary_beside(p)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
