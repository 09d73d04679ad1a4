"""Run many independent tasks on Dask (or in this process), with retries, failures and progress.

The engine under :func:`fairpriv_lab.sweep.run_sweep` and
:func:`fairpriv_lab.sweep.run_notebooks`. Two kinds of failure are told apart:

* a *deterministic* failure (a :class:`~fairpriv_lab._core.exceptions.FairPrivError`, or whatever
  ``deterministic`` names) is caught inside the task and returned as a :class:`TaskFailure`:
  running it again would fail again, so it is never retried;
* anything else (a worker killed mid-task, an out-of-memory kill, a transient error) is left
  to Dask, which reschedules the task on another worker (up to
  ``distributed.scheduler.allowed-failures`` deaths) and retries raised errors ``retries`` times.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .._core.exceptions import ConfigError, FairPrivError

ProgressFn = Callable[["Progress"], None]


@dataclass(frozen=True)
class Progress:
    """Counts of a sweep at one moment; ``eta`` in seconds (None until something finished)."""

    total: int
    done: int
    failed: int
    running: int
    resumed: int
    elapsed: float
    eta: float | None

    @property
    def queued(self) -> int:
        """Tasks neither finished, failed nor running."""
        return self.total - self.done - self.failed - self.running

    def __str__(self) -> str:
        eta = "?" if self.eta is None else f"{self.eta:.0f}s"
        return (
            f"{self.done + self.failed}/{self.total} finished (done {self.done}, "
            f"failed {self.failed}, running {self.running}, resumed {self.resumed}), "
            f"elapsed {self.elapsed:.0f}s, ETA {eta}"
        )


@dataclass(frozen=True)
class TaskFailure:
    """A task that failed: exception type, message, formatted traceback and extra details."""

    error_type: str
    message: str
    traceback: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskOutcome:
    """What one task gave: its value or failure, wall seconds, and where it ran.

    ``gpu`` is the CUDA device name the task's process saw ("none" without one), ``worker``
    the Dask worker address (``local-PID`` when run in this process).
    """

    key: str
    value: Any
    failure: TaskFailure | None
    seconds: float
    host: str
    gpu: str
    worker: str

    @property
    def ok(self) -> bool:
        """True when the task finished without failure."""
        return self.failure is None


def call_task(
    fn: Callable[[Any], Any], item: Any, deterministic: tuple[type[BaseException], ...]
) -> TaskOutcome:
    """Run fn(item) on the worker, timing it; deterministic errors come back as TaskFailure."""
    worker = _worker_name()
    start = time.perf_counter()
    try:
        value = fn(item)
        failure = None
    except deterministic as err:
        value = None
        failure = TaskFailure(
            type(err).__name__, str(err), traceback.format_exc(), dict(getattr(err, "details", {}) or {})
        )
    seconds = time.perf_counter() - start
    return TaskOutcome("", value, failure, seconds, socket.gethostname(), _gpu_name(), worker)


def _gpu_name() -> str:
    """The CUDA device torch uses in this process, if torch is loaded (tasks that train load it)."""
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            return str(torch.cuda.get_device_name(torch.cuda.current_device()))
    except Exception:
        pass
    return "none"


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return f"local-{os.getpid()}"


def gpu_count() -> int:
    """Number of CUDA GPUs on this machine (0 quickly when there is no NVIDIA driver)."""
    if shutil.which("nvidia-smi") is None and not os.path.exists("/proc/driver/nvidia"):
        return 0
    try:
        from ..engine.device import cuda_device_count

        return cuda_device_count()
    except Exception:
        return 0


SecurityOption = Any  # "auto", True, False, None or a distributed.Security


def resolve_security(security: SecurityOption, *, local: bool) -> Any:
    """Return the distributed.Security (or None) a cluster or client uses.

    ``"auto"`` (the default): a local cluster gets fresh temporary TLS credentials
    (``Security.temporary()``: a self-signed CA, every connection mutually authenticated and
    encrypted, so another process on the machine cannot submit work), when the optional
    package ``cryptography`` is installed, and plain TCP on 127.0.0.1 otherwise; a remote
    scheduler uses Dask's own configuration (``distributed.comm.tls.*``, ``DASK_*``
    variables). ``True`` requires TLS (temporary credentials for a local cluster; an error
    without ``cryptography``); ``False``/``None`` plain TCP; a ``Security`` object is used
    as given (certificates of a remote cluster, docs/sweeps.md).
    """
    from distributed import Security

    if isinstance(security, Security):
        return security
    if security is False or security is None:
        return None
    if security not in ("auto", True):
        raise ConfigError(f"Expected security={security!r} to be 'auto', True, False or a "
                            "distributed.Security")
    if not local:
        if security is True:
            raise ConfigError("Expected security=True with a remote scheduler to be a "
                                "distributed.Security holding that cluster's certificates "
                                "(or pass --tls-ca-file/--tls-cert/--tls-key)")
        return None  # Dask's configuration decides
    try:
        import cryptography  # noqa: F401
    except ImportError:
        if security is True:
            raise ConfigError("Expected the optional package 'cryptography' for security=True "
                                "(pip install cryptography, or fairpriv-lab[sweep])") from None
        return None
    return Security.temporary()


def tls_security(ca_file: str | None, cert: str | None, key: str | None) -> Any:
    """A distributed.Security from certificate files (the ``--tls-*`` options), or None."""
    if not (ca_file or cert or key):
        return None
    missing = [n for n, v in (("--tls-ca-file", ca_file), ("--tls-cert", cert)) if not v]
    if missing:
        raise ConfigError(f"Expected {' and '.join(missing)} with the other --tls-* options")
    for name, path in (("--tls-ca-file", ca_file), ("--tls-cert", cert), ("--tls-key", key)):
        if path and not os.path.isfile(path):
            raise ConfigError(f"Expected {name}={path!r} to be an existing file")
    from distributed import Security

    return Security(tls_ca_file=ca_file, tls_client_cert=cert, tls_client_key=key,
                    require_encryption=True)


@contextmanager
def open_client(scheduler: Any, n_workers: int, *, dashboard: bool = False,
                security: SecurityOption = "auto") -> Iterator[Any]:
    """Yield a distributed Client: a given Client, a scheduler address, or a local cluster.

    The local cluster listens on 127.0.0.1 only, with TLS and temporary credentials by
    default (:func:`resolve_security`), runs one process per worker with one thread each,
    and, when this machine has GPUs, pins worker i to GPU i (``CUDA_VISIBLE_DEVICES``) and
    gives it the resource ``GPU=1`` so that one training at a time runs per GPU.
    """
    from distributed import Client

    if isinstance(scheduler, Client):
        yield scheduler
        return
    if scheduler is not None:
        with Client(scheduler, set_as_default=False,
                    security=resolve_security(security, local=False)) as client:
            yield client
        return
    sec = resolve_security(security, local=True)
    cluster = local_cluster(n_workers, dashboard=dashboard, security=sec)
    try:
        with Client(cluster, set_as_default=False, security=sec) as client:
            yield client
    finally:
        # A worker that imported torch can take longer to exit than the nanny waits (4 s);
        # the nanny then kills it, which is fine at shutdown: do not log it as a warning.
        nanny_log = logging.getLogger("distributed.nanny")
        level = nanny_log.level
        nanny_log.setLevel(logging.ERROR)
        try:
            cluster.close()
        finally:
            nanny_log.setLevel(level)


def local_cluster(n_workers: int, *, dashboard: bool = False, security: Any = None) -> Any:
    """Start a cluster on 127.0.0.1: a LocalCluster, or a SpecCluster with one worker per GPU.

    ``security``: a distributed.Security (then every connection uses TLS with it) or None
    (plain TCP on loopback).
    """
    from distributed import LocalCluster, Nanny, Scheduler, SpecCluster

    dash = "127.0.0.1:0"  # a free port on loopback only, and only when asked for
    n_gpus = gpu_count()
    tls = {"security": security, "protocol": "tls://"} if security is not None else {}
    # Dask's nanny sets OMP_NUM_THREADS=1 in workers; give each worker its share of the cores
    # instead, so that torch's CPU kernels use the machine without oversubscribing it.
    threads = str(max(1, (os.cpu_count() or 1) // max(n_workers, 1)))
    env = {name: threads for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    if n_gpus == 0:
        return LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=dash,
            scheduler_kwargs={"dashboard": dashboard},
            env=env,
            **tls,
        )
    workers = {}
    for i in range(max(n_workers, 1)):
        gpu = i < n_gpus
        workers[f"{'gpu' if gpu else 'cpu'}-{i}"] = {
            "cls": Nanny,
            "options": {
                "nthreads": 1,
                "host": "127.0.0.1",
                "env": {**env, "CUDA_VISIBLE_DEVICES": str(i) if gpu else ""},
                "resources": {"GPU": 1} if gpu else {},
                **({"security": security} if security is not None else {}),
            },
        }
    sched = {"cls": Scheduler, "options": {"host": "127.0.0.1", "dashboard_address": dash,
                                                 "dashboard": dashboard, **tls}}
    return SpecCluster(scheduler=sched, workers=workers,
                       **({"security": security} if security is not None else {}))


def cluster_has_gpus(client: Any) -> bool:
    """True when some worker of the cluster advertises the resource GPU."""
    info = client.scheduler_info(n_workers=-1) if _takes_n_workers(client) else client.scheduler_info()
    return any(w.get("resources", {}).get("GPU", 0) > 0 for w in info.get("workers", {}).values())


def _takes_n_workers(client: Any) -> bool:
    import inspect

    return "n_workers" in inspect.signature(client.scheduler_info).parameters


def run_tasks(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    keys: Sequence[str],
    *,
    client: Any | None,
    retries: int,
    resources: Sequence[Mapping[str, float] | None] | None = None,
    on_result: Callable[[int, TaskOutcome], None],
    progress: ProgressFn | None,
    resumed: int = 0,
    deterministic: tuple[type[BaseException], ...] = (FairPrivError,),
    poll: float = 0.25,
) -> None:
    """Run fn on every item; call on_result(index, outcome) as each finishes (any order).

    With ``client=None`` the items run one after another in this process. Errors that are not
    deterministic are retried by Dask ``retries`` times; a task that still fails (or whose
    workers keep dying) is reported through on_result with its exception as the failure.
    """
    total = len(items) + resumed
    counts = {"done": 0, "failed": 0}
    start = time.perf_counter()

    def report(running: int) -> None:
        if progress is None:
            return
        finished = counts["done"] + counts["failed"]
        elapsed = time.perf_counter() - start
        left = len(items) - finished
        # Throughput so far (all workers together) times what is left.
        eta = None if finished == 0 else elapsed / finished * left
        progress(
            Progress(total, counts["done"] + resumed, counts["failed"], running, resumed, elapsed, eta)
        )

    def finish(i: int, outcome: TaskOutcome) -> None:
        counts["done" if outcome.ok else "failed"] += 1
        on_result(i, outcome)

    report(0)
    if client is None:
        for i, (item, key) in enumerate(zip(items, keys)):
            report(1)
            try:
                outcome = call_task(fn, item, deterministic)
            except Exception as err:  # what Dask would retry: report it the same way
                outcome = _failed_outcome(err)
            finish(i, _with_key(outcome, key))
        report(0)
        return

    futures = []
    for i, (item, key) in enumerate(zip(items, keys)):
        res = resources[i] if resources is not None else None
        fut = client.submit(
            call_task, fn, item, deterministic, key=key, retries=retries, resources=res, pure=False
        )
        futures.append(fut)
    pending = dict(enumerate(futures))
    try:
        while pending:
            for i in [i for i, fut in pending.items() if fut.done()]:
                fut = pending.pop(i)
                try:
                    outcome = fut.result()
                except Exception as err:  # retries exhausted, KilledWorker, cancelled
                    outcome = _failed_outcome(err)
                finish(i, _with_key(outcome, keys[i]))
            report(_running(client, {f.key for f in pending.values()}))
            if pending:
                time.sleep(poll)
    finally:
        for fut in futures:
            if not fut.done():
                fut.cancel()


def _running(client: Any, pending: set[str]) -> int:
    """Tasks of ours executing now: processing on a worker, at most its number of threads."""
    try:
        processing = client.processing()
        nthreads = client.nthreads()
    except Exception:
        return 0
    return sum(
        min(sum(1 for k in keys if k in pending), nthreads.get(w, 1)) for w, keys in processing.items()
    )


def _failed_outcome(err: BaseException) -> TaskOutcome:
    tb = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    failure = TaskFailure(type(err).__name__, str(err), tb)
    return TaskOutcome("", None, failure, float("nan"), "", "", "")


def _with_key(outcome: TaskOutcome, key: str) -> TaskOutcome:
    return dataclasses.replace(outcome, key=key)
