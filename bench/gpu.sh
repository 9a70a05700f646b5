#!/usr/bin/env bash
# Every GPU check of the project in one run, for a machine with one CUDA GPU (an H100 or H200: about 8 minutes):
#   1. the tests marked gpu (CUDA graphs against eager, fp16 loading, RFM on the GPU against the CPU)
#   2. bench/generate.py on musicgen-small's and -large's shapes: 10 s, fp16, ours against transformers' generate,
#      unsteered and steered (+ readout), greedy tokens compared
#   3. bench/probes.py at full size: n 9936, d 1024, 24 layers x 12 classes, ours against xRFM
#   4. bench/starter.py: the starter banks' stage rates on the tiny model and musicgen-small's and -large's shapes,
#      and the projected wall time of a starter build on each
# then writes one JSON summary (every figure and ratio, and the issue's targets met or not) to $OUT/summary.json and
# prints it. A failing step is recorded there, and the later steps still run.
#
#   bench/gpu.sh            after ./setup.sh dev, on the GPU machine
#   bench/gpu.sh --smoke    the same steps at toy sizes, on any device (tests/test_gpu_script.py runs it on the CPU)
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-bench/out/gpu}
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.log "$OUT"/*.xml "$OUT"/steps.tsv

if [ "${1:-}" = "--smoke" ]; then
  MODE=smoke
  GENERATE=(--shape tiny --seconds 1 --repeats 1 --check)
  PROBES=(--n 300 --d 32 --layers 2 --rounds 2 --repeats 1)
  STARTER=(--shapes tiny)
else
  MODE=full
  GENERATE=(--shape small,large --seconds 10 --repeats 2 --check)
  PROBES=(--n 9936 --d 1024 --layers 24 --classes 12 --repeats 1)
  STARTER=(--shapes tiny,small,large)
fi

step() {  # step NAME COMMAND...: run it, its output to NAME.log, its exit status and milliseconds to steps.tsv
  local name=$1 began status
  shift
  began=$(date +%s%N)
  echo "== $name: $*"
  "$@" >"$OUT/$name.log" 2>&1
  status=$?
  echo -e "$name\t$status\t$((($(date +%s%N) - began) / 1000000))" >>"$OUT/steps.tsv"
  tail -n 3 "$OUT/$name.log"
}

step tests "$PY" -m pytest -q -m gpu -p no:cacheprovider --junitxml "$OUT/tests.xml" tests
step generate "$PY" bench/generate.py "${GENERATE[@]}" --json "$OUT/generate.json"
step probes "$PY" bench/probes.py "${PROBES[@]}" --json "$OUT/probes.json"
step starter "$PY" bench/starter.py "${STARTER[@]}" --json "$OUT/starter.json"

"$PY" - "$OUT" "$MODE" <<'EOF'
"""Merge the steps' figures into summary.json, with the issue's targets checked against them."""
import json
import platform
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import torch

from bench.machine import machine

out, mode = Path(sys.argv[1]), sys.argv[2]


def read(name):
    path = out / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


steps = {}
for line in (out / "steps.tsv").read_text().splitlines():
    name, status, milliseconds = line.split("\t")
    steps[name] = {"exit_status": int(status), "seconds": int(milliseconds) / 1000}
tests = None
if (out / "tests.xml").is_file():
    suite = ET.parse(out / "tests.xml").getroot().find("testsuite")
    tests = {key: int(suite.get(key)) for key in ("tests", "failures", "errors", "skipped")}
generate, probes, starter = read("generate"), read("probes"), read("starter")


def target(name, value, limit, at_most):
    """One of the issue's targets: the figure, its limit, and whether it is met (None when not measured)."""
    met = None if value is None else (value <= limit if at_most else value >= limit)
    return {"name": name, "value": value, "limit": limit, "at_most": at_most, "met": met}


def figure(source, *keys):
    for key in keys:
        if not isinstance(source, dict) or key not in source:
            return None
        source = source[key]
    return source


targets = []
if mode == "full":
    for shape, limit in (("small", 1.0), ("large", 3.0)):
        seconds = figure(generate, shape, "median_s", "fast unsteered")
        targets.append(target(f"musicgen-{shape} 10 s render, seconds", seconds, limit, True))
        overhead = figure(generate, shape, "steering_overhead", "fast")
        targets.append(target(f"musicgen-{shape} steering + readout overhead", overhead, 0.03, True))
    speedup = figure(probes, "vs_xrfm", "ours shared", "speedup")
    targets.append(target("probes, speed-up over xRFM", speedup, 5.0, False))
    # the largest starter subsets are the ones within 0.03 AUC of the full recipe (README, "Starter banks")
    projected = figure(starter, "shapes", "small", "largest_seconds")
    targets.append(target("musicgen-small starter banks from a cold cache, projected seconds", projected, 180.0, True))

summary = {
    "mode": mode,
    "environment": {
        **machine(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
    },
    "steps": steps,
    "tests": tests,
    "generate": generate,
    "probes": probes,
    "starter": starter,
    "targets": targets,
}
(out / "summary.json").write_text(json.dumps(summary, indent=1))
print(json.dumps(summary, indent=1))
EOF
