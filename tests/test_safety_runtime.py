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
import os
import pickle
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_sam2 import load_model
from napari_sam2.engine.session import VideoSession
from napari_sam2.errors import CheckpointError, InputError
from napari_sam2.io import read_labels

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
    from napari_sam2.synthetic import cell_timelapse
    from napari_sam2.model.sam2 import SAM2
    from napari_sam2.finetune.loop import export_model

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
    from napari_sam2.finetune.arrays import FINETUNE_SETTINGS

    return dataclasses.replace(
        FINETUNE_SETTINGS, steps=3, warmup=1, images_per_step=1, objects_per_image=2, corrections=0,
        clip_length=3, objects_per_clip=2, video_fraction=0.0, log_every=1,
    )  # fmt: skip


@pytest.mark.parametrize("case", ["malicious", "a model file", "another model", "other parameters", "not a dict"])
def test_a_foreign_resume_checkpoint_is_one_checkpoint_error(case: str, finetune_data, tmp_path: Path) -> None:
    """Any ``last.pt`` that is not this run's training state is a CheckpointError naming it."""
    from napari_sam2.model.sam2 import SAM2
    from napari_sam2.finetune.files import finetune_files, run_dir_for

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


# --------------------------------------------------------------------------- Ctrl-C at start-up


def _default_sigint() -> None:  # in the child, before exec: tests may run with SIGINT ignored
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# pip's console script and our __main__ run a few lines of their own (imports, pip's
# ``sys.argv[0] = re.sub(...)``) before they call main(): a signal there is Python's to report
def _is_prologue(code: str) -> bool:
    return "main(" not in code


def _torch_is_loading(pid: int) -> bool:
    """True once the child has mapped libtorch: it is importing napari_sam2.cli, inside _entry's guard
    (``import napari_sam2`` and ``_entry`` import no torch)."""
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def _from_before_our_code(err: str, script: str) -> bool:
    """True if ``err``'s traceback is one Python printed before napari-sam2 could run: during
    interpreter start-up (site and the .pth lines it runs, such as the editable install's
    finder), in the console script's or runpy's first lines, or while importing
    ``napari_sam2/__init__`` or ``_entry`` themselves (module level only)."""
    frames = re.findall(r'File "([^"]+)", line \d+, in (\S+)\n(?: {4}(.*)\n)?', err)
    if not frames or not err.rstrip().endswith("KeyboardInterrupt"):
        return False
    package = os.sep + "napari_sam2" + os.sep
    for path, function, code in frames:
        if path == script or path.endswith(os.path.join("napari_sam2", "__main__.py")):
            if not _is_prologue(code):
                return False
        elif path.endswith(os.path.join("napari_sam2", "__init__.py")) or path.endswith("_entry.py"):
            if function != "<module>":
                return False
        elif package in path:
            return False  # our own code was running: it must have caught the signal
    return True


@pytest.mark.parametrize("entry_point", [True, False], ids=["console-script", "python-m"])
def test_ctrl_c_during_start_up_exits_quietly(entry_point: bool, tmp_path: Path) -> None:
    np.save(tmp_path / "s.npy", make_stack(2))
    (tmp_path / "s.json").write_text(PROMPTS_JSON)
    script = str(Path(sys.executable).parent / "napari-sam2")
    command = [script] if entry_point else [sys.executable, "-m", "napari_sam2"]
    command += ["segment", str(tmp_path / "s.npy"), "--prompts", str(tmp_path / "s.json"), *MODEL_ARGS,
                "-o", str(tmp_path / "out.zarr")]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **ONE_THREAD}
    seen = []
    # the delays only spread where the signal lands: interpreter start, imports, parsing; the last
    # run waits for an event instead (torch being imported under the guard), so one signal surely
    # reaches our code however loaded the machine is
    for delay in [0.01 * i for i in range(0, 30, 2)] + [0.4, None]:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                preexec_fn=_default_sigint)  # fmt: skip
        try:
            if delay is None:
                deadline = time.monotonic() + 120
                while proc.poll() is None and not _torch_is_loading(proc.pid) and time.monotonic() < deadline:
                    time.sleep(0.001)
            else:
                time.sleep(delay)
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        seen.append(proc.returncode)
        assert not (tmp_path / "out.zarr").exists() or proc.returncode == 0
        if proc.returncode == 0:  # finished before the signal: the next run starts afresh
            assert read_labels(tmp_path / "out.zarr").data.shape[0] == 2, err
            shutil.rmtree(tmp_path / "out.zarr")
        if proc.returncode == 0 and "Exception ignored" in err and "KeyboardInterrupt" in err:
            # Python itself drops a KeyboardInterrupt raised inside a weakref callback (importlib's
            # module locks have them): the command then ran to the end, its output whole (above)
            continue
        if "Traceback" in err:  # only where no code of ours can run yet
            assert delay is not None, err
            assert _from_before_our_code(err, script), (delay, proc.returncode, err)
            continue
        assert proc.returncode in (0, 130, -signal.SIGINT), (delay, proc.returncode, err)
        lines = err.strip().splitlines()
        assert len(lines) <= 1, (delay, err)
        if proc.returncode == 130:
            assert lines and lines[0].startswith("napari-sam2: interrupted"), (delay, err)
    assert seen[-1] == 130, seen  # the signal sent while torch was importing reached our guard


# --------------------------------------------------------------------------- propagation and prompts


@pytest.fixture(scope="module")
def small_model():
    return load_model(CHECKPOINT, config=CONFIG)


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return np.load(FIXTURES / "small_sam2.1" / "video.npz")["frames"][:6]


def test_a_new_object_during_a_suspended_propagation_invalidates_it(small_model, clip) -> None:
    with VideoSession(small_model, clip) as session:
        session.add_prompt(0, 1, points=[[40, 50]], labels=[1])
        run = session.propagate()
        assert next(run).frame == 0 and next(run).frame == 1
        added = session.add_prompt(3, 2, box=[60, 20, 120, 80])  # the prompt itself is taken
        assert added.obj_ids == [1, 2]
        with pytest.raises(InputError, match="prompts changed while this propagation was suspended"):
            next(run)
        with pytest.raises(StopIteration):  # the invalidated run is over
            next(run)
        results = list(session.propagate())  # a new run tracks both objects
        assert [r.frame for r in results] == list(range(6))
        assert all(r.obj_ids == [1, 2] for r in results)
        assert (results[5].label_image() == 2).any()
        np.testing.assert_array_equal(results[3].logits[1], added.logits[1])  # its prompted frame is kept


def test_a_correction_during_a_suspended_propagation_stays_pending(small_model, clip) -> None:
    with VideoSession(small_model, clip, corrections_as_conditioning=True) as session:
        session.add_prompt(0, 1, points=[[40, 50]], labels=[1])
        list(session.propagate())
        assert session.pending_corrections == []
        run = session.propagate()
        next(run)
        session.add_prompt(4, 1, points=[[40, 50], [45, 60]], labels=[1, 0])  # a correction ahead of the run
        assert session.pending_corrections == [4]
        with pytest.raises(InputError, match="prompts changed while this propagation was suspended"):
            next(run)
        # the run did not pass frame 4 with the old memory and mark the correction done
        assert session.pending_corrections == [4]
        assert session.correction_runs("forward") == [(4, False, 2)]
        results = list(session.propagate(start=4))
        assert session.pending_corrections == []
        assert [r.frame for r in results] == [4, 5]


def test_prompts_added_before_a_propagation_starts_or_after_it_closes_are_fine(small_model, clip) -> None:
    with VideoSession(small_model, clip) as session:
        session.add_prompt(0, 1, points=[[40, 50]], labels=[1])
        run = session.propagate()  # created, not started: it starts with the prompts of its first step
        session.add_prompt(0, 2, box=[60, 20, 120, 80])
        assert [r.obj_ids for r in run] == [[1, 2]] * 6
        run = session.propagate()
        next(run)
        run.close()  # closed: nothing to invalidate
        session.add_prompt(2, 3, points=[[100, 30]], labels=[1])
        assert [r.obj_ids for r in session.propagate(start=0)] == [[1, 2, 3]] * 6


# --------------------------------------------------------------------------- schedulers


@contextmanager
def _tcp_service(kind: str) -> Iterator[str]:
    """A loopback TCP service that is not a dask scheduler; yields its tcp:// address."""
    if kind == "http":
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"tcp://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(10)
        return
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            if kind == "closes":
                conn.close()
            elif kind == "web reply":  # what a web server answers to bytes it cannot parse
                conn.sendall(b"HTTP/1.0 400 Bad request\r\nContent-Type: text/html\r\n\r\n<html>bad</html>")
                held.append(conn)
            else:  # "silent": accept and never answer
                held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(10)
        for conn in held:
            conn.close()
        listener.close()


def _batch_at(tmp_path: Path, scheduler: str, *extra: str) -> subprocess.CompletedProcess:
    np.save(tmp_path / "s.npy", make_stack(2))
    (tmp_path / "s.json").write_text(PROMPTS_JSON)
    return run_cli("batch", str(tmp_path / "s.npy"), "--prompts-dir", str(tmp_path), *MODEL_ARGS,
                   "-o", str(tmp_path / "out"), "--scheduler", scheduler, *extra,
                   entry_point=True, timeout=120)  # fmt: skip


@pytest.mark.parametrize(
    "kind, needles",
    [
        # http.server waits for the end of a request line that dask's binary handshake may not have
        ("http", ["is not dask's protocol", "sent nothing within 2 s"]),
        ("web reply", ["is not dask's protocol"]),  # was: unexpected MemoryError: Unable to allocate 3.07 EiB
        ("silent", ["sent nothing within 2 s"]),  # was: waiting forever
        ("closes", ["closed the connection"]),
    ],
)
def test_a_tcp_service_that_is_not_a_dask_scheduler_is_named_in_one_line(
    kind: str, needles: list[str], tmp_path: Path
) -> None:
    pytest.importorskip("distributed")
    with _tcp_service(kind) as address:
        proc = _batch_at(tmp_path, address, "--connect-timeout", "2")
    line = assert_one_line_error(proc, address, "does not answer as a dask scheduler")
    assert any(needle in line for needle in needles), line
    assert "unexpected" not in line and "MemoryError" not in line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_real_scheduler_passes_and_a_worker_address_is_named(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    from napari_sam2.batch import SchedulerError, dask_client

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address="127.0.0.1:0",
                                  scheduler_kwargs={"dashboard": False}) as cluster:  # fmt: skip
        with dask_client(cluster.scheduler_address, timeout=10) as (client, threads):
            assert client.scheduler_info()["type"] == "Scheduler" and threads is None
            assert client.submit(sum, [1, 2, 3]).result(timeout=30) == 6
        worker = next(iter(cluster.scheduler.workers))
        with pytest.raises(SchedulerError, match="is a dask Worker, not a scheduler"):
            with dask_client(worker, timeout=10):
                pass


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "abc", "-inf"])
def test_a_bad_connect_timeout_is_a_usage_error(value: str, tmp_path: Path) -> None:
    proc = run_cli("batch", str(tmp_path / "s.npy"), "--prompts-dir", str(tmp_path), "-o", str(tmp_path / "out"),
                   "--scheduler", "tcp://127.0.0.1:9", f"--connect-timeout={value}", entry_point=True)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("napari-sam2 batch: error: argument --connect-timeout:"), errors
    assert "a positive number of seconds" in errors[0] and repr(value) in errors[0], errors
    assert not (tmp_path / "out").exists()


@contextmanager
def _occupy_8787() -> Iterator[None]:
    """Listen on 8787 (all interfaces, or loopback), as another cluster's dashboard would; if
    someone else already has it, it is taken either way."""
    held = []
    for host in ("0.0.0.0", "127.0.0.1"):
        s = socket.socket()
        try:
            s.bind((host, 8787))
            s.listen(1)
            held.append(s)
        except OSError as exc:
            s.close()
            if exc.errno != errno.EADDRINUSE:
                raise
    try:
        yield
    finally:
        for s in held:
            s.close()


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_a_local_batch_starts_no_dashboard_and_is_quiet_when_8787_is_taken(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    with _occupy_8787():
        assert _port_in_use(8787)
        proc = _batch_at(tmp_path, "local:1", "--torch-threads", "1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr  # no "Port 8787 is already in use", no dashboard link
    assert (tmp_path / "out" / "s.zarr").exists()


def test_the_local_clusters_http_server_is_loopback_only_with_no_dashboard() -> None:
    pytest.importorskip("distributed")
    from napari_sam2.batch import dask_client

    with dask_client("local:1") as (client, _):  # 8787 free or not: never there
        def where(dask_scheduler) -> tuple[list, bool]:  # noqa: ANN001 - dask passes the scheduler
            sockets = [s.getsockname()[:2] for s in dask_scheduler.http_server._sockets.values()]
            return sockets, "distributed.dashboard.scheduler" in sys.modules

        sockets, dashboard_module = client.run_on_scheduler(where)
        assert sockets and all(host == "127.0.0.1" and port != 8787 for host, port in sockets), sockets
        assert not dashboard_module
        port = sockets[0][1]
        with pytest.raises(urllib.error.HTTPError) as info:  # the dashboard's page is not served
            urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=10)
        assert info.value.code == 404


def test_a_local_cluster_that_cannot_start_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    """e.g. no worker process can start (out of memory, a process limit): one line, exit 2, nothing written."""
    import distributed

    from napari_sam2 import cli

    def refuse(*args, **kwargs):
        raise RuntimeError("Nanny failed to start.\nmore lines from dask")

    monkeypatch.setattr(distributed, "LocalCluster", refuse)
    np.save(tmp_path / "s.npy", make_stack(2))
    (tmp_path / "s.json").write_text(PROMPTS_JSON)
    code = cli.main(["batch", str(tmp_path / "s.npy"), "--prompts-dir", str(tmp_path), *MODEL_ARGS,
                     "-o", str(tmp_path / "out"), "--scheduler", "local:1"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [
        "napari-sam2: error: could not start a local dask cluster of 1 worker process (RuntimeError: Nanny failed to start.)"
    ], err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("signum, code, line", [
    (signal.SIGINT, 130, "napari-sam2: interrupted; no partial output was kept"),
    (signal.SIGTERM, 143, "napari-sam2: terminated; no partial output was kept"),
])  # fmt: skip
def test_a_signal_that_c_code_turns_into_another_error_is_still_the_signal(
    signum: int, code: int, line: str, monkeypatch, capsys
) -> None:
    """Seen in CI: Ctrl-C landing in CPython's warnings machinery came out as 'TypeError: expected
    a message argument', and the CLI reported an unexpected TypeError (exit 2) instead of 130."""
    from napari_sam2 import cli

    def command(args) -> int:
        try:
            os.kill(os.getpid(), signum)  # delivered here, as a KeyboardInterrupt / Terminated
            for _ in range(1000):  # let the handler run (it runs between bytecodes)
                pass
        except KeyboardInterrupt:
            raise TypeError("expected a message argument") from None  # what C code made of it
        return 0

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    try:
        monkeypatch.setitem(cli._COMMANDS, "models", command)
        assert cli.main(["models"]) == code
    finally:
        signal.signal(signal.SIGINT, previous)
    assert capsys.readouterr().err.strip() == line
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored

