"""Issue 24, data safety at run time: every bad checkpoint, run folder, scheduler and Ctrl-C
gets its one line, and nothing unsafe is ever run or advised.

* a malicious pickle checkpoint is refused for safety, its payload never runs, and no
  message advises loading it unsafely;
* a truncated or foreign ``last.pt`` of a fine-tune run names the file and what to do;
* Ctrl-C during start-up ends quietly (exit 130);
* a prompt added while a propagation is suspended invalidates that propagation;
* a TCP service that is not a dask scheduler is named as such within the connect timeout;
* a local cluster starts no dashboard and never fights over port 8787.
"""

from __future__ import annotations

import dataclasses
import errno
import http.server
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_sam2 import load_model
from napari_sam2.engine.session import VideoSession
from napari_sam2.errors import CheckpointError, InputError, SAM2Error

from .cli_helpers import CHECKPOINT, CONFIG, MODEL_ARGS, assert_one_line_error, make_stack, run_cli
from .parity import FIXTURES, SMALL_CONFIG

UNSAFE_ADVICE = ("weights_only=False", "weights_only` set to `False", "will likely succeed")
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
PROMPTS_JSON = '{"version": 1, "objects": [{"id": 1, "points": [{"frame": 0, "x": 50, "y": 60}]}]}'


# --------------------------------------------------------------------------- malicious checkpoints


class _Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def _malicious(kind: str, folder: Path) -> tuple[Path, Path]:
    """A checkpoint whose unpickling would create a marker file: (checkpoint, marker)."""
    marker = folder / f"pwned-{kind}"
    path = folder / f"evil-{kind}.pt"
    payload = _Payload(marker)
    if kind == "torch-zip":  # torch.save of a dict holding the object, as a real attack would ship
        torch.save({"model": payload}, path)
    elif kind == "torch-legacy":
        torch.save({"model": payload}, path, _use_new_zipfile_serialization=False)
    elif kind == "pickle-global":  # a plain pickle: GLOBAL posix.system + REDUCE
        path.write_bytes(pickle.dumps(payload, protocol=2))
    elif kind == "pickle-protocol-5":  # STACK_GLOBAL, FRAME: opcodes the safe unpickler does not read
        path.write_bytes(pickle.dumps(payload, protocol=5))
    else:
        raise ValueError(kind)
    assert not marker.exists()
    return path, marker


def _assert_refused_for_safety(message: str, path: Path) -> None:
    assert str(path) in message, message
    assert "refused for safety" in message, message
    assert "arbitrary Python objects" in message, message
    assert "corrupt" not in message, message  # it is not corrupt: it is dangerous
    for advice in UNSAFE_ADVICE:
        assert advice not in message, message
    assert "\n" not in message, message


MALICIOUS = ["torch-zip", "torch-legacy", "pickle-global", "pickle-protocol-5"]


@pytest.mark.parametrize("kind", MALICIOUS)
def test_load_model_refuses_a_malicious_pickle_for_safety_without_running_it(kind: str, tmp_path: Path) -> None:
    path, marker = _malicious(kind, tmp_path)
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    _assert_refused_for_safety(str(info.value), path)
    assert not marker.exists(), "the payload ran"


def test_segment_image_refuses_a_malicious_checkpoint_in_one_line(tmp_path: Path) -> None:
    path, marker = _malicious("torch-zip", tmp_path)
    image = tmp_path / "image.tif"
    tifffile.imwrite(image, make_stack(1)[0])
    proc = run_cli("segment-image", str(image), "--point", "50", "60", "--checkpoint", str(path),
                   "-o", str(tmp_path / "mask.tif"), entry_point=True)  # fmt: skip
    line = assert_one_line_error(proc, code=1)
    _assert_refused_for_safety(line, path)
    assert not marker.exists(), "the payload ran"
    assert not (tmp_path / "mask.tif").exists()


def test_segment_refuses_a_malicious_checkpoint_in_one_line(tmp_path: Path) -> None:
    path, marker = _malicious("pickle-global", tmp_path)
    np.save(tmp_path / "s.npy", make_stack(2))
    (tmp_path / "s.json").write_text(PROMPTS_JSON)
    proc = run_cli("segment", str(tmp_path / "s.npy"), "--prompts", str(tmp_path / "s.json"), "--checkpoint",
                   str(path), "-o", str(tmp_path / "out.zarr"), entry_point=True)  # fmt: skip
    line = assert_one_line_error(proc)
    _assert_refused_for_safety(line, path)
    assert not marker.exists(), "the payload ran"
    assert not (tmp_path / "out.zarr").exists()
