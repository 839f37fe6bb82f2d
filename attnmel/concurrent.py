"""Several trainings at once on one GPU (issue 12, item 2).

A lone run of AttnMel-CNN leaves an H200 idle between steps (two runs side by side trained about 2.5x the
images per second of one). :func:`train_many` therefore trains a list of runs as child processes
(``python -m attnmel train --config ...``), at most ``parallel`` at a time, starting the next as soon as one
ends. Each child is its run folder's only writer, prints into ``<run folder>.log`` and gets its share of the
CPU threads (:func:`child_threads`; a child's own pool would take every core). With ``parallel=1``,
the default on the CPU, the runs train one after another in this process, exactly as before.

    from attnmel.concurrent import train_many
    runs = train_many([config_a, config_b, config_c], parallel=3)   # {run_dir: Run}, in the given order
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from attnmel.config import TrainConfig

MAX_PARALLEL = (
    4  # more runs than this on one GPU stop adding throughput (they share its SMs and memory bandwidth)
)


def default_parallel(config: TrainConfig, n_runs: int, cores: int | None = None) -> int:
    """How many runs to train at once: 1 on the CPU (two trainings would only share its cores), and on a GPU
    up to :data:`MAX_PARALLEL`, as many as the CPU cores can feed: each run's loader workers plus itself, or
    itself alone when its training set is on the device (its workers then only load the small evaluation
    splits, at validation). Three `scratch` runs side by side on an H200 took 6.5 s an epoch each (one alone was
    not measured; one run of the paper's protocol took 30 one-pass epochs in 203 s)."""
    if n_runs <= 1 or not str(config.device).startswith(("cuda", "auto")) or not torch.cuda.is_available():
        return 1
    cores = cores if cores is not None else usable_cores()
    per_run = 1 if config.data_on_device else config.num_workers + 1
    return max(1, min(MAX_PARALLEL, n_runs, cores // per_run))


# The thread pools a child's torch, OpenMP and MKL size themselves by (each defaults to every core).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def child_threads(parallel: int, cores: int | None = None) -> int:
    """CPU threads per child when ``parallel`` children share the cores: their fair share, at least 1.

    Every child's intra-op pool otherwise takes all cores, and ``parallel`` pools of that size thrash: measured
    on 2 cores, two scratch runs set up in 41 s each with the default pools and in 14 s with one thread each (one
    run alone: 12.5 s); on a 16-core GPU machine three runs spent about 165 s setting up.
    """
    cores = cores if cores is not None else usable_cores()
    return max(1, cores // max(1, parallel))


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it, else all of them)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # macOS and Windows have no sched_getaffinity
        return os.cpu_count() or 1


def _log_path(run_dir: Path) -> Path:
    return run_dir.parent / f"{run_dir.name}.log"


def _last_line(path: Path) -> str:
    try:
        lines = [
            line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()
        ]
    except OSError:
        return "no log"
    return lines[-1][:300] if lines else "no output"


def train_many(
    configs: Sequence[TrainConfig],
    *,
    parallel: int | None = None,
    reuse: bool = True,
    labels: Sequence[str] | None = None,
    log: Callable[[str], None] = print,
    poll_s: float = 0.5,
) -> dict[str, Any]:
    """Train (or reuse) every config (each with its own ``run_dir``); returns ``{run_dir: Run}`` in order.

    ``parallel``: runs at once (None: :func:`default_parallel`). Finished runs with the same settings are reused
    and interrupted ones resumed (:func:`attnmel.experiments.run_or_load`); a child that fails does not stop
    the others, and a RuntimeError at the end names every failed run, its log and the log's last line.
    ``labels``: a name per run for the log ("==> label"); interrupting the parent stops the children.
    """
    from attnmel.experiments import is_complete, load_run, run_or_load

    if not configs:
        return {}
    dirs = [c.run_dir for c in configs]
    if any(d is None for d in dirs):
        raise ValueError("train_many needs every config's run_dir (fixed folders, so the runs can be found)")
    if len(set(map(str, dirs))) != len(dirs):
        raise ValueError(f"train_many: two configs share a run_dir (one folder, one writer): {dirs}")
    parallel = default_parallel(configs[0], len(configs)) if parallel is None else parallel
    if parallel < 1:
        raise ValueError(f"parallel must be >= 1, got {parallel}")
    labels = list(labels) if labels is not None else [Path(d).name for d in dirs]
    if parallel == 1:
        runs = {}
        for label, config in zip(labels, configs, strict=True):
            log(f"==> {label}")
            runs[str(config.run_dir)] = run_or_load(config, reuse=reuse, log=log)
        return runs

    todo = []
    for label, config in zip(labels, configs, strict=True):
        log(f"==> {label}")
        run_dir = Path(config.run_dir)
        if reuse and is_complete(run_dir):
            run_or_load(config, reuse=True, log=log)  # checks the settings match, says it is reused
        else:
            if not reuse and (run_dir / "checkpoints" / "latest.pt").is_file():
                raise FileExistsError(
                    f"{run_dir} already holds a run; delete it or pass reuse=True to continue it"
                )
            todo.append(config)
    failures = []
    with tempfile.TemporaryDirectory(prefix="attnmel-train-many-") as tmp:
        running: list[tuple[subprocess.Popen, TrainConfig, Any]] = []
        queue = list(todo)
        started = time.perf_counter()
        try:
            _schedule(queue, running, failures, parallel, Path(tmp), started, log, poll_s)
        except BaseException:  # e.g. KeyboardInterrupt: no child outlives the parent's request
            for proc, _config, handle in running:
                proc.terminate()
                proc.wait()
                handle.close()
            raise
    if failures:
        raise RuntimeError(f"{len(failures)} of {len(configs)} runs failed: " + "; ".join(failures))
    return {str(c.run_dir): load_run(c.run_dir) for c in configs}


def _schedule(
    queue: list[TrainConfig],
    running: list[tuple[subprocess.Popen, TrainConfig, Any]],
    failures: list[str],
    parallel: int,
    tmp: Path,
    started: float,
    log: Callable[[str], None],
    poll_s: float,
) -> None:
    """Keep ``parallel`` children running until the queue is empty and every child has ended."""
    from attnmel.experiments import is_complete

    while queue or running:
        while queue and len(running) < parallel:
            config = queue.pop(0)
            at_once = min(parallel, len(running) + 1 + len(queue))  # fewer runs than slots share more cores
            running.append(_start(config, tmp, log, threads=child_threads(at_once)))
        time.sleep(poll_s)
        for entry in list(running):
            proc, config, handle = entry
            if proc.poll() is None:
                continue
            handle.close()
            running.remove(entry)
            log_path = _log_path(Path(config.run_dir))
            if proc.returncode == 0 and is_complete(config.run_dir):
                log(f"finished {config.run_dir} ({time.perf_counter() - started:.0f} s since the start)")
            else:
                failures.append(
                    f"{config.run_dir} (exit {proc.returncode}; {log_path}: {_last_line(log_path)})"
                )


def _start(
    config: TrainConfig, tmp: Path, log: Callable[[str], None], threads: int
) -> tuple[subprocess.Popen, TrainConfig, Any]:
    """Start one child training ``config`` (resuming when its folder holds an interrupted run) with ``threads``
    CPU threads, unless the environment already sets them."""
    run_dir = Path(config.run_dir)
    resume = (run_dir / "checkpoints" / "latest.pt").is_file()
    request = tmp / f"{len(list(tmp.iterdir()))}.json"
    request.write_text(json.dumps(config.replace(resume=resume, progress=False).to_dict()), encoding="utf-8")
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    log_path = _log_path(run_dir)
    handle = log_path.open("a", encoding="utf-8")
    env = dict(os.environ)
    package_parent = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH", "")) if p)
    for name in THREAD_VARIABLES:
        env.setdefault(name, str(threads))
    proc = subprocess.Popen(
        [sys.executable, "-m", "attnmel", "train", "--config", str(request)],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env=env,
    )
    log(
        f"training {run_dir} in process {proc.pid}{' (resumed)' if resume else ''}, "
        f"{env['OMP_NUM_THREADS']} CPU thread(s); log: {log_path}"
    )
    return proc, config, handle
