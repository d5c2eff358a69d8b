"""Damaged TIFFs: found at open, reported in one error of ours instead of tifffile's log lines.

tifffile alone reads a TIFF whose page list breaks off, or that holds fewer pages than its
metadata declare, as its first page(s), and says so only in log lines. :func:`check_tiff`
turns what it logs, the pages it lists and the bytes the file really has into an
:class:`~napari_sam2.errors.InputError` naming the file; :func:`quiet_tifffile` keeps those log
lines off stderr while any of our readers works.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from os import PathLike
from pathlib import Path
from typing import Any

from ..errors import InputError, one_line
from ._tiff_calibration import TiffLayout, tiff_layout

#: what tifffile logs when a file's structure is broken (page list cut short, fewer pages than declared)
_TIFF_DAMAGE = (
    "invalid page offset", "invalid offset to page", "corrupted tag list", "circular reference",
    "corrupted file", "failed to reshape", "does not match page shape", "corrupted IFD",
)  # fmt: skip


def check_tiff(path: str | PathLike[str]) -> str | None:
    """Raise :class:`InputError` if a TIFF is damaged; else return its first series' axes.

    Damaged: its list of pages ends early (a truncated or overwritten file), it holds fewer
    pages than its own metadata (tifffile shape, ImageJ, OME-XML) declares, or its pixel data
    reach past the end of the file. tifffile alone reads such files as their first page(s).
    """
    return check_tiff_layout(path)[0]


def check_tiff_layout(path: str | PathLike[str]) -> tuple[str | None, TiffLayout]:
    """:func:`check_tiff`, and the file's layout (:func:`tiff_layout`) read while it is open."""
    import tifffile

    p = Path(path)
    with quiet_tifffile() as logged:
        try:
            with tifffile.TiffFile(p) as tif:
                size = tif.filehandle.size
                series = tif.series[0] if tif.series else None
                damage = next((m for m in logged if any(k in m for k in _TIFF_DAMAGE)), None)
                if damage is not None:
                    what = "its list of pages breaks off"
                    if "shape" in damage or "corrupted file" in damage:
                        what = "it holds fewer pages than its metadata declare"
                    why = f"{what}; {_tifffile_message(damage)}"
                    raise InputError(f"input {str(p)!r}: the TIFF file is damaged ({why})")
                if series is None:
                    return None, (None, None, None)
                pages = list(getattr(series, "_pages", None) or series.pages)
                missing = sum(page is None for page in pages)
                if missing:
                    raise InputError(
                        f"input {str(p)!r}: the TIFF file is damaged ({missing} of the {len(pages)} pages "
                        "its metadata lists are missing)"
                    )
                end = _data_end(series, pages)
                if end > size:
                    raise InputError(
                        f"input {str(p)!r}: the TIFF file is damaged (truncated: its pixel data end at byte {end} "
                        f"but the file has {size} bytes)"
                    )
                return str(series.axes), tiff_layout(tif, str(series.axes))
        except InputError:
            raise
        except Exception as e:
            why = f"cannot read the TIFF file: it is damaged or not a TIFF ({one_line(e)})"
            raise InputError(f"input {str(p)!r}: {why}") from None


def _data_end(series: Any, pages: list[Any]) -> int:
    """The byte just past the last pixel data of ``series``."""
    if series.dataoffset is not None:  # contiguous (memory-mappable): one block
        return int(series.dataoffset) + int(series.nbytes)
    end = 0
    for page in pages:
        ends = [int(o) + int(c) for o, c in zip(page.dataoffsets, page.databytecounts, strict=False) if c]
        end = max(end, *ends) if ends else end
    return end


def _tifffile_message(message: str) -> str:
    """tifffile's log line without the ``<tifffile.TiffPages @8>`` object it starts with."""
    text = message.strip().splitlines()[0] if message.strip() else message
    if text.startswith("<") and "> " in text:
        text = text.split("> ", 1)[1]
    return "tifffile: " + text[:160]


class _Collect(logging.Handler):
    """Keeps the messages tifffile logs in one thread."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


_quiet_lock = threading.Lock()
_quiet_users = 0
_quiet_saved: tuple[int, bool] = (logging.NOTSET, True)


@contextmanager
def quiet_tifffile() -> Iterator[list[str]]:
    """Keep tifffile's log lines off stderr (and the root logger) while we read; yield what it logged.

    We report a damaged file in one error of our own. The logger's level and ``propagate`` are
    restored when the last reader (of any thread) is done.
    """
    global _quiet_users, _quiet_saved
    logger = logging.getLogger("tifffile")
    handler = _Collect()
    with _quiet_lock:
        if _quiet_users == 0:
            _quiet_saved = (logger.level, logger.propagate)
            logger.setLevel(logging.WARNING)
            logger.propagate = False
        _quiet_users += 1
        logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        with _quiet_lock:
            logger.removeHandler(handler)
            _quiet_users -= 1
            if _quiet_users == 0:
                logger.setLevel(_quiet_saved[0])
                logger.propagate = _quiet_saved[1]
