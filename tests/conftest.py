"""Shared test setup: fast deterministic CPU torch, where the fixtures live, and the ``slow`` mark."""

from __future__ import annotations

import os
import types
from pathlib import Path

import pytest

# OpenMP threads that wait for work sleep instead of spinning. Read once, when torch loads
# its OpenMP runtime, so set before importing torch; children (the CLI tests) inherit it.
# With another test suite running beside this one on the 2 cores, test_session.py took
# 44-92 s with spinning threads and 11-14 s without (run back to back, twice each).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

# Random-weight models produce denormal floats that slow CPU math by 10-20x; flush them
# (before set_num_threads, see shared/design/ENVIRONMENT.md). Two threads = this machine.
torch.set_flush_denormal(True)
torch.set_num_threads(2)

FIXTURES_DIR = Path(__file__).parent / "fixtures"


@pytest.fixture
def fixtures_dir() -> Path:
    """The folder of generated parity fixtures (see tests/fixtures/README.md)."""
    return FIXTURES_DIR


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never download: every hub call napari_sam2 makes fails (a test may patch it again)."""
    import huggingface_hub

    def refuse(*args: object, **kwargs: object) -> str:
        raise OSError("tests must not touch the network")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", refuse)


# ------------------------------------------------------------------ the slow mark
# `pytest -m "not slow"` runs the fast core; plain `pytest` (the README's command) runs all.
# A test is marked slow here, at collection, for what makes it slow, so that a new test is
# marked without anyone having to remember it:
#   1. it opens a napari viewer (the make_napari_viewer fixture): 3-40 s each;
#   2. it starts another process (subprocess, multiprocessing) itself, in a fixture it uses
#      or in a helper of this tests/ package that it calls (run_cli, say): each child
#      imports torch and loads a model, 2-35 s.
# Everything else runs in this process and is fast, parity on the video fixtures included
# (about 1 s per case). A test that is slow for another reason can say so itself with
# @pytest.mark.slow.

#: names that, referenced from a test's code, mean it starts a process
_SPAWNS = frozenset({"subprocess", "multiprocessing", "Popen"})
_PACKAGE = __name__.split(".")[0]  # "tests"


def _ours(function: object) -> bool:
    return isinstance(function, types.FunctionType) and function.__module__.split(".")[0] == _PACKAGE


def _starts_a_process(code: types.CodeType, globals_: dict, seen: set[types.CodeType]) -> bool:
    """Whether ``code``, a function nested in it or a function of tests/ it calls names ``_SPAWNS``."""
    if code in seen:
        return False
    seen.add(code)
    if _SPAWNS & set(code.co_names):
        return True
    for const in code.co_consts:  # nested functions and lambdas
        if isinstance(const, types.CodeType) and _starts_a_process(const, globals_, seen):
            return True
    for name in code.co_names:
        helper = globals_.get(name)
        if _ours(helper) and _starts_a_process(helper.__code__, helper.__globals__, seen):
            return True
    return False


def _is_slow(item: pytest.Function) -> bool:
    if "make_napari_viewer" in item.fixturenames:
        return True
    functions = [getattr(item.obj, "__func__", item.obj)]
    for name in item.fixturenames:  # e.g. a module-scoped fixture that runs the CLI
        functions += [fixturedef.func for fixturedef in item._fixtureinfo.name2fixturedefs.get(name, ())]
    seen: set[types.CodeType] = set()
    return any(_ours(f) and _starts_a_process(f.__code__, f.__globals__, seen) for f in functions)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if isinstance(item, pytest.Function) and _is_slow(item):
            item.add_marker(pytest.mark.slow)
