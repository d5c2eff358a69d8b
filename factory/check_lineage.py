"""Check the shipped model's lineage record against its file, today's code and git history.

    python -m factory.check_lineage              # the bundled model's folder (from the repository root)
    python -m factory.check_lineage --no-git     # without reading git history
    python -m factory.check_lineage --folder DIR # another folder holding a .pt, lineage.json, MODEL_CARD.md

``lineage.json`` (beside the shipped ``.pt``) lists the steps that made the file, oldest
first, the last one making the shipped file itself. What is checked:

1. the file's sha256 and size are the record's, and the file is the model it names;
2. every step has its fields, its parents are earlier steps, and every step is an ancestor
   of the last;
3. each training command, parsed by today's ``python -m factory.train``, gives the settings
   the run recorded, and each step reads its parents' outputs (``--init-from``, the
   averaged files, the calibrated ``--model``);
4. the file's own notes agree: ``averaged_from`` names the averaging step's inputs, and
   its presence biases are the calibration's, which the calibration rule
   (``factory.calibrate_presence.choose``) makes of the recorded sweep;
5. the evaluation's numbers are those of the result files it names, and the model card
   quotes each of them;
6. with git: every named commit exists; a step whose sha256 is known is the file that
   commit holds at the step's ``path``; a step that reads the model by its bundled name
   read the parent's file (the bundled file before its commit); a calibration kept its
   parent's weights.

Prints one line per problem and exits 1, or prints what was checked and exits 0. A field
that cannot be recovered says ``"unknown"`` and is not checked.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
UNKNOWN = "unknown"
#: fields every step has
STEP_FIELDS = ("name", "kind", "parents", "commit", "command", "settings", "output", "sha256")
KINDS = ("train", "average", "calibrate")

Problems = list[str]


def sha256_of(data: bytes | Path) -> str:
    """Hex sha256 of bytes or of a file's content."""
    h = hashlib.sha256()
    if isinstance(data, Path):
        with open(data, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    else:
        h.update(data)
    return h.hexdigest()


def _argv(command: str, prog: str) -> list[str] | None:
    """The arguments of ``command`` if it runs ``prog`` (``python -m prog ...``), else None."""
    words = shlex.split(command)
    return words[3:] if words[:3] == ["python", "-m", prog] else None


def _reads_writes(step: dict[str, Any]) -> tuple[list[str], str]:
    """(the model files or names a step's command reads, the file it writes), as today's
    factory commands parse it. Raises ValueError if it is not such a command."""
    prog = {"train": "factory.train", "average": "factory.average", "calibrate": "factory.calibrate_presence"}
    argv = _argv(step["command"], prog[step["kind"]])
    if argv is None:
        raise ValueError(f"{step['command']!r} is not python -m {prog[step['kind']]}")
    try:
        if step["kind"] == "train":
            from .train import build_parser

            args = build_parser().parse_args(argv)
            return [args.init_from] if args.init_from else [], str(Path(args.out) / "model.pt")
        p = argparse.ArgumentParser(exit_on_error=False)
        p.add_argument("-o", "--output", required=True)
        if step["kind"] == "average":
            p.add_argument("models", nargs="+")
            args, _ = p.parse_known_args(argv)
            return args.models, args.output
        p.add_argument("--model", required=True)
        args, _ = p.parse_known_args(argv)
        return [args.model], args.output
    except (SystemExit, argparse.ArgumentError) as exc:
        raise ValueError(f"today's command line refuses {step['command']!r} ({exc})") from None


def train_settings(recorded: dict[str, Any]) -> Any:
    """A run's recorded ``settings.json`` as today's ``TrainSettings`` (fields it lacks take
    their defaults, which are what those runs did)."""
    from napari_sam2.finetune.loop import TrainSettings

    return TrainSettings(**{**recorded, "freeze": tuple(recorded.get("freeze", ()))})


def check_steps(record: dict[str, Any]) -> Problems:
    """Fields, kinds and parents of every step (2), commands against settings, outputs and
    the parents' outputs (3)."""
    steps = record.get("steps")
    if not isinstance(steps, list) or not steps:
        return ["the record has no steps"]
    problems: Problems = []
    seen: dict[str, dict[str, Any]] = {}
    for step in steps:
        name = step.get("name", "?")
        missing = [f for f in STEP_FIELDS if f not in step]
        if missing or step.get("kind") not in KINDS:
            problems.append(f"step {name!r}: missing {', '.join(missing) or 'no field'}, kind {step.get('kind')!r}")
            continue
        unknown = [p for p in step["parents"] if p not in seen]
        if unknown:
            problems.append(f"step {name!r}: parents {unknown} are not earlier steps")
        else:
            problems += _check_command(step, [seen[p] for p in step["parents"]])
        seen[name] = step
    if problems:
        return problems
    ancestors, todo = set(), [steps[-1]["name"]]
    while todo:
        name = todo.pop()
        if name not in ancestors:
            ancestors.add(name)
            todo += seen[name]["parents"]
    stray = [s["name"] for s in steps if s["name"] not in ancestors]
    if stray:
        problems.append(f"steps {stray} are not ancestors of the shipped step {steps[-1]['name']!r}")
    return problems


def _check_command(step: dict[str, Any], parents: list[dict[str, Any]]) -> Problems:
    name = step["name"]
    try:
        reads, writes = _reads_writes(step)
    except ValueError as exc:
        return [f"step {name!r}: {exc}"]
    problems: Problems = []
    if step["kind"] == "train":
        from .train import build_parser, settings_from

        asked = settings_from(build_parser().parse_args(_argv(step["command"], "factory.train")))
        try:
            recorded = train_settings(step["settings"])
        except TypeError as exc:
            return [f"step {name!r}: its settings do not load into today's TrainSettings ({exc})"]
        differ = {k: (v, getattr(recorded, k)) for k, v in dataclasses.asdict(asked).items()
                  if v != getattr(recorded, k)}  # fmt: skip
        if differ:
            problems.append(f"step {name!r}: the command asks for other settings than it recorded "
                            f"(asked, recorded): {differ}")  # fmt: skip
    if writes != step["output"]:
        problems.append(f"step {name!r}: the command writes {writes}, the record says {step['output']}")
    # a step may read its one parent by the bundled name (the parent was the bundled file then)
    by_name = step.get("read_by_name")
    reads = [parents[0]["output"] if by_name and r == by_name and len(parents) == 1 else r for r in reads]
    if sorted(reads) != sorted(p["output"] for p in parents):
        problems.append(f"step {name!r}: reads {reads}, its parents wrote {[p['output'] for p in parents]}")
    return problems


def check_file(folder: Path, record: dict[str, Any], *, repo: Path = REPO) -> Problems:
    """The shipped file against the record (1) and its own notes (4)."""
    from napari_sam2.weights import read_checkpoint

    path = folder / record["file"]
    if not path.is_file():
        return [f"{path} does not exist"]
    problems: Problems = []
    last = record["steps"][-1]
    digest, size = sha256_of(path), path.stat().st_size
    if not digest == record["sha256"] == last["sha256"]:
        problems.append(f"{path}: sha256 {digest}, the record says {record['sha256']} (its last step {last['sha256']})")
    if size != record["bytes"]:
        problems.append(f"{path}: {size} bytes, the record says {record['bytes']}")
    _, config = read_checkpoint(path)
    if config is None or config.name != record["model"]:
        problems.append(f"{path}: holds {getattr(config, 'name', 'no config')!r}, not {record['model']!r}")
    notes = torch.load(path, map_location="cpu", weights_only=True)
    average = next((s for s in reversed(record["steps"]) if s["kind"] == "average"), None)
    if average is not None and notes.get("averaged_from") != " ".join(_reads_writes(average)[0]):
        problems.append(f"{path}: averaged from {notes.get('averaged_from')!r}, the record says {average['command']!r}")
    if last["kind"] == "calibrate" and config is not None:
        biases = {"t": config.presence_bias_t, "z": config.presence_bias_z}
        if biases != last["settings"].get("chosen"):
            problems.append(f"{path}: presence biases {biases}, the calibration chose {last['settings'].get('chosen')}")
        problems += _check_sweep(last, repo)
    return problems


def _check_sweep(step: dict[str, Any], repo: Path) -> Problems:
    """The calibration's choice is what its rule makes of the sweep it recorded."""
    from .calibrate_presence import GRID, KINDS as KIND_NAMES, choose

    result = _result(repo, step["result"])
    if isinstance(result, str):
        return [result]
    problems: Problems = []
    for kind, name in KIND_NAMES.items():
        sweep = result["kinds"][name]["sweep"]
        again = choose({row["bias"]: row["mean"] for row in sweep}, result["tolerance"])
        if [row["bias"] for row in sweep] != list(GRID[kind]):
            problems.append(f"{step['result']}: the {name} sweep is not on today's grid {GRID[kind]}")
        if not result["kinds"][name]["chosen"] == again == step["settings"]["chosen"][kind]:
            problems.append(f"{step['result']}: {name} chose {result['kinds'][name]['chosen']}, "
                            f"the rule gives {again}, the record says {step['settings']['chosen'][kind]}")  # fmt: skip
    for key in ("split", "stacks_per_kind", "frames", "tolerance"):
        if result.get(key) != step["settings"].get(key):
            recorded = step["settings"].get(key)
            problems.append(f"{step['result']}: {key} {result.get(key)!r}, the record says {recorded!r}")
    return problems


def _result(repo: Path, path: str) -> dict[str, Any] | str:
    """A result file (its path relative to the repository), or the problem reading it."""
    try:
        return json.loads((repo / path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return f"{path}: cannot be read ({exc})"


def _lookup(data: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        data = data[key]
    return data


def _quoted(value: float, card: str) -> bool:
    return f"{value:.3f}" in card or f"{100 * value:.1f}%" in card


def check_evaluation(record: dict[str, Any], card: str, *, repo: Path = REPO) -> Problems:
    """Each evaluation number is its result file's to 3 digits (within half of the last), and
    the card quotes it (5)."""
    problems: Problems = []
    for ev in record.get("evaluation", []):
        result = _result(repo, ev["result"])
        if isinstance(result, str):
            problems.append(result)
            continue
        if result.get("model") != record["model"]:
            problems.append(f"{ev['result']}: measured {result.get('model')!r}, not {record['model']!r}")
        for dotted, value in ev["numbers"].items():
            try:
                found = _lookup(result, dotted)
            except (KeyError, TypeError, IndexError):
                problems.append(f"{ev['result']}: has no {dotted}")
                continue
            values, founds = (value, found) if isinstance(value, list) else ([value], [found])
            close = all(abs(float(f) - float(v)) <= 5e-4 + 1e-9 for f, v in zip(founds, values))
            if len(founds) != len(values) or not close:
                problems.append(f"{ev['result']}: {dotted} is {found}, the record says {value}")
            for v in values:
                if not _quoted(float(v), card):
                    problems.append(f"MODEL_CARD.md does not quote {dotted} = {v} ({ev['result']})")
    return problems


def _git(*args: str, repo: Path = REPO) -> bytes | None:
    out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True)
    return out.stdout if out.returncode == 0 else None


def check_git(record: dict[str, Any], folder: Path, *, repo: Path = REPO) -> Problems:
    """Commits exist and hold the files the record says (6)."""
    problems: Problems = []
    steps = {s["name"]: s for s in record["steps"]}
    commits = [s["commit"] for s in record["steps"]] + [e["commit"] for e in record.get("evaluation", [])]
    for commit in commits:
        if commit != UNKNOWN and _git("cat-file", "-e", f"{commit}^{{commit}}", repo=repo) is None:
            problems.append(f"commit {commit} does not exist")
    if problems:
        return problems

    def blob(commit: str, path: str) -> bytes | None:
        return _git("show", f"{commit}:{path}", repo=repo)

    for step in record["steps"]:
        if step["sha256"] != UNKNOWN:
            data = blob(step["commit"], step["path"])
            if data is None or sha256_of(data) != step["sha256"]:
                where = f"{step['commit']}:{step['path']}"
                problems.append(f"step {step['name']!r}: {where} is not sha256 {step['sha256']}")
        if step.get("read_by_name"):
            parent = steps[step["parents"][0]]
            data = blob(f"{step['commit']}^", parent["path"])
            if data is None or sha256_of(data) != parent["sha256"]:
                problems.append(f"step {step['name']!r}: {step['read_by_name']!r} before {step['commit']} was not "
                                f"the file of {parent['name']!r}")  # fmt: skip
        if step["kind"] == "calibrate" and step is record["steps"][-1]:
            parent = steps[step["parents"][0]]
            data = blob(parent["commit"], parent["path"])
            before = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)["model"] if data else {}
            after = torch.load(folder / record["file"], map_location="cpu", weights_only=True)["model"]
            if before.keys() != after.keys() or any(not torch.equal(before[k], after[k]) for k in after):
                problems.append(f"step {step['name']!r}: the weights differ from those of {parent['name']!r}")
    for ev in record.get("evaluation", []):
        if ev["commit"] == UNKNOWN:
            continue
        data = blob(ev["commit"], ev.get("path", record["steps"][-1]["path"]))
        if data is None or sha256_of(data) != record["sha256"]:
            problems.append(f"{ev['result']}: at {ev['commit']} the bundled file was not this one")
    return problems


def check(folder: Path, *, git: bool = True, repo: Path = REPO) -> Problems:
    """Every check above on ``folder`` (its ``lineage.json``, ``MODEL_CARD.md`` and the file)."""
    try:
        record = json.loads((folder / "lineage.json").read_text())
        card = (folder / "MODEL_CARD.md").read_text()
    except (OSError, json.JSONDecodeError) as exc:
        return [f"{folder}: {exc}"]
    missing = [f for f in ("model", "file", "sha256", "bytes", "steps", "evaluation") if f not in record]
    if missing:
        return [f"lineage.json: missing {', '.join(missing)}"]
    problems = check_steps(record)
    if problems:
        return problems
    problems += check_file(folder, record, repo=repo)
    problems += check_evaluation(record, card, repo=repo)
    if git:
        problems += check_git(record, folder, repo=repo)
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m factory.check_lineage", description=__doc__.splitlines()[0])
    p.add_argument("--folder", type=Path, default=None, help="default: the bundled model's folder")
    p.add_argument("--no-git", dest="git", action="store_false", help="do not read git history (checks 6)")
    p.add_argument("--repo", type=Path, default=REPO, help="the repository the record's paths are relative to")
    args = p.parse_args(argv)
    if args.folder is None:
        from napari_sam2.weights import BUNDLED_DEFAULT, bundled_path

        args.folder = bundled_path(BUNDLED_DEFAULT).parent
    problems = check(args.folder, git=args.git, repo=args.repo)
    for line in problems:
        print(line)
    if problems:
        return 1
    record = json.loads((args.folder / "lineage.json").read_text())
    print(f"{args.folder / record['file']}: {len(record['steps'])} steps and {len(record['evaluation'])} evaluations "
          f"agree with the file, today's commands, the results{' and git' if args.git else ''}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
