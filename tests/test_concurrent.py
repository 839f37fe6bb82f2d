"""Several trainings at once (attnmel.concurrent.train_many): child processes, one writer per run folder."""

from __future__ import annotations

import math
import shutil

import pytest

from attnmel.concurrent import child_threads, default_parallel, train_many
from attnmel.experiments import is_complete
from tests.helpers import tiny_config


def _configs(root, tmp_path, n=2, **changes):
    return [
        tiny_config(root, tmp_path, epochs=1, seed=s, eval_splits="Validation", run_dir=str(tmp_path / f"seed-{s}"),
                    **changes)
        for s in range(n)
    ]  # fmt: skip


def test_two_runs_train_side_by_side_in_child_processes(tiny_synthetic, tmp_path) -> None:
    messages: list[str] = []
    runs = train_many(_configs(tiny_synthetic, tmp_path), parallel=2, log=messages.append, poll_s=0.1)
    assert list(runs) == [str(tmp_path / "seed-0"), str(tmp_path / "seed-1")]
    for seed, run in enumerate(runs.values()):
        assert is_complete(run.run_dir) and run.config.seed == seed
        assert math.isfinite(run.history[0]["train_loss"]) and "Validation" in run.metrics
        log = (tmp_path / f"seed-{seed}.log").read_text()
        assert "training attnmel_cnn" in log and f"seed-{seed}" in log  # the child's own output, in its log
    assert (
        sum("in process" in m for m in messages) == 2 and sum(m.startswith("finished") for m in messages) == 2
    )
    # a second call reuses both finished runs and starts nothing
    messages.clear()
    again = train_many(_configs(tiny_synthetic, tmp_path), parallel=2, log=messages.append)
    assert [r.history for r in again.values()] == [r.history for r in runs.values()]
    assert not any("in process" in m for m in messages)


def test_children_share_the_cpu_threads_unless_the_environment_sets_them(tmp_path, monkeypatch) -> None:
    """Each child gets cores // parallel threads (at least 1); an OMP_NUM_THREADS the user set is kept."""
    import attnmel.concurrent as concurrent

    assert [child_threads(p, cores=16) for p in (1, 3, 4, 32)] == [16, 5, 4, 1]
    started: list[dict] = []

    class FakeChild:
        pid = 1

        def __init__(self, args, env, **_kwargs) -> None:
            started.append(env)

    monkeypatch.setattr(concurrent.subprocess, "Popen", FakeChild)
    config = tiny_config(tmp_path, tmp_path, run_dir=str(tmp_path / "run"))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    messages: list[str] = []
    concurrent._start(config, tmp_path, messages.append, threads=3)[2].close()
    assert started[-1]["OMP_NUM_THREADS"] == "3" and started[-1]["MKL_NUM_THREADS"] == "3"
    assert "3 CPU thread(s)" in messages[-1]
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    concurrent._start(config, tmp_path, messages.append, threads=3)[2].close()
    assert started[-1]["OMP_NUM_THREADS"] == "7" and started[-1]["MKL_NUM_THREADS"] == "3"


def test_a_failed_child_is_named_with_its_log_and_the_others_finish(tiny_synthetic, tmp_path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_synthetic, broken)
    (broken / "ISIC-2017_Validation_Part3_GroundTruth.csv").write_text("not,a,ground truth\n")
    good, bad = _configs(tiny_synthetic, tmp_path)[0], _configs(broken, tmp_path)[1]
    with pytest.raises(RuntimeError, match=r"1 of 2 runs failed: .*seed-1 \(exit 1; .*seed-1\.log: ") as err:
        train_many([good, bad], parallel=2, log=lambda _m: None, poll_s=0.1)
    assert "ISIC-2017_Validation_Part3_GroundTruth.csv" in str(err.value)  # the child's one-line error
    assert is_complete(good.run_dir) and not is_complete(bad.run_dir)


def test_one_at_a_time_trains_in_this_process_and_bad_requests_are_refused(tiny_synthetic, tmp_path) -> None:
    configs = _configs(tiny_synthetic, tmp_path, n=1)
    runs = train_many(configs, parallel=1, log=lambda _m: None)
    assert is_complete(configs[0].run_dir) and not (tmp_path / "seed-0.log").exists()
    assert len(runs) == 1
    with pytest.raises(ValueError, match="share a run_dir"):
        train_many(configs * 2, parallel=2)
    with pytest.raises(ValueError, match="parallel must be >= 1"):
        train_many(_configs(tiny_synthetic, tmp_path / "other"), parallel=0)
    with pytest.raises(ValueError, match="needs every config's run_dir"):
        train_many([configs[0].replace(run_dir=None)])
    assert default_parallel(configs[0], 5) == 1  # the CPU path stays sequential


def test_a_gpu_trains_as_many_runs_as_the_cores_feed(tmp_path, monkeypatch) -> None:
    """On a GPU: cores // (workers + 1) runs, or up to MAX_PARALLEL when the training set is on the device."""
    import attnmel.concurrent as concurrent

    monkeypatch.setattr(concurrent.torch.cuda, "is_available", lambda: True)
    loader = tiny_config(tmp_path, tmp_path, device="cuda", num_workers=8)
    assert default_parallel(loader, 3, cores=16) == 1 and default_parallel(loader, 3, cores=32) == 3
    on_device = loader.replace(data_on_device=True)
    assert default_parallel(on_device, 3, cores=16) == 3 and default_parallel(on_device, 9, cores=16) == 4
    assert default_parallel(on_device, 1, cores=16) == 1 and default_parallel(on_device, 3, cores=2) == 2


def test_the_command_line_takes_parallel_with_seeds_only(tiny_synthetic, capsys) -> None:
    from attnmel.cli import main

    for argv, message in (
        (["--parallel", "2"], "--parallel trains several seeds at once: give --seeds too"),
        (["--seeds", "0", "1", "--parallel", "0"], "--parallel must be >= 1, got 0"),
    ):
        with pytest.raises(SystemExit) as exit_:
            main(["train", "--data-root", str(tiny_synthetic), *argv])
        assert exit_.value.code == 2 and message in capsys.readouterr().err
