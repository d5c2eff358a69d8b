"""SpillStore: a key -> tensors store that keeps a RAM budget by spilling to a private temp dir."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import weakref
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from pathlib import Path
from types import TracebackType

import torch

Tensors = dict[str, torch.Tensor]


def tensors_nbytes(tensors: Mapping[str, torch.Tensor]) -> int:
    """Bytes held by the tensors' elements."""
    return sum(t.numel() * t.element_size() for t in tensors.values())


class SpillStore:
    """A thread-safe ``key -> dict[str, Tensor]`` store with a RAM budget and an LRU spill to disk.

    The entries held in RAM never take more than ``ram_budget_bytes`` (counted as
    element bytes). When a ``put`` or a ``get`` would exceed it, the least recently used
    entries are written to disk (``torch.save``, one file per entry) and dropped from
    RAM. ``get`` of a spilled entry reads it back (``torch.load(weights_only=True)``,
    bit-exact for every dtype, bfloat16 included) and makes it the most recent in RAM.

    Rules:

    * An entry larger than the whole budget goes straight to disk and is never cached
      in RAM: every ``get`` of it reads the file. ``ram_budget_bytes=0`` puts every
      (non-empty) entry on disk; ``None`` means no budget (nothing is ever spilled).
    * A spilled entry that is read back keeps its file, so spilling it again costs no
      write; ``put`` over an existing key and ``pop`` delete the stale file.
    * Files live in a private directory made lazily with ``tempfile.mkdtemp`` (inside
      ``spill_dir`` if given), removed by ``close()``, by leaving a ``with`` block, and when
      the store is garbage collected or the interpreter exits.
    * Stored tensors are detached; a view into a larger tensor is copied, so the budget
      counts the memory really held. Returned tensors are shared with the store: do not
      modify them in place.

    Arguments:
        ram_budget_bytes: bytes of tensors to keep in RAM, or None for no limit.
        spill_dir: parent directory of the private spill directory (default: the system temp dir).
    """

    def __init__(self, ram_budget_bytes: int | None, spill_dir: str | os.PathLike[str] | None = None) -> None:
        if ram_budget_bytes is not None and ram_budget_bytes < 0:
            raise ValueError(f"ram_budget_bytes must be >= 0 or None, got {ram_budget_bytes}")
        self.ram_budget_bytes = ram_budget_bytes
        self.spill_dir = None if spill_dir is None else Path(spill_dir)
        self._lock = threading.RLock()
        self._ram: OrderedDict[Hashable, Tensors] = OrderedDict()  # least recently used first
        self._sizes: dict[Hashable, int] = {}  # every key -> element bytes
        self._files: dict[Hashable, Path] = {}  # keys with a file on disk
        self._ram_bytes = 0
        self._disk_bytes = 0
        self.peak_ram_bytes = 0
        self._dir: Path | None = None
        self._finalizer: weakref.finalize | None = None
        self._counter = 0

    # ---------------------------------------------------------------- mapping
    def put(self, key: Hashable, tensors: Mapping[str, torch.Tensor]) -> None:
        """Store ``tensors`` under ``key`` (replacing any previous entry), spilling LRU entries."""
        entry = {name: _compact(t) for name, t in tensors.items()}
        size = tensors_nbytes(entry)
        with self._lock:
            self._remove(key)
            self._sizes[key] = size
            if self._fits(size):
                self._add_to_ram(key, entry, size)
            else:
                self._write(key, entry)

    def get(self, key: Hashable) -> Tensors | None:
        """The tensors stored under ``key`` (a new dict each call), or None if absent."""
        with self._lock:
            if key in self._ram:
                self._ram.move_to_end(key)
                return dict(self._ram[key])
            path = self._files.get(key)
            if path is None:
                return None
            entry: Tensors = torch.load(path, weights_only=True)
            size = self._sizes[key]
            if self._fits(size):
                self._add_to_ram(key, entry, size)
            return dict(entry)

    def pop(self, key: Hashable) -> Tensors | None:
        """Remove ``key`` (RAM and disk) and return its tensors, or None if absent."""
        with self._lock:
            value = self.get(key)
            self._remove(key)
            return value

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._sizes

    def keys(self) -> list[Hashable]:
        """A snapshot of all keys (in RAM or on disk)."""
        with self._lock:
            return list(self._sizes)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sizes)

    def clear(self) -> None:
        """Remove every entry and its file (the spill directory stays until ``close``)."""
        with self._lock:
            for key in list(self._sizes):
                self._remove(key)

    @property
    def ram_bytes(self) -> int:
        """Element bytes of the entries held in RAM."""
        return self._ram_bytes

    @property
    def disk_bytes(self) -> int:
        """Element bytes of the entries that have a file on disk (a reloaded entry counts in both)."""
        return self._disk_bytes

    def in_ram(self, key: Hashable) -> bool:
        """Whether ``key`` is held in RAM (False if spilled or absent)."""
        with self._lock:
            return key in self._ram

    # ---------------------------------------------------------------- lifetime
    def close(self) -> None:
        """Drop every entry and delete the spill directory. The store stays usable."""
        with self._lock:
            self.clear()
            if self._finalizer is not None:
                self._finalizer()  # removes the directory
            self._finalizer = None
            self._dir = None

    def __enter__(self) -> SpillStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @property
    def directory(self) -> Path | None:
        """The private spill directory, or None until the first spill."""
        return self._dir

    # ---------------------------------------------------------------- internals
    def _fits(self, size: int) -> bool:
        return self.ram_budget_bytes is None or size <= self.ram_budget_bytes

    def _add_to_ram(self, key: Hashable, entry: Tensors, size: int) -> None:
        self._ram[key] = entry
        self._ram_bytes += size
        budget = self.ram_budget_bytes
        while budget is not None and self._ram_bytes > budget:
            old, old_entry = self._ram.popitem(last=False)
            self._ram_bytes -= self._sizes[old]
            if old not in self._files:
                self._write(old, old_entry)
        self.peak_ram_bytes = max(self.peak_ram_bytes, self._ram_bytes)

    def _write(self, key: Hashable, entry: Tensors) -> None:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="napari-sam2-", dir=self.spill_dir))
            self._finalizer = weakref.finalize(self, shutil.rmtree, self._dir, ignore_errors=True)
        self._counter += 1
        path = self._dir / f"{self._counter}.pt"
        torch.save(entry, path)
        self._files[key] = path
        self._disk_bytes += self._sizes[key]

    def _remove(self, key: Hashable) -> None:
        if key not in self._sizes:
            return
        size = self._sizes.pop(key)
        if self._ram.pop(key, None) is not None:
            self._ram_bytes -= size
        path = self._files.pop(key, None)
        if path is not None:
            self._disk_bytes -= size
            path.unlink(missing_ok=True)


def _compact(t: torch.Tensor) -> torch.Tensor:
    """``t`` detached, copied if it is a view into a larger storage (so it saves and counts alone)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"SpillStore values must be torch tensors, got {type(t).__name__}")
    t = t.detach()
    if t.untyped_storage().nbytes() != t.numel() * t.element_size() or not t.is_contiguous():
        t = t.clone(memory_format=torch.contiguous_format)
    return t
