"""What is ours, and what may be replaced: the overwrite and recovery rules of our label stores.

A store is ours when its metadata says so (:func:`is_label_store`), never by its name. Only
such a store is replaced by ``overwrite=True`` (:func:`check_replaceable`, which every
command's output goes through), an output may not be or hold an input
(:func:`check_output_spares`), and what a killed writer left beside an output is put back
or removed (:func:`recover`) under a lock on the folder (:func:`folder_lock`).
:class:`~napari_sam2.io.labels.LabelWriter` follows these rules at creation and at commit.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import socket
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from os import PathLike
from pathlib import Path

import zarr

from ..errors import InputError, OutputExistsError
from ._ngff import METADATA_KEY

_log = logging.getLogger("napari_sam2")


def is_label_store(path: str | PathLike[str]) -> bool:
    """Whether ``path`` is a finished label store that :class:`~napari_sam2.io.labels.LabelWriter` wrote.

    Recognised by its metadata, not its name: a folder (not a link) whose root group carries
    our ``napari_sam2`` attribute (written at commit) and lists a label image with our
    metadata. Only such a store may be replaced by ``overwrite=True``.
    """
    p = Path(path)
    if p.is_symlink() or not (p / "zarr.json").is_file():
        return False
    try:
        root = zarr.open_group(p, mode="r")
        ours = root.attrs.asdict().get(METADATA_KEY)
        if not isinstance(ours, dict) or "image_stored" not in ours:
            return False
        labels = root["labels"]
        names = labels.attrs.asdict().get("ome", {}).get("labels", [])
        return any("package_version" in labels[n].attrs.asdict().get(METADATA_KEY, {}) for n in names)
    except Exception:  # noqa: BLE001 - anything we cannot read as ours is not ours
        return False


def stores_placeholder_image(path: str | PathLike[str]) -> bool:
    """Whether ``path`` is one of our label stores whose root image is the zero placeholder."""
    if not is_label_store(path):
        return False
    return not zarr.open_group(Path(path), mode="r").attrs.asdict()[METADATA_KEY]["image_stored"]


def check_output_spares(output: str | PathLike[str], inputs: Iterable[str | PathLike[str] | None]) -> None:
    """Refuse an output that is, contains or lies inside one of the run's ``inputs``.

    Compares real paths (links resolved) and, where both exist, the files themselves
    (hard links). Raises :class:`~napari_sam2.errors.InputError` naming both.
    """
    out = Path(os.path.realpath(output))
    for item in inputs:
        if item is None:
            continue
        inp = Path(os.path.realpath(item))
        same = inp == out
        if not same and os.path.exists(inp) and os.path.exists(out):
            try:
                same = os.path.samefile(inp, out)
            except OSError:
                same = False
        if same or out in inp.parents:
            raise InputError(f"the output {str(output)!r} would replace the input {str(item)!r}; choose another output")
        if inp in out.parents and inp.is_dir():
            raise InputError(f"the output {str(output)!r} lies inside the input {str(item)!r}; choose another output")


def check_replaceable(
    path: str | PathLike[str],
    overwrite: bool,
    *,
    ours: Callable[[Path], bool] | None = None,
    what: str = "a label store that napari-sam2 wrote",
) -> None:
    """The overwrite rule: raise :class:`OutputExistsError` unless ``path`` is absent, or is
    ``what`` (``ours(path)``, default :func:`is_label_store`) and ``overwrite`` is on.

    Every command's output goes through it: label stores here, ``segment-image`` masks and
    ``finetune`` models with their own ``ours`` and ``what``.
    """
    p = Path(path)
    if not os.path.lexists(p):
        return
    mine = (ours or is_label_store)(p)
    if mine and not overwrite:
        raise OutputExistsError(f"{p} already exists; use --overwrite to replace it, or choose another output")
    if not mine:
        kind = "a link" if p.is_symlink() else "a folder" if p.is_dir() else "a file"
        raise OutputExistsError(
            f"{p} exists and is {kind}, not {what}; --overwrite replaces only {what}, never an input or "
            "anything else: move it away or choose another output"
        )


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder`` (flock on the folder itself, no lock file) while moving stores.

    Serialises recovery and commits of the stores in one folder across processes, so that
    concurrent writers of one output end in a clean "already exists". Where flock is missing
    (Windows), nothing is locked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _writer_alive(partial: Path) -> bool:
    """Whether the process that is building ``partial`` may still be running (unknown: yes)."""
    try:
        owner = json.loads((partial / "zarr.json").read_text())["attributes"][METADATA_KEY]["writer"]
        host, pid = str(owner["host"]), int(owner["pid"])
    except Exception:  # noqa: BLE001 - no owner recorded: it may be anyone's
        return True
    if host != socket.gethostname():
        return True  # another machine's, on a shared file system: not ours to judge
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def recover_locked(path: Path) -> list[str]:
    """:func:`recover`'s work on ``path``, for a caller that holds :func:`folder_lock` on its folder."""
    notes: list[str] = []
    pattern = glob.escape(path.name)
    olds = sorted((o for o in path.parent.glob(pattern + ".old-*") if is_label_store(o)), key=os.path.getmtime)
    if olds and not os.path.lexists(path):
        keep = olds.pop()  # the newest: the store the interrupted overwrite was replacing
        os.rename(keep, path)
        notes.append(f"restored {path} from {keep.name}, left by an overwrite that was interrupted")
    for old in olds:
        shutil.rmtree(old, ignore_errors=True)
        notes.append(f"removed {old.name}, a replaced store that an interrupted overwrite left")
    for partial in path.parent.glob(pattern + ".partial-*"):
        if partial.is_dir() and not partial.is_symlink() and not _writer_alive(partial):
            shutil.rmtree(partial, ignore_errors=True)
            notes.append(f"removed {partial.name}, the unfinished store of a run that was killed")
    return notes


def recover(path: str | PathLike[str]) -> list[str]:
    """Undo what a killed writer of ``path`` left, and say what was done.

    - ``path`` missing beside ``path.old-*`` (killed between the two renames of an overwrite):
      the old store is renamed back, so the earlier result is there again;
    - ``path.old-*`` beside ``path`` (killed after the second rename): removed;
    - ``path.partial-*`` of a process of this machine that no longer runs: removed.

    Only stores napari-sam2 wrote are touched. Each note is also logged (logger ``napari_sam2``).
    """
    p = Path(path)
    if not p.parent.is_dir():
        return []
    with folder_lock(p.parent):
        notes = recover_locked(p)
    for note in notes:
        _log.warning(note)
    return notes
