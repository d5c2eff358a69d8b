"""Segment many stacks on dask.distributed: a ``LocalCluster`` or an existing scheduler.

Each stack is one :func:`napari_sam2.pipeline.run_stack` task (the dask-free one-stack
pipeline, which never raises); :func:`run_batch` submits them and yields outcomes as stacks
finish; :func:`plan_jobs` finds each stack's prompt file and output; :func:`dask_client`
starts or reaches the scheduler, and :func:`check_scheduler` tells a dask scheduler from
another service before dask's own client hangs on it. Each worker process loads the model
once (``pipeline.cached_model``) and reuses it for every stack it is given.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import InputError, OutputExistsError, SAM2Error, one_line
from .pipeline import SegmentJob, StackOutcome, run_stack
from .runtime import cpu_cores, default_threads

BATCH_INSTALL_HINT = "pip install 'napari-sam2[batch]' (or: pip install distributed)"


class SchedulerError(SAM2Error):
    """The dask scheduler could not be reached or started, or dask.distributed is missing."""


# --------------------------------------------------------------------------- many stacks


def find_prompt_files(
    input_path: str | os.PathLike[str], prompts_dir: str | os.PathLike[str]
) -> tuple[Path, Path | None]:
    """The prompts of ``X.tif`` in ``prompts_dir``: ``X.csv`` or ``X.json``, and ``X.boxes.csv`` if present."""
    from .io.stacks import stack_stem

    stem = stack_stem(input_path)
    folder = Path(prompts_dir)
    found = [folder / f"{stem}{suffix}" for suffix in (".csv", ".json") if (folder / f"{stem}{suffix}").is_file()]
    if not found:
        raise InputError(f"no prompts for {input_path}: expected {folder / (stem + '.csv')} or {stem}.json there")
    if len(found) > 1:
        raise InputError(f"two prompt files for {input_path}: {found[0]} and {found[1]}; keep one")
    boxes = folder / f"{stem}.boxes.csv"
    return found[0], boxes if boxes.is_file() else None


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise SchedulerError(f"napari-sam2 batch needs dask.distributed: {BATCH_INSTALL_HINT}") from None
    return distributed


def parse_scheduler(scheduler: str) -> tuple[str, int | None]:
    """``"local:N"`` -> ``("local", N)``; ``"local"`` -> ``("local", None)``; an address -> ``(address, None)``."""
    if scheduler == "local":
        return "local", None
    if scheduler.startswith("local:"):
        n = scheduler.removeprefix("local:")
        if not n.isdigit() or int(n) < 1:
            raise InputError(f"--scheduler {scheduler!r}: expected local:N with N >= 1 worker processes")
        return "local", int(n)
    if "://" in scheduler:
        return scheduler, None
    raise InputError(f"--scheduler {scheduler!r}: expected local:N or a scheduler address such as tcp://HOST:8786")


def _closed_on_us(exc: BaseException) -> bool:
    """Whether a failed connect was a peer that accepted and then closed or reset the connection."""
    cause = exc.__cause__ if exc.__cause__ is not None else exc.__context__
    closed = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)
    if isinstance(cause, closed):
        return True
    # tornado's StreamClosedError carries the socket error behind it, if any (refused, unreachable)
    return type(cause).__name__ == "StreamClosedError" and not isinstance(getattr(cause, "real_error", None), OSError)


def check_scheduler(address: str, timeout: float = 10.0) -> None:
    """Raise :class:`SchedulerError` unless ``address`` answers as a dask scheduler.

    ``distributed.Client`` alone waits without end for a service that accepts the
    connection and never answers, and reads a web server's reply as the length of a frame
    of exabytes (``MemoryError``). Here each step is bounded by ``timeout`` seconds:
    reaching the address (retried as dask does, for a scheduler still starting), dask's
    handshake, and asking who answers (a scheduler, not a worker or a nanny).
    """
    import asyncio
    import threading

    distributed = _import_distributed()
    from distributed.comm import parse_address
    from distributed.comm.registry import get_backend

    async def ask() -> str | None:
        scheme, loc = parse_address(address)
        connector = get_backend(scheme).get_connector()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        not_dask = f"{address} does not answer as a dask scheduler"
        while True:  # 1. reach it
            try:
                comm = await asyncio.wait_for(connector.connect(loc, deserialize=True), deadline - loop.time())
                break
            except (OSError, asyncio.TimeoutError) as exc:
                if _closed_on_us(exc):  # accepted, then closed while connecting (seen on a busy machine);
                    return f"{not_dask}: it closed the connection"  # a scheduler still starting refuses
                if loop.time() + 0.1 >= deadline:
                    reason = one_line(exc) if isinstance(exc, OSError) else f"no connection within {timeout:g} s"
                    return f"cannot reach the dask scheduler at {address} ({reason})"
                await asyncio.sleep(0.1)
        try:
            try:  # 2. dask's handshake
                await comm.write(comm.handshake_info())
                await asyncio.wait_for(comm.read(), timeout)
            except asyncio.TimeoutError:
                return f"{not_dask}: it accepted the connection but sent nothing within {timeout:g} s"
            except distributed.comm.CommClosedError:
                return f"{not_dask}: it closed the connection"
            except Exception:  # noqa: BLE001 - e.g. MemoryError: an HTTP reply read as a frame length
                return f"{not_dask}: what it sent is not dask's protocol (a web server, such as a dashboard?)"
            try:  # 3. who is it
                await comm.write({"op": "identity", "reply": True})
                who = await asyncio.wait_for(comm.read(), timeout)
            except asyncio.TimeoutError:
                return f"{not_dask}: it did not say what it is within {timeout:g} s"
            except Exception as exc:  # noqa: BLE001
                return f"{not_dask}: asked what it is, it answered {type(exc).__name__}"
            kind = who.get("type") if isinstance(who, dict) else None
            if kind != "Scheduler":
                return f"{address} is a dask {kind or 'service'}, not a scheduler; give the scheduler's address"
            return None
        finally:
            comm.abort()

    outcome: list[Any] = []

    def run() -> None:  # its own thread and event loop: the caller may be inside one
        try:
            outcome.append(asyncio.run(ask()))
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the caller
            outcome.append(exc)

    thread = threading.Thread(target=run, name="napari-sam2 scheduler check", daemon=True)
    thread.start()
    thread.join()
    result = outcome[0] if outcome else None
    if isinstance(result, BaseException):
        if isinstance(result, (KeyboardInterrupt, SAM2Error)):
            raise result
        if isinstance(result, distributed.comm.CommClosedError | ConnectionResetError) and not isinstance(
            result.__cause__, ConnectionRefusedError
        ):  # it was reached (step 1 is behind us or it accepted), then it hung up
            raise SchedulerError(f"{address} does not answer as a dask scheduler: it closed the connection")
        raise SchedulerError(f"cannot reach the dask scheduler at {address} ({one_line(result)})")
    if result is not None:
        raise SchedulerError(result)


@contextmanager
def dask_client(scheduler: str, *, timeout: float = 10.0, n_stacks: int = 1) -> Iterator[tuple[Any, int | None]]:
    """A dask ``Client`` for ``scheduler``, and the torch threads each worker should use.

    ``local:N`` starts a ``LocalCluster`` of N single-threaded worker processes, each given
    ``(cores - 1) // N`` torch threads, at least 1 (:func:`default_threads`; ``local`` alone:
    one worker per two cores, at most one per stack). An address connects to an existing scheduler within ``timeout`` seconds; its
    workers keep their own thread settings (dask sets ``OMP_NUM_THREADS=1`` in them).
    """
    distributed = _import_distributed()
    kind, n_workers = parse_scheduler(scheduler)
    cluster = None
    threads: int | None = None
    try:
        if kind == "local":
            cores = cpu_cores()
            if n_workers is None:
                n_workers = max(1, min(n_stacks, cores // 2))
            threads = default_threads(n_workers)  # all cores but one, shared by the workers
            # dashboard_address=None still starts the scheduler's HTTP server on 8787 (or, with
            # that port taken, warns on stderr and takes another): bind it to a free loopback
            # port instead, and serve no dashboard there (only dask's /health and metrics)
            try:
                cluster = distributed.LocalCluster(
                    n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0",
                    scheduler_kwargs={"dashboard": False}, silence_logs=logging.ERROR, memory_limit=0,
                )  # fmt: skip
                client = distributed.Client(cluster, timeout=timeout)
            except Exception as exc:  # no free port, workers that cannot start (memory, processes), ...
                raise SchedulerError(
                    f"could not start a local dask cluster of {n_workers} worker process"
                    f"{'es' * (n_workers != 1)} ({one_line(exc)})"
                ) from None
        else:
            check_scheduler(kind, timeout)
            try:
                client = distributed.Client(kind, timeout=timeout)
            except Exception as exc:  # it answered the probe: still one line, whatever it does now
                raise SchedulerError(f"cannot reach the dask scheduler at {kind} ({one_line(exc)})") from None
    except BaseException:
        if cluster is not None:
            cluster.close()
        raise
    try:
        yield client, threads
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_batch(client: Any, jobs: Sequence[Any], task: Any = run_stack) -> Iterator[StackOutcome]:
    """Submit one ``task`` per job (:func:`run_stack` for a :class:`SegmentJob`, or
    :func:`napari_sam2.auto_pipeline.run_auto_stack` for an ``AutoJob``) and yield outcomes
    as stacks finish.

    A task that raises (a bug, or a worker that died) becomes a failed outcome. After an
    outcome with ``model_error`` the caller may stop iterating; closing the generator
    cancels the stacks not yet finished.
    """
    import uuid

    distributed = _import_distributed()
    # unique keys: dask would hand back an earlier run's result for a key it still holds
    run = uuid.uuid4().hex[:8]
    futures = {client.submit(task, job, pure=False, key=f"napari-sam2-{run}-{i}-{Path(job.input).name}"): job
               for i, job in enumerate(jobs)}  # fmt: skip
    try:
        for future in distributed.as_completed(futures):
            job = futures[future]
            try:
                yield future.result()
            except Exception as exc:  # the task raised, or its worker died
                import traceback

                text = str(exc).strip().splitlines()
                error = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
                yield StackOutcome(job.input, job.output, "failed", error=error, error_type=type(exc).__name__,
                                   traceback="".join(traceback.format_exception(exc)))  # fmt: skip
    finally:
        client.cancel([f for f in futures if not f.done()])


def plan_jobs(
    inputs: Iterable[str | os.PathLike[str]],
    prompts_dir: str | os.PathLike[str] | None,
    outdir: str | os.PathLike[str],
    template: Any,
) -> tuple[list[Any], list[StackOutcome]]:
    """Jobs for ``inputs`` (``outdir/<stem>.zarr`` each), and the outcomes known up front.

    ``template`` is a :class:`SegmentJob` with ``prompts_dir`` its prompt files' folder, or
    an ``AutoJob`` (segment everything) with ``prompts_dir`` None.

    Known up front: ``skipped`` (the output is a label store of ours and
    ``template.overwrite`` is off: a finished earlier run) and ``failed`` (missing input, no
    prompt file, an output that would replace an input, or something else at the output).
    What a killed earlier run left at an output is recovered first (:func:`~napari_sam2.io.labels.recover`).
    """
    from dataclasses import replace

    from .io.labels import check_output_spares, check_replaceable, is_label_store, recover
    from .io.stacks import stack_stem

    jobs: list[SegmentJob] = []
    known: list[StackOutcome] = []
    stems: dict[str, str] = {}
    for item in inputs:
        path = Path(item).absolute()
        stem = stack_stem(path)
        if stem in stems:
            raise InputError(f"{stems[stem]} and {path} would both write {stem}.zarr; rename one of them")
        stems[stem] = str(path)
        output = Path(outdir).absolute() / f"{stem}.zarr"
        try:
            check_output_spares(output, [path])
            recover(output)
            if not template.overwrite and is_label_store(output):
                known.append(StackOutcome(str(path), str(output), "skipped"))
                continue
            check_replaceable(output, template.overwrite)
            if not path.exists():
                raise InputError(f"input {str(path)!r} does not exist")
            if prompts_dir is not None:
                prompts, boxes = find_prompt_files(path, prompts_dir)
                check_output_spares(output, [prompts, boxes])
        except (InputError, OutputExistsError) as exc:
            known.append(StackOutcome(str(path), str(output), "failed", error=str(exc), error_type=type(exc).__name__))
            continue
        if prompts_dir is None:
            jobs.append(replace(template, input=str(path), output=str(output)))
            continue
        boxes_file = None if boxes is None else str(boxes)
        jobs.append(replace(template, input=str(path), prompts=str(prompts), boxes=boxes_file, output=str(output)))
    return jobs, known


def remove_partials(jobs: Iterable[SegmentJob]) -> None:
    """Delete temporary ``<output>.partial-*`` stores the jobs left (after an interrupted local batch).

    Only those of writers that no longer run (the stopped workers'): another run writing the
    same output keeps its store.
    """
    from .io.labels import recover

    for job in jobs:
        recover(job.output)
