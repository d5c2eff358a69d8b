"""The lineage check (``python -m factory.check_lineage``) on a made-up lineage of a tiny model:
a record that agrees with its file, commands, results and git passes, and each kind of
disagreement is named. The shipped model's own record is checked by the tool, not here."""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
from pathlib import Path

import pytest
import torch

from factory import check_lineage
from factory.calibrate_presence import GRID, choose
from napari_sam2.finetune.loop import TrainSettings, export_model
from napari_sam2.model.sam2 import SAM2

from .parity import SMALL_CONFIG

TRAIN = "python -m factory.train"
#: a sweep per kind (mean per-frame IoU by presence bias) and what the calibration rule chooses
SWEEPS = {"t": (0.70, 0.74, 0.75, 0.76, 0.71), "z": (0.70, 0.72, 0.75, 0.74, 0.60, 0.50)}
CHOSEN = {k: choose(dict(zip(GRID[k], SWEEPS[k])), 0.005) for k in GRID}


def _settings(**changes) -> dict:
    return {**dataclasses.asdict(TrainSettings(**changes)), "freeze": []}


def _lineage(repo: Path) -> tuple[Path, dict]:
    """A folder with a calibrated mean of two runs (its .pt, lineage.json, MODEL_CARD.md) and
    its result files under ``repo``; returns (folder, record)."""
    torch.manual_seed(0)
    config = dataclasses.replace(SMALL_CONFIG, presence_bias_t=CHOSEN["t"], presence_bias_z=CHOSEN["z"])
    folder = repo / "bundled"
    path = export_model(SAM2(config), folder / "model.pt", averaged_from="runs/a/model.pt runs/b/model.pt")
    digest = check_lineage.sha256_of(path)
    (repo / "results").mkdir()
    calibration = {
        "split": "validation", "stacks_per_kind": 2, "frames": 8, "tolerance": 0.005,
        "kinds": {name: {"sweep": [{"bias": b, "mean": m} for b, m in zip(GRID[k], SWEEPS[k])], "chosen": CHOSEN[k]}
                  for k, name in (("t", "timelapse"), ("z", "zstack"))},
    }  # fmt: skip
    (repo / "results/calibration.json").write_text(json.dumps(calibration))
    (repo / "results/eval.json").write_text(json.dumps({"model": SMALL_CONFIG.name, "results": {"x": {"iou": 0.81234,
                                                        "interval": [0.7012, 0.9]}}}))  # fmt: skip
    step = {"commit": "unknown", "path": None, "sha256": "unknown"}
    record = {
        "model": SMALL_CONFIG.name, "file": "model.pt", "sha256": digest, "bytes": path.stat().st_size,
        "steps": [
            {**step, "name": "a", "kind": "train", "parents": [], "command": f"{TRAIN} --out runs/a --steps 30",
             "settings": _settings(steps=30), "output": "runs/a/model.pt"},
            {**step, "name": "b", "kind": "train", "parents": [], "output": "runs/b/model.pt", "settings":
             _settings(steps=30, seed=4, end_fraction=0.4), "command": f"{TRAIN} --out runs/b --steps 30 --seed 4 "
             "--end-fraction 0.4 --threads 1"},
            {**step, "name": "mean", "kind": "average", "parents": ["a", "b"], "settings": {},
             "command": "python -m factory.average runs/a/model.pt runs/b/model.pt -o runs/m/model.pt",
             "output": "runs/m/model.pt"},
            {**step, "name": "calibrated", "kind": "calibrate", "parents": ["mean"], "sha256": digest,
             "command": "python -m factory.calibrate_presence --model runs/m/model.pt -o runs/cal.pt",
             "output": "runs/cal.pt", "result": "results/calibration.json",
             "settings": {"split": "validation", "stacks_per_kind": 2, "frames": 8, "tolerance": 0.005,
                          "chosen": CHOSEN}},
        ],
        "evaluation": [{"name": "test", "command": "python -m factory.eval_cells", "result": "results/eval.json",
                        "commit": "unknown", "numbers": {"results.x.iou": 0.812, "results.x.interval": [0.701, 0.9]}}],
    }  # fmt: skip
    _write(folder, record, "| model | 0.812 (0.701-0.900) |\n")
    return folder, record


def _write(folder: Path, record: dict, card: str) -> None:
    (folder / "lineage.json").write_text(json.dumps(record))
    (folder / "MODEL_CARD.md").write_text(card)


def test_a_record_that_agrees_with_its_file_commands_and_results_passes(tmp_path: Path) -> None:
    folder, _ = _lineage(tmp_path)
    assert check_lineage.check(folder, git=False, repo=tmp_path) == []


def _changes():
    def setting(r):
        r["steps"][1]["settings"]["seed"] = 5  # the run recorded another seed than its command asks for

    def parent_output(r):
        r["steps"][2]["command"] = r["steps"][2]["command"].replace("runs/b/", "runs/c/")

    def sha(r):
        r["sha256"] = "0" * 64

    def unknown_parent(r):
        r["steps"][0]["parents"] = ["b"]

    def stray(r):
        r["steps"].insert(0, {**r["steps"][0], "name": "z", "command": f"{TRAIN} --out runs/z",
                              "output": "runs/z/model.pt", "settings": _settings()})  # fmt: skip

    def chosen(r):
        r["steps"][-1]["settings"]["chosen"] = {**CHOSEN, "t": CHOSEN["t"] + 0.5}

    def number(r):
        r["evaluation"][0]["numbers"]["results.x.iou"] = 0.814

    def missing(r):
        del r["steps"][1]["settings"]

    def refused(r):
        r["steps"][0]["command"] += " --correction-at first"

    return {"settings": setting, "reads": parent_output, "sha256": sha, "not earlier steps": unknown_parent,
            "not ancestors": stray, "presence biases": chosen, "results.x.iou is": number, "missing settings": missing,
            "refuses": refused}  # fmt: skip


@pytest.mark.parametrize("needle", list(_changes()))
def test_each_disagreement_is_named(tmp_path: Path, needle: str) -> None:
    folder, record = _lineage(tmp_path)
    broken = copy.deepcopy(record)
    _changes()[needle](broken)
    _write(folder, broken, (folder / "MODEL_CARD.md").read_text())
    problems = check_lineage.check(folder, git=False, repo=tmp_path)
    assert problems and any(needle in p for p in problems), problems


def test_a_card_that_does_not_quote_a_number_is_named(tmp_path: Path) -> None:
    folder, record = _lineage(tmp_path)
    _write(folder, record, "| model | 0.812 (0.701-0.899) |\n")
    assert check_lineage.check(folder, git=False, repo=tmp_path) == [
        "MODEL_CARD.md does not quote results.x.interval = 0.9 (results/eval.json)"
    ]


def test_the_main_command_exits_1_with_the_problems(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder, record = _lineage(tmp_path)
    record["bytes"] += 1
    _write(folder, record, (folder / "MODEL_CARD.md").read_text())
    assert check_lineage.main(["--folder", str(folder), "--no-git", "--repo", str(tmp_path)]) == 1
    assert "bytes, the record says" in capsys.readouterr().out


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip


def test_with_git_each_known_file_is_the_one_its_commit_holds(tmp_path: Path) -> None:
    folder, record = _lineage(tmp_path)
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "bundled/model.pt")
    _git(tmp_path, "commit", "-q", "-m", "the calibrated mean")
    head = _git(tmp_path, "rev-parse", "HEAD")
    record["steps"][-1].update(commit=head, path="bundled/model.pt")
    record["evaluation"][0].update(commit=head, path="bundled/model.pt")
    # the calibration's parent, the mean, committed as the same file: a calibration keeps the weights
    record["steps"][2].update(commit=head, path="bundled/model.pt", sha256=record["sha256"])
    _write(folder, record, (folder / "MODEL_CARD.md").read_text())
    assert check_lineage.check(folder, git=True, repo=tmp_path) == []
    record["steps"][2]["sha256"] = "1" * 64
    record["evaluation"][0]["commit"] = "0" * 40
    problems = check_lineage.check_git(record, folder, repo=tmp_path)
    assert problems == [f"commit {'0' * 40} does not exist"]
    record["evaluation"][0]["commit"] = head
    assert check_lineage.check_git(record, folder, repo=tmp_path) == [
        f"step 'mean': {head}:bundled/model.pt is not sha256 {'1' * 64}"
    ]
