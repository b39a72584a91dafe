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

The local engine runs the items one after the other in this process (each task uses all the
threads the job was given). Ray runs one task per CPU of the cluster, one thread each, or, for
a map called with ``cpus=engine.node_threads``, tasks of that many CPUs and threads
(``node_threads``: the CPUs of the smallest node, so that such a task fits any node): a
counting task that fills a node with threads sharing one table reads its part of the input
once and writes each n-gram it found once, where one-CPU tasks would each write their own.
"""
from __future__ import annotations

import os

from .errors import TokenmillError

ENGINES = ("local", "ray")
RAY_MISSING = '--engine ray needs Ray, an optional extra: pip install "tokenmill[ray]"'


class LocalEngine:
    """Runs every task in this process, in order. ``tasks`` is how many a job plans for at a
    time (how finely it cuts its input and partitions); the output never depends on it."""

    name = "local"

    def __init__(self, workers: int = 0, tasks: int = 1):
        self.node_threads = workers or os.cpu_count() or 1
        self.parallel_tasks = self.node_tasks = max(1, tasks)

    def map(self, fn, items, label: str = "tasks", progress: bool = False, sizes=None, cpus: int = 1) -> list:
        """``[fn(item) for item in items]``; ``sizes``: bytes of input per item (progress);
        ``cpus`` is for Ray (here every task has the job's threads)."""
        from .progress import Progress

        items = list(items)
        sizes = sizes or [0] * len(items)
        with Progress(label, total_bytes=sum(sizes) or None, total_items=len(items), item_name="tasks",
                      enabled=None if progress else False) as bar:
            out = []
            for item, size in zip(items, sizes):
                out.append(fn(item))
                bar.update(size, 1)
        return out

    def close(self, report: bool = False) -> None:
        pass


class RayEngine:
    """Runs every task as a Ray task (one CPU each; retried up to ``retries`` times when its
    worker dies). Connects to ``address`` (``auto``: the cluster this machine belongs to;
    ``ray://host:10001``: a remote one) or, without one, to ``RAY_ADDRESS`` or a fresh local
    Ray instance, which is shut down by :meth:`close`."""

    name = "ray"

    def __init__(self, address: str | None = None, retries: int = 3):
        try:
            import ray
        except ImportError:
            raise TokenmillError(RAY_MISSING) from None
        self.ray = ray
        self.retries = retries
        self._owned = False
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
            self._owned = address is None and not os.environ.get("RAY_ADDRESS")
        self.parallel_tasks = max(1, int(ray.cluster_resources().get("CPU", 1)))
        cpus = [int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
        cpus = [c for c in cpus if c > 0] or [1]
        self.node_threads = min(cpus)        # a task of this many CPUs fits on any node
        self.node_tasks = max(1, sum(c // self.node_threads for c in cpus))
        self.tasks = 0
        self.nodes_used: set = set()
        # spread over the nodes: a data-parallel job wants every node reading its share
        self._remote = ray.remote(num_cpus=1, max_retries=retries, scheduling_strategy="SPREAD")(_call)

    def map(self, fn, items, label: str = "tasks", progress: bool = False, sizes=None, cpus: int = 1) -> list:
        """``[fn(item) for item in items]``, as Ray tasks of ``cpus`` CPUs each (at most
        ``node_threads``); ``sizes``: bytes of input per item."""
        from .progress import Progress

        ray = self.ray
        items = list(items)
        sizes = sizes or [0] * len(items)
        remote = self._remote if cpus == 1 else self._remote.options(num_cpus=min(cpus, self.node_threads))
        refs = [remote.remote(fn, item) for item in items]
        index = {ref: k for k, ref in enumerate(refs)}
        out = [None] * len(refs)
        pending = list(refs)
        try:
            with Progress(label, total_bytes=sum(sizes) or None, total_items=len(refs), item_name="tasks",
                          enabled=None if progress else False) as bar:
                while pending:
                    done, pending = ray.wait(pending, num_returns=1, timeout=1.0)
                    for ref in done:
                        node, out[index[ref]] = _get(ray, ref)
                        self.nodes_used.add(node)
                        self.tasks += 1
                        bar.update(sizes[index[ref]], 1)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        return out

    def close(self, report: bool = False) -> None:
        """Disconnect (and stop the Ray instance this engine started); with ``report``, say on
        stderr how many tasks ran on how many nodes."""
        if report and self.tasks:
            import sys

            print(f"tokenmill: ray: {self.tasks} tasks on {len(self.nodes_used)} node"
                  f"{'s' if len(self.nodes_used) != 1 else ''} ({self.parallel_tasks} CPUs)", file=sys.stderr)
        if self._owned and self.ray.is_initialized():
            self.ray.shutdown()


def _call(fn, item):
    """What a Ray task runs: ``fn(item)``, with the id of the node it ran on."""
    import ray

    return ray.get_runtime_context().get_node_id(), fn(item)


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
