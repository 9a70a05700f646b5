"""bench/gpu.sh, the one prepared script for a GPU machine, run here at toy sizes (--smoke) on the CPU: every step
runs and its figures reach the one JSON summary. Its full sizes need the GPU (issue 16's figures)."""

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_script_runs_every_step_and_writes_one_summary(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(
        ["bash", "bench/gpu.sh", "--smoke"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    environment = summary["environment"]
    assert summary["mode"] == "smoke" and environment["torch"].startswith("2.13")
    # every figure names the machine it was measured on, and every step measured on this one
    assert environment["cpu"] != "unknown" and environment["torch_cpu_capability"] and environment["gpu"] is None
    for step in ("generate", "probes", "starter"):
        assert summary[step]["machine"]["cpu"] == environment["cpu"], step
    assert set(summary["steps"]) == {"tests", "generate", "probes", "starter"}
    assert all(step["exit_status"] == 0 for step in summary["steps"].values()), summary["steps"]
    tests = summary["tests"]
    assert tests["tests"] >= 5 and tests["skipped"] == tests["tests"]  # the GPU tests, skipped without a GPU
    tiny = summary["generate"]["tiny"]
    assert set(tiny["median_s"]) == {"hf unsteered", "fast unsteered", "hf steered", "fast steered"}
    assert tiny["speedup_vs_hf"]["fast unsteered"] > 0 and set(tiny["steering_overhead"]) == {"hf", "fast"}
    assert tiny["greedy_agreement"] == {"equal": 1.0, "first_differing_step": None}  # on the CPU, token for token
    shared = summary["probes"]["vs_xrfm"]["ours shared"]
    assert shared["speedup"] > 0 and shared["min_top_direction_cos"] <= 1.0
    tiny_starter = summary["starter"]["shapes"]["tiny"]
    assert min(tiny_starter["rates"].values()) > 0 and tiny_starter["largest_seconds"] > 0
    assert set(tiny_starter["largest"]) == {"notes", "chords", "tempos"}
    assert summary["targets"] == []  # the targets are for the full sizes on a GPU
