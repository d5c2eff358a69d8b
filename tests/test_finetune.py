"""Fine-tuning on labelled stacks: ``napari_sam2.finetune`` and ``napari-sam2 finetune``.

A tiny random-weight model (``SMALL_CONFIG``) and 64 x 64 synthetic stacks keep every test
at a few seconds on one thread.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_sam2 import load_model
from napari_sam2.synthetic import cell_timelapse, cells_image
from napari_sam2.errors import InputError
from napari_sam2.io import write_labels
from napari_sam2.model.sam2 import SAM2
from napari_sam2.finetune import FINETUNE_SETTINGS, export_model, finetune
from napari_sam2.finetune.files import finetune_files, run_dir_for

from .cli_helpers import assert_one_line_error, run_cli
from .parity import SMALL_CONFIG

ONE_THREAD = {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
#: settings small enough for a test: both stages, a few steps
TINY = dataclasses.replace(
    FINETUNE_SETTINGS, steps=4, warmup=1, images_per_step=2, objects_per_image=2, corrections=1,
    clip_length=3, objects_per_clip=2, video_fraction=0.5, log_every=1,
)  # fmt: skip


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A random-weight checkpoint and two labelled 8-frame stacks: a TIFF with OME-Zarr labels
    (as the plugin saves them) and a .npy with TIFF labels."""
    d = tmp_path_factory.mktemp("finetune")
    torch.manual_seed(0)
    export_model(SAM2(SMALL_CONFIG), d / "base.pt", dtype=torch.float32)
    a, b = (cell_timelapse(8, (64, 64), n_cells=5, seed=s) for s in (1, 2))
    tifffile.imwrite(d / "a.tif", a.image)
    write_labels(d / "a_labels.zarr", a.labels)
    np.save(d / "b.npy", b.image)
    tifffile.imwrite(d / "b_labels.tif", b.labels)
    tifffile.imwrite(d / "float_labels.tif", b.labels.astype(np.float32))
    tifffile.imwrite(d / "empty_labels.tif", np.zeros_like(b.labels))
    tifffile.imwrite(d / "small_labels.tif", b.labels[:, :32])
    return {"dir": d, "base": d / "base.pt", "a": d / "a.tif", "a_labels": d / "a_labels.zarr",
            "b": d / "b.npy", "b_labels": d / "b_labels.tif"}  # fmt: skip


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_cli_writes_a_model_that_loads_with_new_heads_and_the_same_encoder(data, tmp_path: Path) -> None:
    out = tmp_path / "mine.pt"
    proc = run_cli(
        "finetune", str(data["a"]), str(data["b"]), "--labels", str(data["a_labels"]), str(data["b_labels"]),
        "--from", str(data["base"]), "-o", str(out), "--steps", "3", "--threads", "1",
        entry_point=True, env_extra=ONE_THREAD,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}: 3 steps on 2 stacks, 16 labelled frames" in proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.pt", "mine.pt.run"]  # no temporary file
    base, tuned = load_model(data["base"]).state_dict(), load_model(out).state_dict()
    assert tuned["no_mem_embed"].dtype == torch.float32
    frozen = [k for k in base if k.startswith(("image_encoder.", "sam_mask_decoder.conv_s"))]
    assert frozen and all(torch.equal(base[k], tuned[k]) for k in frozen)
    changed = [k for k in base if k.startswith("sam_mask_decoder.") and not torch.equal(base[k], tuned[k])]
    assert len(changed) > 10
    assert _log(run_dir_for(out))[-1]["step"] == 3


def test_the_output_loads_through_the_plugins_checkpoint_path(data, tmp_path: Path) -> None:
    pytest.importorskip("magicgui")
    from napari_sam2._qt.model_picker import ModelChoice, load_job

    out = tmp_path / "mine.pt"
    settings = dataclasses.replace(TINY, steps=1)
    finetune_files([data["b"]], [data["b_labels"]], str(data["base"]), out, settings, progress=False)
    job = load_job(ModelChoice(checkpoint=out))
    with pytest.raises(StopIteration) as done:
        while True:
            next(job)
    assert isinstance(done.value.value, SAM2)
    assert done.value.value.config == SMALL_CONFIG


def test_rerunning_resumes_from_the_last_checkpoint(data, tmp_path: Path) -> None:
    out = tmp_path / "mine.pt"
    args = ([data["a"], data["b"]], [data["a_labels"], data["b_labels"]], str(data["base"]), out, TINY)
    first = finetune_files(*args, stop_after_minutes=0.0, progress=False)  # stops after one step
    assert first.output is None and first.step == 1 and not out.exists()
    second = finetune_files(*args, progress=False)
    assert second.output == out and second.step == TINY.steps
    assert [r["step"] for r in _log(first.run_dir)] == [1, 2, 3, 4]
    kinds = {k.split("/")[0] for r in _log(first.run_dir) for k in r if "/" in k}
    assert kinds == {"image", "video"}
    with pytest.raises(Exception, match="already exists; use --overwrite"):
        finetune_files(*args, progress=False)
    other = dataclasses.replace(TINY, lr=1e-3)
    with pytest.raises(Exception, match="holds a fine-tune with other settings"):
        finetune_files(*args[:4], other, overwrite=True, progress=False)
    record = first.run_dir / "finetune.json"
    for damage in ('{"from": ', "[1, 2]"):  # cut short, or not an object: damaged, not "another fine-tune"
        record.write_text(damage)
        with pytest.raises(InputError, match=r"finetune.json is damaged .* delete \(or move away\) that folder"):
            finetune_files(*args, overwrite=True, progress=False)


def test_loss_on_the_training_data_decreases(tmp_path: Path) -> None:
    """30 steps on one image: the loss falls by a fifth (it stays flat if no gradient flows)."""
    torch.manual_seed(0)
    model = SAM2(SMALL_CONFIG)
    image = cells_image((64, 64), seed=1)
    settings = dataclasses.replace(
        FINETUNE_SETTINGS, steps=30, lr=1e-3, warmup=1, images_per_step=1, objects_per_image=4, corrections=0,
        log_every=1,
    )  # fmt: skip
    finetune(model, [(image.image, image.labels)], tmp_path, settings, augment=False, progress=False)
    losses = [r["image/loss"] for r in _log(tmp_path)]
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
    assert not any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize(
    "case, needles",
    [
        ("count", ["got 2 image(s) and 1 label file(s)"]),
        ("shape", ["small_labels.tif", "differ in shape"]),
        ("float", ["float_labels.tif", "must be integer instance labels", "float32"]),
        ("empty", ["empty_labels.tif", "no object"]),
        ("model", ["unknown model 'no-such-model'"]),
        ("exists", ["mine.pt", "exists and is a file, not a model that finetune wrote"]),
        ("input", ["would replace the input", "base"]),
    ],
)
def test_cli_errors_are_one_line_exit_2(case: str, needles: list[str], data, tmp_path: Path) -> None:
    d = data["dir"]
    images, labels, source = [data["b"]], [data["b_labels"]], str(data["base"])
    out = tmp_path / "mine.pt"
    if case == "count":
        images = [data["a"], data["b"]]
    elif case in ("shape", "float", "empty"):
        labels = [d / f"{case if case != 'shape' else 'small'}_labels.tif"]
    elif case == "model":
        source = "no-such-model"
    elif case == "exists":
        out.write_bytes(b"keep me")
    elif case == "input":  # the model it starts from, given again as the output, with --overwrite
        out = Path(source)
    before = out.read_bytes() if out.exists() else None
    proc = run_cli(
        "finetune", *map(str, images), "--labels", *map(str, labels), "--from", source, "-o", str(out),
        "--steps", "1", *(["--overwrite"] if case in ("exists", "input") else []), entry_point=True,
        env_extra=ONE_THREAD,
    )  # fmt: skip
    assert_one_line_error(proc, *needles)
    assert not run_dir_for(out).exists() or not (run_dir_for(out) / "last.pt").exists()
    assert (out.read_bytes() == before) if before is not None else not out.exists()


def test_a_model_just_evaluated_under_inference_mode_can_be_finetuned(tmp_path: Path) -> None:
    """Position tables cached under ``torch.inference_mode`` (tracking) are rebuilt for training."""
    from napari_sam2.evaluate import evaluate_tracking

    torch.manual_seed(0)
    model = SAM2(dataclasses.replace(SMALL_CONFIG, presence_bias_t=0.5, presence_bias_z=-1.0))
    stack = cell_timelapse(4, (64, 64), n_cells=5, seed=3)
    with torch.inference_mode():
        evaluate_tracking(model, [stack], objects_per_stack=1, correction=False, min_area=16, stack_kind="t")
    settings = dataclasses.replace(TINY, steps=2, video_fraction=1.0)
    finetune(model, [(stack.image, stack.labels)], tmp_path, settings, progress=False)
    assert {k.split("/")[0] for r in _log(tmp_path) for k in r if "/" in k} == {"video"}
    assert model.config == SMALL_CONFIG  # the presence calibration of the old weights is dropped
