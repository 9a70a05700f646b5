"""What a Hugging Face Space needs of the studio: the front matter, and ZeroGPU calls held as long as a request needs
(studio/ui/session.py). ZeroGPU itself cannot run here; the durations it would be asked for can be checked."""

import math
import re
import sys
from dataclasses import replace
from pathlib import Path

import gradio
import pytest

import studio.ui.session as session
from studio.generate import decoder_steps, generate, run_decode
from studio.recipe import Extension, Recipe, parse_recipe
from studio.ui.handlers import Handlers
from studio.ui.session import Studio

ROOT = Path(__file__).resolve().parents[3]


def test_front_matter_names_the_app_the_sdk_and_the_python_the_project_runs_on():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    front = dict(re.findall(r"^(\w+): (.+)$", text.split("---")[1], flags=re.M))
    assert front["python_version"].strip('"') == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert front["sdk"] == "gradio" and front["sdk_version"] == gradio.__version__
    assert (ROOT / front["app_file"]).is_file()


@pytest.mark.parametrize(
    "seconds, extend", [(1.0, Extension()), (2.0, Extension(window_s=1.0, stride_s=0.6)), (1.3, Extension(0.5, 0.2))]
)
def test_decoder_steps_counts_the_steps_a_generation_runs(tiny, seconds, extend):
    ran = []

    def counting(loaded, recipe, on_step, given=None):
        def step(done, total, sequence):
            ran.append(done)
            on_step(done, total, sequence)

        return run_decode(loaded, recipe, step, given)

    recipe = Recipe(seconds=seconds, model="tiny", prompt="a piano", seed=1, extend=extend)
    generate(tiny, recipe, engine=counting)
    assert decoder_steps(tiny, recipe) == len(ran)


def test_a_gpu_call_is_held_for_its_steps_at_the_measured_rate(tiny):
    studio = Studio(tiny)
    assert Handlers(studio).stream == studio.stream  # no spaces package here: not wrapped
    recipe = parse_recipe({"version": 1, "model": "tiny", "prompt": "a piano", "seconds": 1.0, "seed": 2})
    steps = decoder_steps(tiny, recipe)
    assert steps == 53
    guess = session.GPU_STEPS_PER_SECOND
    assert studio.gpu_seconds(recipe, "visitor", False) == math.ceil(10 + 1.5 * steps / guess)
    assert studio.gpu_seconds(recipe, "visitor", True) == math.ceil(10 + 1.5 * 2 * steps / guess)  # and its baseline
    long = replace(recipe, seconds=600.0)
    assert studio.gpu_seconds(long, "visitor", False) == session.GPU_MAX_SECONDS
    *_, (kind, _, _) = studio.stream(recipe, "visitor", False)
    assert kind == "done" and studio.steps_per_second > 0  # measured: the tiny model on this CPU runs faster
    measured = studio.steps_per_second
    assert studio.gpu_seconds(recipe, "visitor", False) == math.ceil(10 + 1.5 * steps / measured)
