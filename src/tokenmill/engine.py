"""Where a job's tasks run: in this process (``local``) or on a Ray cluster (``ray``).

The contract is one call, ``engine.map(fn, items, label)``: run ``fn(item)`` for every item and
return the results in the order of the items. A job is a few such maps (the input shards, then
the partitions of what they made) and a last step in the driver, so it runs unchanged on either
engine. What a task must do to run on a cluster:

* ``fn`` is a module-level function (Ray sends it by reference) and reads its input itself, from
  paths every node can see: the driver never holds the corpus;
* what it makes goes to files in the job's work folder (on storage every node shares), and it
  returns only small things: paths, counts;
* it may run more than once: Ray runs a task again when its worker dies. So it writes under a
  fresh temporary name, and what it writes depends on its item only (randomness comes from
  counter-based hashes of the seed and the record's position, never from a draw that a retry
  would repeat differently). A killed attempt leaves at most a file nobody refers to, removed
  with the work folder.
* ``engine.map(..., done=)`` calls ``done(k, result)`` in the driver as each task ends. A task
  whose result has arrived is not run again, so that is where the files only it read can be
  removed: their space (and their page cache, which the next tasks' writes then reuse) is
  freed as the job goes rather than at its end. It may also ``engine.submit(fn, item)`` work
  that this result makes ready, which then runs while the map goes on; ``engine.results``
  collects it afterwards (locally, ``submit`` runs it there and then).

The local engine runs the items one after the other in this process (each task uses all the
threads the job was given). Ray runs one task per CPU of the cluster, one thread each, or, for
a map called with ``cpus=engine.node_threads``, tasks of that many CPUs and threads
(``node_threads``: the CPUs of the smallest node, so that such a task fits any node): a
counting task that fills a node with threads sharing one table writes each n-gram it found
once, where one-CPU tasks would each write their own; an encoding task reads its part while
its other threads encode, as a local run does.
"""
from __future__ import annotations

import os

from .errors import TokenmillError
from .spec import ENGINES
RAY_MISSING = '--engine ray needs Ray, an optional extra: pip install "tokenmill[ray]"'


class LocalEngine:
    """Runs every task in this process, in order. ``tasks`` is how many a job plans for at a
    time (how finely it cuts its input and partitions); the output never depends on it."""

    name = "local"

    def __init__(self, workers: int = 0, tasks: int = 1):
        self.node_threads = workers or os.cpu_count() or 1
        self.parallel_tasks = self.node_tasks = max(1, tasks)

    def map(self, fn, items, label: str = "tasks", progress: bool = False, sizes=None, cpus: int = 1,
            done=None) -> list:
        """``[fn(item) for item in items]``; ``sizes``: bytes of input per item (progress);
        ``cpus`` is for Ray (here every task has the job's threads); ``done(k, result)`` is
        called as each task ends."""
        from .progress import Progress

        global _REPORT
        items = list(items)
        sizes = sizes or [0] * len(items)
        with Progress(label, total_bytes=sum(sizes) or None, total_items=len(items), item_name="tasks",
                      enabled=None if progress else False) as bar:
            out = []
            for item, size in zip(items, sizes):
                shown = _Shown(size)
                _REPORT = lambda n: bar.update(shown.add(n), 0)
                try:
                    out.append(fn(item))
                finally:
                    _REPORT = None
                if done is not None:
                    done(len(out) - 1, out[-1])
                bar.update(shown.rest(), 1)
        return out

    def submit(self, fn, item, cpus: int = 1):
        """``fn(item)``, run now (see :meth:`RayEngine.submit`): the handle is its result."""
        return fn(item)

    def results(self, handles, label: str = "tasks", progress: bool = False) -> list:
        return list(handles)

    def finish_maps(self) -> None:
        pass

    def close(self, report: bool = False) -> None:
        pass


class RayEngine:
    """Runs every task as a Ray task (one CPU each; retried up to ``retries`` times when its
    worker dies). Connects to ``address`` (``auto``: the cluster this machine belongs to;
    ``ray://host:10001``: a remote one) or, without one, to ``RAY_ADDRESS`` or a fresh local
    Ray instance, which is shut down by :meth:`close`."""

    name = "ray"

    def __init__(self, address: str | None = None, retries: int = 3, report_every: float = 0.5):
        try:
            import ray
        except ImportError:
            raise TokenmillError(RAY_MISSING) from None
        self.ray = ray
        self.retries = retries
        self.report_every = report_every      # seconds between a task's progress reports
        self._connected = False     # this engine called ray.init (else the caller had)
        if not ray.is_initialized():
            import logging

            quiet = logging.getLogger("ray")     # its start-up notices, while connecting
            level = quiet.level
            quiet.setLevel(logging.ERROR)
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.ERROR, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = address or os.environ.get("RAY_ADDRESS") or "a local instance"
                raise TokenmillError(f"--engine ray: cannot connect to {where}: {exc}".splitlines()[0]) from None
            finally:
                quiet.setLevel(level)
            self._connected = True
        self.parallel_tasks = max(1, int(ray.cluster_resources().get("CPU", 1)))
        cpus = [int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
        cpus = [c for c in cpus if c > 0] or [1]
        self.node_threads = min(cpus)        # a task of this many CPUs fits on any node
        self.node_tasks = max(1, sum(c // self.node_threads for c in cpus))
        self.tasks = self.maps = 0
        self.nodes_used: set = set()
        self._log = None
        self._finished = False      # finish_maps was called
        self._leaving = None        # the thread disconnecting (see finish_maps)
        self._submitted: list = []  # tasks started by submit() whose results are not taken yet
        self._running: list = []    # of those, the ones not seen to end
        # spread over the nodes: a data-parallel job wants every node reading its share
        self._remote = ray.remote(num_cpus=1, max_retries=retries, scheduling_strategy="SPREAD")(_call)

    def map(self, fn, items, label: str = "tasks", progress: bool = False, sizes=None, cpus: int = 1,
            done=None) -> list:
        """``[fn(item) for item in items]``, as Ray tasks of ``cpus`` CPUs each (at most
        ``node_threads``); ``sizes``: bytes of input per item; ``done(k, result)`` is called
        in the driver as each task's result arrives (in the order they end)."""
        from .progress import Progress

        if self._finished:
            raise RuntimeError("RayEngine.map after finish_maps")
        ray = self.ray
        items = list(items)
        sizes = sizes or [0] * len(items)
        remote = self._remote if cpus == 1 else self._remote.options(num_cpus=min(cpus, self.node_threads))
        bar = Progress(label, total_bytes=sum(sizes) or None, total_items=len(items), item_name="tasks",
                       enabled=None if progress else False)
        # Tasks report the bytes they have read to a small actor, which the driver polls, so
        # that the bar moves while a long task runs (only while a bar is shown).
        log = self._progress_log() if bar.enabled and any(sizes) else None
        self.maps += 1
        refs = [remote.remote(fn, item, log, (self.maps, k), self.report_every) for k, item in enumerate(items)]
        index = {ref: k for k, ref in enumerate(refs)}
        shown = [_Shown(size) for size in sizes]
        out = [None] * len(refs)
        pending = list(refs)
        poll = None
        try:
            with bar:
                while pending:
                    ended, pending = ray.wait(pending, num_returns=1, timeout=0.5)
                    if log is not None:
                        if poll is None:
                            poll = log.take.remote(self.maps)
                        if ray.wait([poll], timeout=0.1)[0]:
                            for k, n in ray.get(poll).items():
                                bar.update(shown[k].add(n), 0)
                            poll = None
                    for ref in ended:
                        k = index[ref]
                        out[k] = self._take(ref)
                        if done is not None:
                            done(k, out[k])
                        bar.update(shown[k].rest(), 1)
        except BaseException:
            # with the tasks its done= callback submitted
            self._cancel(pending + self._submitted)
            raise
        return out

    def submit(self, fn, item, cpus: int = 1):
        """Start ``fn(item)`` as a task and return at once, with a handle for :meth:`results`:
        for work that the results of a running map make ready (called from its ``done=``), so
        that it goes on while the map does. ``cpus=0`` for a task that mostly waits on
        storage (a copy), which then runs beside the map's tasks instead of taking a CPU from
        them. At most as many submitted tasks run at once as the cluster has CPUs (beyond
        that, this waits until one ends)."""
        if self._finished:
            raise RuntimeError("RayEngine.submit after finish_maps")
        # at most one running per CPU of the cluster (tasks of no CPU are not limited by Ray:
        # a burst of them would start as many worker processes); the driver waits for room
        while len(self._running) >= self.parallel_tasks:
            _, self._running = self.ray.wait(self._running, num_returns=1)
        ref = self._remote.options(num_cpus=max(0, min(cpus, self.node_threads))).remote(fn, item)
        self._submitted.append(ref)
        self._running.append(ref)
        return ref

    def results(self, handles, label: str = "tasks", progress: bool = False) -> list:
        """The results of submitted tasks, in the order of ``handles``, as they end (a bar of
        tasks under ``label`` while some are still running); a failed one cancels the others."""
        from .progress import Progress

        ray = self.ray
        handles = list(handles)
        if not handles:
            return []
        index = {ref: k for k, ref in enumerate(handles)}
        out = [None] * len(handles)
        ended, pending = ray.wait(handles, num_returns=len(handles), timeout=0)
        try:
            with Progress(label, total_items=len(handles), item_name="tasks",
                          enabled=None if progress and pending else False) as bar:
                while True:
                    for ref in ended:
                        out[index[ref]] = self._take(ref)
                        bar.update(0, 1)
                    if not pending:
                        break
                    ended, pending = ray.wait(pending, num_returns=1, timeout=0.5)
        except BaseException:
            self._cancel(pending + self._submitted)
            raise
        taken = set(handles)
        self._submitted = [r for r in self._submitted if r not in taken]
        self._running = [r for r in self._running if r not in taken]
        return out

    def _take(self, ref):
        """The result of an ended task, counted with the node it ran on."""
        node, result = _get(self.ray, ref)
        self.nodes_used.add(node)
        self.tasks += 1
        return result

    def _cancel(self, refs) -> None:
        """Cancel ``refs`` and wait until they have stopped (10 s at most), so that none writes
        into the work folder after the job has removed it."""
        refs = list(dict.fromkeys(refs))
        for ref in refs:
            self.ray.cancel(ref, force=True)
        if refs:
            try:
                self.ray.wait(refs, num_returns=len(refs), timeout=10)
            except Exception:
                pass
        self._submitted, self._running = [], []

    def _progress_log(self):
        if self._log is None:
            self._log = self.ray.remote(num_cpus=0)(_ProgressLog).remote()
        return self._log

    def finish_maps(self) -> None:
        """The job maps no more: disconnect now, in the background, while the driver ends the
        job (commits its output). Ray's disconnect takes about 0.3 s; :meth:`close` waits
        for it."""
        self._finished = True
        if self._submitted:         # never taken (the job failed between): not left running
            self._cancel(self._submitted)
        if self._log is not None:
            self.ray.kill(self._log)
            self._log = None
        if self._connected and self._leaving is None:
            import threading

            self._leaving = threading.Thread(target=self._disconnect, name="tokenmill-ray-disconnect")
            self._leaving.start()

    def _disconnect(self) -> None:
        if self.ray.is_initialized():
            self.ray.shutdown()

    def close(self, report: bool = False) -> None:
        """Disconnect if this engine connected (stopping the Ray instance it started, if it
        started one); with ``report``, say on stderr how many tasks ran on how many nodes."""
        if report and self.tasks:
            import sys

            print(f"tokenmill: ray: {self.tasks} tasks on {len(self.nodes_used)} node"
                  f"{'s' if len(self.nodes_used) != 1 else ''} ({self.parallel_tasks} CPUs)", file=sys.stderr)
        # disconnect now (and stop the instance if ray.init started one): left to Ray's
        # handler at exit, this took 0.5 s longer
        self.finish_maps()
        if self._leaving is not None:
            self._leaving.join()


_REPORT = None       # while a task runs: called with the bytes of input it has just read


def task_progress(nbytes: int) -> None:
    """Tasks call this as they read their input, so that the job's progress bar moves while
    they run (locally, and on Ray through a progress actor); elsewhere it does nothing."""
    if _REPORT is not None and nbytes > 0:
        _REPORT(nbytes)


class _Shown:
    """What a task has added to the bar: at most its size (a retried or multi-pass task reads
    its input again)."""

    def __init__(self, size: int):
        self.size, self.done = size, 0

    def add(self, n: int) -> int:
        n = max(0, min(n, self.size - self.done))
        self.done += n
        return n

    def rest(self) -> int:
        return self.add(self.size)


class _ProgressLog:
    """A Ray actor: bytes read by the running tasks, per ``(map, task)``, since the last poll."""

    def __init__(self):
        self.done = {}

    def add(self, key, n):
        self.done[key] = self.done.get(key, 0) + n

    def take(self, map_id):
        mine = {k: n for k, n in self.done.items() if k[0] == map_id}
        for k in mine:
            del self.done[k]
        return {k[1]: n for k, n in mine.items()}


def _call(fn, item, log=None, key=None, every: float = 0.5):
    """What a Ray task runs: ``fn(item)``, with the id of the node it ran on; with ``log``
    (a :class:`_ProgressLog`), the task's :func:`task_progress` goes there, once every
    ``every`` seconds at most."""
    import time

    import ray

    global _REPORT
    if log is not None:
        state = {"n": 0, "at": time.monotonic()}

        def report(n):
            state["n"] += n
            now = time.monotonic()
            if now - state["at"] >= every:
                log.add.remote(key, state["n"])
                state["n"], state["at"] = 0, now

        _REPORT = report
    try:
        return ray.get_runtime_context().get_node_id(), fn(item)
    finally:
        _REPORT = None


def fault_point(name: str) -> None:
    """A testing hook: if ``$TOKENMILL_FAULT_DIR/name`` exists, remove it and die at once
    (SIGKILL, as the kernel's OOM killer or a lost node would end a task). Tests arm it to show
    that a job whose task dies midway still gives the exact output; unset, it does nothing."""
    folder = os.environ.get("TOKENMILL_FAULT_DIR")
    if not folder:
        return
    try:
        os.unlink(os.path.join(folder, name))
    except OSError:
        return
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def _get(ray, ref):
    """The task's result; a tokenmill error raised in the task comes back as itself, so the CLI
    prints its one line."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, (TokenmillError, OSError)):
            raise cause from None
        raise


def task_inputs(cmd: str, engine: str, inputs) -> list[str]:
    """The inputs of a job on ``engine``, as absolute paths (globs and folders expanded). The
    tasks read them themselves, so standard input (``-``) is refused."""
    from .corpus.io import expand_inputs

    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    paths = expand_inputs(inputs)
    if "-" in paths:
        raise TokenmillError(f"{cmd}: --engine {engine} reads the inputs from files every node can see; "
                             "standard input (-) is not one")
    return [os.path.abspath(p) for p in paths]


def make_engine(name: str = "local", address: str | None = None, workers: int = 0):
    """The engine called ``name`` (``local`` or ``ray``)."""
    if name == "local":
        return LocalEngine(workers)
    if name == "ray":
        return RayEngine(address)
    raise TokenmillError(f"unknown engine {name!r} (choose from {', '.join(ENGINES)})")


class WorkFolder:
    """A job's folder for the files its tasks exchange (``folder`` must be visible to every
    node); removed with everything in it when the job ends, whatever way it ends."""

    def __init__(self, parent: str, tag: str):
        from .corpus.io import clean_litter, temp_name

        os.makedirs(parent, exist_ok=True)
        clean_litter(parent)
        self.path = os.path.join(parent, temp_name(tag))
        os.mkdir(self.path)

    def file(self, name: str) -> str:
        """A fresh path in the folder for ``name`` (unique per call: a retried task never
        writes over a file an earlier attempt is still writing)."""
        from .corpus.io import temp_name

        return os.path.join(self.path, temp_name(name))

    def remove(self) -> None:
        import shutil

        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
