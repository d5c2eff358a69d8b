"""SpillStore: RAM budget, LRU spill to disk, exact round trips, cleanup."""

from __future__ import annotations

import gc
import threading
from pathlib import Path

import pytest
import torch

from napari_sam2.engine.store import SpillStore, tensors_nbytes

MB = 1 << 20


def _entry(seed: int, n: int = MB // 4, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """About ``n * element_size`` bytes of random tensors (1 MiB for float32 by default)."""
    g = torch.Generator().manual_seed(seed)
    return {"a": torch.randn(n // 2, generator=g).to(dtype), "b": torch.randn(n // 2, generator=g).to(dtype)}


def _files(store: SpillStore) -> list[Path]:
    return [] if store.directory is None else sorted(store.directory.iterdir())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.int64])
def test_round_trip_through_disk_is_exact(dtype: torch.dtype) -> None:
    with SpillStore(0) as store:  # budget 0: everything goes to disk
        value = {"x": (torch.randn(3, 5, 7) * 1e3).to(dtype), "y": torch.randn(2, 2).to(dtype)}
        store.put("k", value)
        assert not store.in_ram("k") and store.ram_bytes == 0
        assert store.disk_bytes == tensors_nbytes(value) and len(_files(store)) == 1
        back = store.get("k")
        assert back is not None and back.keys() == value.keys()
        for name in value:
            assert back[name].dtype == dtype and torch.equal(back[name], value[name])


def test_least_recently_used_entries_spill_first() -> None:
    with SpillStore(2 * MB) as store:
        store.put(0, _entry(0))
        store.put(1, _entry(1))
        assert store.get(0) is not None  # 0 becomes the most recent
        store.put(2, _entry(2))  # over budget: 1 is the least recently used
        assert [store.in_ram(k) for k in (0, 1, 2)] == [True, False, True]
        assert torch.equal(store.get(1)["a"], _entry(1)["a"])  # reloading 1 spills 0
        assert [store.in_ram(k) for k in (0, 1, 2)] == [False, True, True]
        assert sorted(store.keys()) == [0, 1, 2] and len(store) == 3 and 1 in store and 5 not in store


def test_ram_use_stays_within_budget_after_every_put() -> None:
    budget = 3 * MB + 1
    with SpillStore(budget) as store:
        for k in range(10):
            store.put(k, _entry(k))
            assert store.ram_bytes <= budget
        for k in (3, 9, 0, 5, 5, 1):
            assert torch.equal(store.get(k)["b"], _entry(k)["b"])
            assert store.ram_bytes <= budget
        assert store.peak_ram_bytes <= budget
        assert store.ram_bytes == 3 * MB and store.disk_bytes == 10 * MB  # every entry was spilled once; reloads keep their file


def test_an_entry_larger_than_the_budget_goes_straight_to_disk() -> None:
    with SpillStore(MB) as store:
        store.put("small", _entry(0, n=MB // 8))
        store.put("big", _entry(1, n=MB))  # 4 MiB > 1 MiB budget
        assert store.in_ram("small") and not store.in_ram("big")
        assert torch.equal(store.get("big")["a"], _entry(1, n=MB)["a"])
        assert not store.in_ram("big") and store.in_ram("small")  # read from disk, not cached


def test_unbounded_store_never_touches_disk() -> None:
    store = SpillStore(None)
    for k in range(5):
        store.put(k, _entry(k))
    assert store.ram_bytes == 5 * MB and store.disk_bytes == 0 and store.directory is None


def test_pop_and_put_over_a_key_remove_its_file() -> None:
    with SpillStore(0) as store:
        store.put("a", _entry(0))
        store.put("b", _entry(1))
        assert len(_files(store)) == 2
        popped = store.pop("a")
        assert popped is not None and torch.equal(popped["a"], _entry(0)["a"])
        assert "a" not in store and store.pop("a") is None and len(_files(store)) == 1
        store.put("b", _entry(2))  # replaces the stale file
        assert len(_files(store)) == 1 and torch.equal(store.get("b")["a"], _entry(2)["a"])
        store.clear()
        assert len(store) == 0 and _files(store) == [] and store.disk_bytes == 0


def test_close_context_exit_and_garbage_collection_remove_the_directory(tmp_path: Path) -> None:
    store = SpillStore(0, spill_dir=tmp_path)
    store.put(0, _entry(0))
    directory = store.directory
    assert directory is not None and directory.parent == tmp_path and directory.name.startswith("napari-sam2-")
    store.close()
    assert not directory.exists() and len(store) == 0
    store.put(1, _entry(1))  # still usable: a new directory is made
    assert store.get(1) is not None

    with SpillStore(0, spill_dir=tmp_path) as other:
        other.put(0, _entry(0))
        other_dir = other.directory
    assert other_dir is not None and not other_dir.exists()

    gone = SpillStore(0, spill_dir=tmp_path)
    gone.put(0, _entry(0))
    gone_dir = gone.directory
    del gone
    gc.collect()
    assert gone_dir is not None and not gone_dir.exists()
    store.close()
    assert list(tmp_path.iterdir()) == []


def test_views_are_stored_compactly_and_detached() -> None:
    big = torch.randn(1000, 1000, requires_grad=True)
    with SpillStore(0) as store:
        store.put("v", {"row": big[3]})
        assert store.disk_bytes == 1000 * 4
        assert store.directory is not None
        assert next(store.directory.iterdir()).stat().st_size < 100_000  # not the 4 MB base tensor
        row = store.get("v")["row"]
        assert not row.requires_grad and torch.equal(row, big[3].detach())


def test_concurrent_reader_and_writer_see_consistent_entries() -> None:
    store = SpillStore(2 * MB)
    errors: list[BaseException] = []

    def writer() -> None:
        for k in range(20):
            store.put(k, _entry(k, n=MB // 16))

    def reader() -> None:
        try:
            for _ in range(200):
                for k in store.keys():
                    got = store.get(k)
                    assert got is not None and torch.equal(got["a"], _entry(k, n=MB // 16)["a"])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    store.close()
    assert not errors and store.peak_ram_bytes <= 2 * MB
