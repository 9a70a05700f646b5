"""`--ray`: train and eval through a local Ray instance (2 CPUs) on the tiny model give the same bank bytes and the
same tables as a local run, a rerun reuses every clip, a worker that dies mid-task is survived, a task that keeps
failing is reported with what it was, and without `--ray` Ray is never imported."""

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from probes.__main__ import main as probes_main
from probes.cluster import ROOT, Cluster, ClusterError, without_ray
from studio.errors import InputError, SynTheoryError

ray = pytest.importorskip("ray", reason="Ray is not installed: ./setup.sh dev installs requirements-cluster.txt")

TRAIN = (
    "train --model tiny --concept notes --instruments 0 24 --octaves 4 --max-per-class 4 --device cpu "
    "--out bank --cache-dir acts"
).split()
EVAL = (
    "eval --model tiny --bank tiny --device cpu --targets C G --seeds 0 1 --seconds 0.5 --strengths 0.3 "
    "--layer-modes exp0.95 --gates 0.3 --readout-window 0.1 --crossfade-strength 2 --multi-pairs C:major "
    "--bootstrap 50 --no-progress"
).split() + ["--prompts", "a note on a piano"]
TABLES = ["clips.csv", "sweep.csv", "crossfade.csv", "multi.csv", "interference.csv"]


@pytest.fixture(scope="module")
def local_ray():
    """A new local Ray instance with 2 CPUs (never one `ray start` left running here); Cluster joins it (and leaves it
    running for the next test)."""
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
        logging_level="WARNING",
    )
    yield
    ray.shutdown()


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = probes_main(argv)
    return status, out.getvalue(), err.getvalue()


def clips_of(cache: Path) -> dict[str, np.ndarray]:
    return {path.name: sf.read(path, dtype="float32")[0] for path in sorted(cache.rglob("*.wav"))}


def test_train_through_ray_makes_the_same_bank_bytes_and_a_local_run_never_imports_ray(
    tmp_path, monkeypatch, local_ray
):
    local, remote = tmp_path / "local", tmp_path / "ray"
    local.mkdir(), remote.mkdir()
    # the local run in a process of its own, to see which modules it imported
    code = (
        "import sys, torch; torch.set_num_threads(1); from probes.__main__ import main; "
        f"status = main({TRAIN!r}); sys.exit(3 if 'ray' in sys.modules else status)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SYNTHEORY_CACHE": str(local / "syntheory")}
    done = subprocess.run([sys.executable, "-c", code], cwd=local, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]  # 3: the run without --ray imported Ray

    monkeypatch.chdir(remote)
    monkeypatch.setenv("SYNTHEORY_CACHE", str(remote / "syntheory"))
    status, _, stderr = run([*TRAIN, "--ray"])
    assert status == 0, stderr
    assert "render notes: 100%" in stderr and "24/24 [" in stderr  # the clips were Ray tasks (the bar counts tasks)
    assert "activations: 100%" in stderr and "notes probes: 100%" in stderr

    for name in ("bank.safetensors", "bank.json"):  # bank.json records the command, without --ray
        assert (remote / "bank" / name).read_bytes() == (local / "bank" / name).read_bytes(), name
    ours, theirs = clips_of(remote / "syntheory"), clips_of(local / "syntheory")
    assert len(ours) == 24 and ours.keys() == theirs.keys()
    assert all(np.array_equal(ours[name], theirs[name]) for name in ours)
    caches = sorted(path.name for path in (local / "acts").iterdir())
    assert caches == sorted(path.name for path in (remote / "acts").iterdir())
    assert len(caches) == 4  # three poolings and the norms
    for name in caches:  # every pooling, the same floats (safetensors orders its metadata freely)
        on_ray, here = (load_file(root / "acts" / name)["activations"] for root in (remote, local))
        assert torch.equal(on_ray, here), name


def test_eval_through_ray_gives_the_same_tables_and_a_rerun_renders_nothing(tmp_path, local_ray):
    status, stdout, stderr = run([*EVAL, "--out", str(tmp_path / "local")])
    assert status == 0, stderr
    assert "clips: 10 rendered, 0 reused" in stdout
    status, stdout, stderr = run([*EVAL, "--out", str(tmp_path / "ray"), "--ray"])
    assert status == 0, stderr
    assert "clips: 10 rendered (10 on the Ray cluster), 0 reused" in stdout  # the experiments rendered none themselves
    for name in TABLES:
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name

    status, stdout, stderr = run([*EVAL, "--out", str(tmp_path / "ray"), "--ray"])
    assert status == 0, stderr
    assert "clips: 0 rendered (0 on the Ray cluster), 10 reused" in stdout


def test_a_worker_that_dies_mid_task_is_survived(tmp_path, local_ray, capsys):
    def die_once(marker: str) -> str:
        import os
        from pathlib import Path

        if not Path(marker).exists():
            Path(marker).touch()
            os._exit(1)  # the worker process dies under the task, as a lost machine would
        return Path(marker).name

    markers = [str(tmp_path / f"task{i}") for i in range(3)]
    with Cluster(progress=False) as cluster:
        assert cluster.map(die_once, markers, desc="test") == ["task0", "task1", "task2"]
    err = capsys.readouterr().err
    assert err.count("retrying, attempt 2 of 3") == 3, err


def test_a_task_that_keeps_failing_is_reported_with_what_it_was(local_ray, capsys):
    def fail(item: int) -> None:
        raise RuntimeError(f"no luck with {item}")

    with Cluster(progress=False) as cluster, pytest.raises(ClusterError) as caught:
        cluster.map(fail, [7], desc="clips", describe=lambda item: "the clip sweep/C-p0-s1 (recipe {...})")
    assert str(caught.value) == (
        "clips: the clip sweep/C-p0-s1 (recipe {...}) failed 3 times; last error: RuntimeError: no luck with 7"
    )
    assert capsys.readouterr().err.count("retrying") == 2


def test_bad_input_in_a_task_is_reported_at_once(local_ray, capsys):
    def refuse(item: int) -> None:
        raise SynTheoryError("the SoundFont /nowhere.sf2 does not exist")

    with Cluster(progress=False) as cluster, pytest.raises(ClusterError, match="clip 0: the SoundFont /nowhere.sf2"):
        cluster.map(refuse, [0], desc="render", describe=lambda item: f"clip {item}")
    assert "retrying" not in capsys.readouterr().err  # bad input fails the same way every time


def test_an_unreachable_cluster_is_one_line_before_any_work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, stdout, stderr = run([*TRAIN, "--ray", "127.0.0.1:1"])
    assert status == 2
    assert stderr.startswith("error: no Ray cluster answers at 127.0.0.1:1") and stderr.count("\n") == 1, stderr
    assert not (tmp_path / "bank").exists() and not (tmp_path / "acts").exists()


def test_without_ray_installed_the_flag_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where it is not installed
    with pytest.raises(InputError, match="pip install -r requirements-cluster.txt"):
        Cluster()


@pytest.mark.parametrize(
    "argv, address, expected",
    [
        (["train", "--ray", "--concept", "notes"], "", ["train", "--concept", "notes"]),
        (["train", "--ray", "auto", "--out", "b"], "auto", ["train", "--out", "b"]),
        (["eval", "--ray=ray://h:10001", "--seeds", "0"], "ray://h:10001", ["eval", "--seeds", "0"]),
        (["train", "--out", "auto"], None, ["train", "--out", "auto"]),
    ],
)
def test_the_recorded_command_leaves_out_ray(argv, address, expected):
    assert without_ray(argv, address) == expected
