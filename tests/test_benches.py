"""The benches that bench/gpu.sh does not run (tests/test_gpu_script.py runs the rest), at toy sizes: they still
run against today's code and print their figures with the machine they measured on."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_steer_bench_times_the_committed_tiny_bank_and_prints_the_overhead():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(
        [sys.executable, "bench/steer.py", "--seconds", "1", "--repeats", "1", "--threads", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("measured on: CPU ") and "1 torch threads" in lines[0]
    assert "the committed bank assets/banks/tiny/notes" in lines[1]
    overhead = [line for line in lines if line.startswith("overhead steered/unsteered (wall median): ")]
    assert len(overhead) == 1 and float(overhead[0].split(": ")[1].split()[0]) > 0
