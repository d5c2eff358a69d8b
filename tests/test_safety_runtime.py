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


# --------------------------------------------------------------------------- fine-tune run folders


@pytest.fixture(scope="module")
def finetune_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A random-weight model and one labelled 8-frame time-lapse (as tests/test_finetune.py)."""
    from napari_sam2.data.cells import cell_timelapse
    from napari_sam2.model.sam2 import SAM2
    from napari_sam2.train.loop import export_model

    d = tmp_path_factory.mktemp("finetune")
    torch.manual_seed(0)
    export_model(SAM2(SMALL_CONFIG), d / "base.pt", dtype=torch.float32)
    clip = cell_timelapse(8, (64, 64), n_cells=5, seed=1)
    np.save(d / "a.npy", clip.image)
    tifffile.imwrite(d / "a_labels.tif", clip.labels)
    return {"base": d / "base.pt", "image": d / "a.npy", "labels": d / "a_labels.tif"}


def _finetune_command(data: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["finetune", str(data["image"]), "--labels", str(data["labels"]), "--from", str(data["base"]),
            "-o", str(out), "--steps", "3", "--threads", "1", *extra]  # fmt: skip


def test_a_truncated_resume_checkpoint_names_the_file_and_how_to_start_over(finetune_data, tmp_path: Path) -> None:
    out = tmp_path / "mine.pt"
    first = run_cli(*_finetune_command(finetune_data, out, "--minutes", "0"), entry_point=True, env_extra=ONE_THREAD)
    assert first.returncode == 0, first.stderr
    last = tmp_path / "mine.pt.run" / "last.pt"
    whole = last.read_bytes()
    last.write_bytes(whole[: len(whole) // 2])  # a disk that filled up, a copy cut short
    proc = run_cli(*_finetune_command(finetune_data, out), entry_point=True, env_extra=ONE_THREAD)
    line = assert_one_line_error(proc, str(last), "truncated or corrupt", "start over", str(last.parent))
    assert "unexpected" not in line
    assert last.read_bytes() == whole[: len(whole) // 2], "the run's file must be left for the user to decide"
    assert not out.exists()


def _tiny_settings():  # -> TrainSettings
    from napari_sam2.train.finetune import FINETUNE_SETTINGS

    return dataclasses.replace(
        FINETUNE_SETTINGS, steps=3, warmup=1, images_per_step=1, objects_per_image=2, corrections=0,
        clip_length=3, objects_per_clip=2, video_fraction=0.0, log_every=1,
    )  # fmt: skip


@pytest.mark.parametrize("case", ["malicious", "a model file", "another model", "other parameters", "not a dict"])
def test_a_foreign_resume_checkpoint_is_one_checkpoint_error(case: str, finetune_data, tmp_path: Path) -> None:
    """Any ``last.pt`` that is not this run's training state is a CheckpointError naming it."""
    from napari_sam2.model.sam2 import SAM2
    from napari_sam2.train.files import finetune_files, run_dir_for

    out = tmp_path / "mine.pt"
    args = ([finetune_data["image"]], [finetune_data["labels"]], str(finetune_data["base"]), out, _tiny_settings())
    first = finetune_files(*args, stop_after_minutes=0.0, progress=False)
    assert first.step == 1
    last = run_dir_for(out) / "last.pt"
    marker = tmp_path / "pwned"
    if case == "malicious":
        torch.save({"model": _Payload(marker), "optimizer": {}, "step": 1}, last)
    elif case == "a model file":  # e.g. an exported model copied over it
        last.write_bytes(finetune_data["base"].read_bytes())
    elif case == "another model":
        other = dataclasses.replace(SMALL_CONFIG, mem_dim=SMALL_CONFIG.mem_dim * 2)
        state = torch.load(last, weights_only=True)
        torch.save({**state, "model": SAM2(other).state_dict()}, last)
    elif case == "other parameters":  # the optimiser of a run that trained other parameters
        state = torch.load(last, weights_only=True)
        state["optimizer"]["param_groups"] = state["optimizer"]["param_groups"][:1]
        torch.save(state, last)
    else:
        torch.save([1, 2, 3], last)
    with pytest.raises(CheckpointError) as info:
        finetune_files(*args, progress=False)
    message = str(info.value)
    assert str(last) in message and "start over" in message and "\n" not in message, message
    for advice in UNSAFE_ADVICE:
        assert advice not in message, message
    if case == "malicious":
        assert "refused for safety" in message, message
        assert not marker.exists(), "the payload ran"
    else:
        expected = {"a model file": "not a training checkpoint", "not a dict": "not a training checkpoint",
                    "another model": "saved for another model", "other parameters": "optimiser state for other"}
        assert expected[case] in message, message
    assert not out.exists()
