"""FeatureCache: each frame is encoded once; spilled features come back bit-identical."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from napari_sam2 import load_model
from napari_sam2.engine.features import FeatureCache
from napari_sam2.engine.frames import FrameIndexError, FrameSource
from napari_sam2.engine.store import tensors_nbytes
from napari_sam2.model.sam2 import SAM2, ImageFeatures

from .parity import FIXTURES

T = 6


@pytest.fixture(scope="module")
def model() -> SAM2:
    d = FIXTURES / "small_sam2.1"
    return load_model(d / "checkpoint.pt", config=d / "config.json")


@pytest.fixture(scope="module")
def source() -> FrameSource:
    rng = np.random.default_rng(0)
    return FrameSource(rng.integers(0, 4000, (T, 48, 64)).astype(np.uint16))


def _fresh(model: SAM2, source: FrameSource, t: int) -> ImageFeatures:
    with torch.inference_mode():
        return model.encode_image(source.model_input(t, model.config.image_size))


def _assert_identical(a: ImageFeatures, b: ImageFeatures) -> None:
    for x, y in [(a.embed, b.embed), (a.pos, b.pos), (a.high_res[0], b.high_res[0]), (a.high_res[1], b.high_res[1])]:
        assert x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y)


def _frame_bytes(cache: FeatureCache) -> int:
    f = cache.get(0)
    return tensors_nbytes({"e": f.embed, "h0": f.high_res[0], "h1": f.high_res[1]})


def test_each_frame_is_encoded_once(model: SAM2, source: FrameSource) -> None:
    with FeatureCache(model, source) as cache:
        assert 2 not in cache and cache.encoded_count == 0
        first = cache.get(2)
        second = cache.get(2)
        assert cache.encoded_count == 1 and 2 in cache and len(cache) == 1
        _assert_identical(first, second)
        _assert_identical(first, _fresh(model, source, 2))
        assert cache.store.directory is None  # 1 GiB default budget: nothing spilled


@pytest.mark.parametrize("frames_in_ram", [0, 1, 2])
def test_spilled_features_are_bit_identical_and_never_re_encoded(model: SAM2, source: FrameSource, frames_in_ram: int) -> None:
    probe = FeatureCache(model, source, ram_budget_bytes=None)
    budget = frames_in_ram * _frame_bytes(probe)
    with FeatureCache(model, source, ram_budget_bytes=budget) as cache:
        fresh = [_fresh(model, source, t) for t in range(T)]
        order = [*range(T), *reversed(range(T)), 3, 0, 5, 3]  # forward, backward, then jumps
        for t in order:
            _assert_identical(cache.get(t), fresh[t])
            assert cache.store.ram_bytes <= budget
        assert cache.encoded_count == T
        assert cache.store.peak_ram_bytes <= budget
        assert cache.store.disk_bytes > 0


def test_position_encoding_is_kept_once(model: SAM2, source: FrameSource) -> None:
    cache = FeatureCache(model, source, ram_budget_bytes=0)
    assert cache.get(0).pos is cache.get(4).pos
    cache.close()


def test_bad_frame_index_raises_and_the_cache_stays_usable(model: SAM2, source: FrameSource) -> None:
    cache = FeatureCache(model, source)
    with pytest.raises(FrameIndexError, match=r"0\.\.5"):
        cache.get(T)
    with pytest.raises(FrameIndexError):
        cache.get(-1)
    cache.get(1)
    assert cache.encoded_count == 1


def test_a_raw_array_is_wrapped_in_a_frame_source(model: SAM2, source: FrameSource) -> None:
    cache = FeatureCache(model, source._frames)
    assert isinstance(cache.source, FrameSource)
    _assert_identical(cache.get(0), _fresh(model, source, 0))


class _PendingLookups(dict):
    """A FeatureCache's ``_pending``, counting the lookups that find a frame already being encoded."""

    def __init__(self) -> None:
        super().__init__()
        self.found = 0
        self.changed = threading.Condition()

    def get(self, key, default=None):  # type: ignore[override]
        event = super().get(key, default)
        if event is not None:
            with self.changed:
                self.found += 1
                self.changed.notify_all()
        return event


def test_concurrent_requests_for_one_frame_encode_it_once(model: SAM2, source: FrameSource) -> None:
    # The first request's encode is held until the two others have found frame 3 being encoded:
    # the overlap is made, not hoped for from a sleep, so a loaded machine cannot skip it.
    cache = FeatureCache(model, source)
    pending = cache._pending = _PendingLookups()
    real_encode = cache._encode
    encoding, release = threading.Event(), threading.Event()

    def held_encode(t: int) -> ImageFeatures:
        encoding.set()
        assert release.wait(120)
        return real_encode(t)

    cache._encode = held_encode  # type: ignore[method-assign]
    results: list[ImageFeatures] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get(3))) for _ in range(3)]
    threads[0].start()
    assert encoding.wait(120)
    for th in threads[1:]:
        th.start()
    with pending.changed:  # a broken cache encodes again instead, and the count never comes
        overlapped = pending.changed.wait_for(lambda: pending.found >= 2, timeout=60)
    release.set()
    for th in threads:
        th.join(120)
    assert overlapped, "the other requests did not wait for the frame being encoded"
    assert cache.encoded_count == 1 and len(results) == 3
    for r in results:
        _assert_identical(r, results[0])
