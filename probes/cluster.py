"""`--ray [ADDRESS]`: the parallel stages of `probes train` and `probes eval` as Ray tasks on a cluster.

Every stage that runs here is a list of pure tasks (a SynTheory clip from its MIDI, a batch of activations from its
clips, one layer's probes from its activations, an evaluation clip from its recipe and seed), so `Cluster.map` runs
any of them the same way: tasks spread over the cluster's workers, one progress bar on the driver (tasks done of all,
the slowest worker named), a failed task (an exception, or a worker that died under it) retried a bounded number of
times and then reported with what it was. Results come back to the driver, which writes them into the same
content-addressed caches as a local run: no shared folder is needed, a finished clip is never rendered twice, and an
interrupted run resumes from the caches.

Byte-identical to a local run: a worker runs exactly the local computation (the same batches of clips, one layer's
slice of the batched probe fit, the same generation) on the same kind of device, with the driver's torch thread count
(float sums may depend on it) and its model loaded as the driver loaded it (same name, device type and precision).

Ray is imported only here, and only when a Cluster is made: without `--ray` nothing changes and Ray need not be
installed (requirements-cluster.txt).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import socket
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from tqdm import tqdm

from studio.errors import InputError, StudioError

ROOT = Path(__file__).resolve().parents[1]
RETRIES = 2  # a task runs at most 1 + RETRIES times before the run stops and names it
INSTALL_HINT = "install it with: .venv/bin/pip install -r requirements-cluster.txt"


class ClusterError(StudioError):
    """The cluster cannot be reached, or a task kept failing."""


@dataclass(frozen=True)
class ModelSpec:
    """How a worker loads the driver's model: the name it was loaded by, its device type and precision."""

    name: str
    device: str
    precision: str

    @classmethod
    def of(cls, loaded) -> "ModelSpec":
        return cls(loaded.source, loaded.device.type, loaded.precision)


_worker_models: dict[ModelSpec, Any] = {}  # in a worker process: each model loaded once, kept for its later tasks


def _worker_model(spec: ModelSpec):
    if spec not in _worker_models:
        from studio.model import load_model

        _worker_models[spec] = load_model(spec.name, device=spec.device, precision=spec.precision)
    return _worker_models[spec]


def _run_task(fn: Callable, item: Any, model: ModelSpec | None, shared: Any, threads: int) -> tuple[Any, str, float]:
    """In a worker: fn(item) (or fn(model, item[, shared])) with the driver's thread count; returns the result, which
    worker ran it and how long it took."""
    import ray

    torch.set_num_threads(threads)
    start = time.perf_counter()
    args = ([] if model is None else [_worker_model(model)]) + [item] + ([] if shared is None else [shared])
    result = fn(*args)
    worker = f"{ray.util.get_node_ip_address()} pid {os.getpid()}"
    return result, worker, time.perf_counter() - start


class Cluster:
    """A connection to a Ray cluster (or a local Ray instance) that runs lists of tasks; use it as a context manager.

    address: None joins the cluster RAY_ADDRESS names or the one `ray start` runs on this machine, else starts a Ray
    here for the run; "auto" joins only the one `ray start` runs on this machine; "ray://HOST:10001" or "HOST:6379" a
    remote one. Workers import this checkout's code, so every node needs it at the same path (README: "Training and
    evaluating on a Ray cluster").
    """

    def __init__(self, address: str | None = None, retries: int = RETRIES, progress: bool = True):
        try:
            import ray
        except ImportError:
            raise InputError(f"--ray needs Ray, which is not installed; {INSTALL_HINT}") from None
        self.retries, self.progress, self.threads = retries, progress, torch.get_num_threads()
        if address:
            _check_reachable(address)
        self._started = not ray.is_initialized()
        if self._started:
            path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
            try:
                ray.init(
                    address=address,
                    runtime_env={"env_vars": {"PYTHONPATH": path}},
                    include_dashboard=False,
                    logging_level=logging.WARNING,
                )
            except (ConnectionError, RuntimeError, ValueError) as err:
                where = f"at {address}" if address else "on this machine"
                hint = (
                    "; a cluster with token authentication (ray start's default) needs RAY_AUTH_MODE=token and its "
                    "token here (README: Training and evaluating on a Ray cluster)"
                    if address and address != "auto"
                    else ""
                )
                raise ClusterError(f"cannot start or reach a Ray cluster {where}: {_first_line(err)}{hint}") from None
        self.gpus = int(ray.cluster_resources().get("GPU", 0))
        self.total_cpus = int(ray.cluster_resources().get("CPU", 1))
        self.node_cpus = max(1, max(int(node["Resources"].get("CPU", 0)) for node in ray.nodes() if node["Alive"]))

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc) -> None:
        if self._started:
            import ray

            ray.shutdown()

    def map(
        self,
        fn: Callable,
        items: Sequence,
        *,
        desc: str,
        describe: Callable[[Any], str] = repr,
        payload: Callable[[Any], Any] | None = None,
        model: ModelSpec | None = None,
        shared: Any = None,
        cpus: int | None = None,
        gpu: bool = False,
        on_result: Callable[[int, Any], None] | None = None,
    ) -> list:
        """[fn(payload(item)) for item in items], each call a Ray task; results in the items' order.

        `payload` (default: the item itself) makes a task's argument on the driver just before the task is sent, so a
        long list of light items never holds every task's data at once: at most twice as many tasks as the cluster
        runs at a time are in flight. `model`: the worker's copy of that model is passed first (on a GPU when the
        model is on one and the cluster has GPUs). `shared`: one object every task gets last, sent to the cluster once.
        `cpus`: a task's CPUs when it does no torch work (fluidsynth); torch tasks use the driver's thread count.
        `gpu`: a task takes a GPU (when the cluster has any) without a model, as the driver's probe fits would.
        `on_result(i, result)` is called on the driver as each task finishes (in finishing order). A task that fails
        is resubmitted up to `retries` times; then the run stops with a ClusterError naming `describe(item)`.
        """
        import ray

        gpu = (gpu or (model is not None and model.device == "cuda")) and self.gpus > 0
        slots = min(cpus or self.threads, self.node_cpus)  # a task asking for more CPUs than a node has never runs
        task = ray.remote(_run_task).options(num_cpus=slots, num_gpus=1 if gpu else 0, max_retries=0)
        window = 2 * max(1, self.gpus if gpu else self.total_cpus // slots)
        shared_ref = None if shared is None else ray.put(shared)
        pending: dict = {}
        waiting = list(range(len(items)))[::-1]  # popped from the end: first items first

        def submit(index: int, attempt: int) -> None:
            argument = items[index] if payload is None else payload(items[index])
            pending[task.remote(fn, argument, model, shared_ref, self.threads)] = (index, attempt)

        results: list = [None] * len(items)
        seconds: dict[str, list[float]] = defaultdict(list)
        with tqdm(total=len(items), desc=desc, unit="task", disable=not self.progress) as bar:
            try:
                while waiting or pending:
                    while waiting and len(pending) < window:
                        submit(waiting.pop(), 1)
                    [ref], _ = ray.wait(list(pending), num_returns=1)
                    index, attempt = pending.pop(ref)
                    try:
                        result, worker, took = ray.get(ref)
                    except ray.exceptions.RayError as err:
                        what = describe(items[index])
                        if isinstance(getattr(err, "cause", None), StudioError):  # bad input: a retry fails the same
                            raise ClusterError(f"{desc}: {what}: {err.cause}") from None
                        if attempt > self.retries:
                            raise ClusterError(
                                f"{desc}: {what} failed {attempt} times; last error: {_first_line(err)}"
                            ) from None
                        bar.write(
                            f"{desc}: {what} failed ({_first_line(err)}); retrying, attempt {attempt + 1} of "
                            f"{self.retries + 1}",
                            file=sys.stderr,
                        )
                        submit(index, attempt + 1)
                        continue
                    results[index] = result
                    seconds[worker].append(took)
                    if on_result is not None:
                        on_result(index, result)
                    bar.set_postfix_str(_slowest(seconds), refresh=False)
                    bar.update(1)
            except BaseException:
                for ref in pending:
                    ray.cancel(ref, force=True)
                raise
        return results


def add_ray_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="run the work as Ray tasks: alone, on the cluster RAY_ADDRESS names or `ray start` runs here, else on a "
        "Ray started for the run; with an address ('auto', HOST:6379, ray://HOST:10001), on that cluster. Same "
        "results as without it",
    )


def connect(address: str | None, progress: bool = True) -> contextlib.AbstractContextManager:
    """The Cluster a `--ray` value asks for (None: no Ray, an empty context)."""
    return contextlib.nullcontext() if address is None else Cluster(address or None, progress=progress)


def without_ray(argv: Sequence[str], address: str | None) -> list[str]:
    """The command line without `--ray [ADDRESS]`: what a bank records to be made again (Ray changes no result)."""
    out, skip = [], False
    for token in argv:
        if skip:
            skip = False
            if token == address:
                continue
        if token == "--ray":
            skip = bool(address)
            continue
        if token.startswith("--ray="):
            continue
        out.append(token)
    return out


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on a HOST:PORT (or ray://HOST:PORT) nobody answers at: Ray itself keeps retrying for many minutes."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto", or a form Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as err:
        raise ClusterError(
            f"no Ray cluster answers at {address} ({err}); is `ray start --head` running there?"
        ) from None


def _slowest(seconds: dict[str, list[float]]) -> str:
    """'slowest: <worker> 1.2 s/task' once two workers have finished tasks."""
    if len(seconds) < 2:
        return ""
    worker, times = max(seconds.items(), key=lambda kv: sum(kv[1]) / len(kv[1]))
    return f"slowest: {worker} {sum(times) / len(times):.1f} s/task"


def _first_line(err: BaseException) -> str:
    """The informative line of an error: a Ray task error's own message, not Ray's traceback header."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {str(cause).strip().splitlines()[0] if str(cause).strip() else ''}".rstrip(
            ": "
        )
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__
