"""Segment whole stacks headless: one stack in this process, or many on dask.distributed.

One code path writes labels: :func:`segment_steps` (a generator yielding progress) opens the
stack, reads its prompt files, adds every prompt to a :class:`~napari_sam2.VideoSession`,
propagates, and writes each frame's labels into an atomic
:class:`~napari_sam2.io.LabelWriter`. ``napari-sam2 segment`` drives it with a progress
bar; :func:`run_stack` is the same thing as a dask task, and :func:`run_batch` sends one
such task per stack to a ``LocalCluster`` or to an existing scheduler.

Each worker process loads the model once (:func:`cached_model`) and reuses it for every
stack it is given.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import (
    CheckpointError,
    InputError,
    OutputExistsError,
    SAM2Error,
    UnknownModelError,
    WeightsUnavailableError,
    one_line,
)
from .engine.runs import DIRECTIONS, check_direction, frames_visited, plan_runs
from .prompt import PromptSet
from .runtime import configure_torch, cpu_cores, default_threads

if TYPE_CHECKING:
    from .io.prompts import Prompt
    from .model.sam2 import SAM2

COMPUTE_DTYPES = ("float32", "bfloat16")
#: errors that are about the model, not the stack: every other stack would fail the same way
MODEL_ERRORS = (CheckpointError, WeightsUnavailableError, UnknownModelError)
BATCH_INSTALL_HINT = "pip install 'napari-sam2[batch]' (or: pip install distributed)"


class SchedulerError(SAM2Error):
    """The dask scheduler could not be reached or started, or dask.distributed is missing."""


# --------------------------------------------------------------------------- what to run


@dataclass(frozen=True)
class ModelSpec:
    """Which weights to load, as plain strings so the spec travels to dask workers.

    Attributes
    ----------
    source : str
        A checkpoint file (use an absolute path for workers) or an official model name.
    config : str or None
        A ``SAM2Config`` JSON file for checkpoints that are not an official variant.
    device : str
        ``cpu``, ``cuda``, ``mps`` or ``auto``.
    """

    source: str
    config: str | None = None
    device: str = "cpu"


@dataclass(frozen=True)
class SegmentJob:
    """One stack to segment: its input, prompt files, output and settings.

    Attributes
    ----------
    input : str
        TIFF, zarr / OME-Zarr or ``.npy`` (see :func:`napari_sam2.io.stacks.open_stack`).
    prompts : str
        napari Points (or Shapes) CSV, or napari-sam2 JSON.
    output : str
        The OME-Zarr labels to write (atomically).
    model : ModelSpec
        The weights.
    boxes : str or None
        Optional napari Shapes CSV whose rectangles are box prompts.
    axis : int
        The stack axis of the input.
    direction : str
        ``both`` (forward from the first prompted frame, then backward from it),
        ``forward`` (from the first prompted frame to the end) or ``backward`` (from the
        last prompted frame to frame 0). Frames not reached stay 0.
    compute_dtype : str
        ``float32`` or ``bfloat16`` for the memory attention.
    stack_kind : str or None
        ``"t"`` (time-lapse) or ``"z"`` (z-stack): tracks with the model's presence bias
        calibrated for that kind (``VideoSession``; only trained models such as
        napari-sam2-cells carry one). None takes the stack axis's OME-Zarr name if the input
        has one, else tracks uncalibrated.
    overwrite : bool
        Replace an existing output.
    torch_threads : int or None
        Threads torch may use in the process running the job (None: leave as it is).
    """

    input: str
    prompts: str
    output: str
    model: ModelSpec
    boxes: str | None = None
    axis: int = 0
    direction: str = "both"
    compute_dtype: str = "float32"
    stack_kind: str | None = None
    overwrite: bool = False
    torch_threads: int | None = None


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` frames of one stack written."""

    done: int
    total: int


@dataclass(frozen=True)
class StackResult:
    """What one stack gave: where it went, how big, how long, and which process did it."""

    input: str
    output: str
    frames: int  # frames in the stack
    frames_reached: int  # frames propagation reached; the others are 0 in the output
    objects: int
    seconds: float
    model: str
    pid: int = field(default_factory=os.getpid)
    model_loads: int = 0  # models this process had loaded when the stack finished


@dataclass(frozen=True)
class StackOutcome:
    """The result of one stack in a batch: done, skipped, or failed with a one-line reason."""

    input: str
    output: str
    status: str  # "done", "skipped" or "failed"
    result: StackResult | None = None
    error: str | None = None
    error_type: str | None = None  # the exception's class name
    model_error: bool = False  # the failure is the model's: the other stacks would fail too
    traceback: str | None = None


# --------------------------------------------------------------------------- the model, once per process

_MODELS: dict[tuple[str, str | None, str], Any] = {}
_MODELS_LOCK = threading.Lock()
_LOADS = 0


def cached_model(spec: ModelSpec) -> SAM2:
    """The model for ``spec``, loaded on first use in this process and then reused.

    A dask worker keeps its models here across tasks, so a batch loads the weights once per
    worker, not once per stack.
    """
    global _LOADS
    key = (spec.source, spec.config, spec.device)
    with _MODELS_LOCK:
        if key not in _MODELS:
            from .weights import load_model

            _MODELS[key] = load_model(spec.source, spec.device, config=spec.config)
            _LOADS += 1
        return _MODELS[key]


def model_loads() -> int:
    """How many models this process has loaded through :func:`cached_model`."""
    return _LOADS


# --------------------------------------------------------------------------- one stack


def read_job_prompts(job: SegmentJob, shape: tuple[int, ...], axis: int | None) -> list[Prompt]:
    """The job's prompts (and boxes), checked against the stack's napari-order ``shape``."""
    from .io.prompts import merge_prompts, read_prompts, read_shapes_csv

    prompts = read_prompts(job.prompts, axis=axis, shape=shape)
    if job.boxes is not None:
        prompts = merge_prompts(prompts, read_shapes_csv(job.boxes, axis=axis or 0, shape=shape))
    if not prompts:
        raise InputError(f"{job.prompts}: no prompts in the file")
    return prompts


def stack_kind(job: SegmentJob, stack: Any) -> str | None:
    """What the stack axis is (``"t"``, ``"z"``, or None: not known), most explicit first.

    ``--stack-kind`` (``job.stack_kind``), else the prompt file's ``stack_kind``, else the
    input's own axis name (OME-Zarr axes, ImageJ or OME-TIFF metadata). A prompt file that
    says otherwise than ``--stack-kind`` is an error: one of them is wrong.
    """
    from .io.prompts import read_stack_kind

    said = read_stack_kind(job.prompts)
    if job.stack_kind is not None and said is not None and said != job.stack_kind:
        raise InputError(
            f"{job.prompts} says the stack is a {_KIND_NAMES[said]} (stack_kind {said!r}) but --stack-kind is "
            f"{job.stack_kind!r}; drop one of them"
        )
    return job.stack_kind or said or stack.axis_name


_KIND_NAMES = {"t": "time-lapse", "z": "z-stack"}


def segment_steps(
    job: SegmentJob, model: SAM2 | None = None, *, configure: bool = False
) -> Generator[Progress, None, StackResult]:
    """Segment one stack, yielding :class:`Progress` after each frame written.

    The labels are written to ``job.output`` atomically: nothing appears there unless every
    frame was written, and an error or an early ``close()`` of the generator leaves no
    partial store. Returns (as the generator's value) a :class:`StackResult`.

    ``model`` defaults to :func:`cached_model` of ``job.model``. ``configure=True`` calls
    :func:`configure_torch` with ``job.torch_threads`` once the input and prompts have been
    read (so bad files fail before torch is even imported).
    """
    from .io.labels import LabelWriter, check_output_spares, check_replaceable, label_dtype, recover
    from .io.prompts import prompts_to_dict
    from .io.stacks import open_stack

    start_time = time.perf_counter()
    check_direction(job.direction)
    output = Path(job.output)
    # never an input of this run, and --overwrite only over labels we wrote: checked before any work
    check_output_spares(output, [job.input, job.prompts, job.boxes, *_job_files(job.model)])
    recover(output)
    check_replaceable(output, job.overwrite)
    with open_stack(job.input, axis=job.axis) as stack:
        is_stack = len(stack.shape) == 3
        prompts = read_job_prompts(job, stack.shape, stack.axis if is_stack else None)
        from .engine.editor import Editor
        from .engine.session import VideoSession

        if configure:
            configure_torch(job.torch_threads)
        if model is None:
            model = cached_model(job.model)
        obj_ids = sorted({p.obj_id for p in prompts})
        kind = stack_kind(job, stack) if is_stack else None  # VideoSession checks it
        label_axes = f"{kind}yx" if kind is not None else stack.label_axes
        metadata = {
            "model": model.config.name,
            "checkpoint": job.model.source,
            "input": str(job.input),
            "axis": stack.axis,
            "direction": job.direction,
            "stack_kind": kind,
            "prompts": prompts_to_dict(prompts, axis=stack.axis, stack_kind=kind),
        }
        n_frames = stack.label_shape[0] if is_stack else 1
        session = VideoSession(
            model, stack.frames, compute_dtype=job.compute_dtype, corrections_as_conditioning=True,
            stack_kind=kind,
        )  # fmt: skip
        metadata["presence_bias"] = session.presence_bias
        import torch

        metadata["torch_threads"] = torch.get_num_threads()  # boundary pixels can differ between counts
        # an error, Ctrl-C or close() inside aborts the writer: no partial store stays
        with session, LabelWriter(
            output, stack.label_shape, dtype=label_dtype(max(obj_ids)), axes=label_axes,
            scale=stack.label_scale, units=stack.label_units, metadata=metadata, overwrite=job.overwrite,
        ) as writer:  # fmt: skip
            editor = Editor(session)
            editor.apply(PromptSet.of(prompts))
            runs = plan_runs(editor.prompts.frames, n_frames, job.direction)
            total = frames_visited(runs)
            reached: set[int] = set()
            yield Progress(0, total)
            for done, result in enumerate(editor.propagate(runs), 1):
                writer.write_frame(result.frame, result.label_image(writer.dtype))
                reached.add(result.frame)
                yield Progress(done, total)
    return StackResult(
        input=str(job.input),
        output=str(output),
        frames=n_frames,
        frames_reached=len(reached),
        objects=len(obj_ids),
        seconds=time.perf_counter() - start_time,
        model=model.config.name,
        model_loads=model_loads(),
    )


def _job_files(spec: ModelSpec) -> list[str]:
    """The model's files of a job (a checkpoint path, a config), which no output may replace."""
    return [f for f in (spec.source, spec.config) if f is not None and os.path.exists(f)]


def segment_stack(job: SegmentJob, model: SAM2 | None = None, *, configure: bool = False) -> StackResult:
    """Run :func:`segment_steps` to the end and return its result."""
    steps = segment_steps(job, model, configure=configure)
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def run_stack(job: SegmentJob) -> StackOutcome:
    """The dask task: segment one stack and report how it went instead of raising.

    Errors that belong to the stack or the model (:class:`~napari_sam2.errors.SAM2Error`,
    a file that cannot be read) become a failed outcome with a one-line reason; anything
    else is a bug and raises, so the batch shows it.
    """
    try:
        result = segment_stack(job, configure=True)
    except (SAM2Error, OSError) as exc:
        import traceback

        return StackOutcome(
            job.input, job.output, "failed", error=str(exc) or type(exc).__name__, error_type=type(exc).__name__,
            model_error=isinstance(exc, MODEL_ERRORS), traceback=traceback.format_exc(),
        )  # fmt: skip
    return StackOutcome(job.input, job.output, "done", result=result)


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


def run_batch(client: Any, jobs: Sequence[SegmentJob]) -> Iterator[StackOutcome]:
    """Submit one :func:`run_stack` task per job and yield outcomes as stacks finish.

    A task that raises (a bug, or a worker that died) becomes a failed outcome. After an
    outcome with ``model_error`` the caller may stop iterating; closing the generator
    cancels the stacks not yet finished.
    """
    import uuid

    distributed = _import_distributed()
    # unique keys: dask would hand back an earlier run's result for a key it still holds
    run = uuid.uuid4().hex[:8]
    futures = {client.submit(run_stack, job, pure=False, key=f"napari-sam2-{run}-{i}-{Path(job.input).name}"): job
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
    prompts_dir: str | os.PathLike[str],
    outdir: str | os.PathLike[str],
    template: SegmentJob,
) -> tuple[list[SegmentJob], list[StackOutcome]]:
    """Jobs for ``inputs`` (``outdir/<stem>.zarr`` each), and the outcomes known up front.

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
            prompts, boxes = find_prompt_files(path, prompts_dir)
            check_output_spares(output, [prompts, boxes])
        except (InputError, OutputExistsError) as exc:
            known.append(StackOutcome(str(path), str(output), "failed", error=str(exc), error_type=type(exc).__name__))
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
