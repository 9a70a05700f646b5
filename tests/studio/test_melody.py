"""Melody MusicGen checkpoints (facebook/musicgen-melody) on `tiny-melody`: the chroma of a clip, our decode loop
against transformers' generate with ``input_features``, the conditioning prefix left unsteered, and the melody through
the recipe, the CLI and the page's handlers."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from bench.workloads import random_bank
from studio.decode import decode
from studio.errors import InputError
from studio.generate import generate, run_decode
from studio.hooks import HookManager
from studio.melody import chroma, read_melody
from studio.model import load_model
from studio.recipe import Target
from studio.reference import run_reference
from studio.sampling import Sampling
from tests.studio.test_decode import hf_generate, random_plan
from tests.studio.test_generate import run_cli, steered, write_recipe

RATE = 32000
C, G, A = 261.63, 392.0, 440.0


@pytest.fixture(scope="module")
def melody_model():
    return load_model("tiny-melody", device="cpu")


@pytest.fixture(scope="module")
def banks(melody_model):
    return {"notes": random_bank(melody_model.signature, probe_points=200, readout_layer=3, seed=0)}


def tune(*notes: tuple[float, float], rate: int = RATE) -> np.ndarray:
    """Sine tones one after the other: (hz, seconds) each."""
    parts = [0.3 * np.sin(2 * np.pi * hz * np.arange(int(s * rate)) / rate) for hz, s in notes]
    return np.concatenate(parts).astype(np.float32)


@pytest.fixture
def melody_file(tmp_path) -> Path:
    path = tmp_path / "tune.wav"
    sf.write(
        path, np.stack([tune((A, 1.0), (G, 1.0), rate=44100)] * 2, axis=1), 44100
    )  # stereo at 44.1 kHz: mixed, resampled
    return path


# ------------------------------------------------------------------------------------------------ chroma


def test_chroma_hears_each_tone_as_its_pitch_class_one_frame_per_4096_samples():
    frames = chroma(tune((C, 1.5), (A, 1.5)))
    assert frames.shape == (1 + 3 * RATE // 4096, 12) and torch.equal(frames.sum(1), torch.ones(len(frames)))
    bins = frames.argmax(1).tolist()
    assert bins[:9] == [0] * 9 and bins[-9:] == [9] * 9  # C, then A (a frame spans 0.5 s: the middle ones mix)
    assert chroma(tune((G, 40.0))).shape[0] == 235  # the first 30 s: a melody checkpoint's chroma_length
    assert chroma(tune((G, 0.2))).shape[0] == 5 and chroma(tune((G, 0.2))).argmax(1).unique().tolist() == [7]
    assert chroma(np.zeros(RATE)).argmax(1).unique().tolist() == [0]  # silence reads as C, as transformers' does


def test_chroma_equals_transformers_feature_extractor():
    pytest.importorskip("torchaudio", reason="transformers' chroma extractor needs torchaudio, not installed here")
    from transformers import MusicgenMelodyFeatureExtractor

    audio = tune((C, 0.7), (G, 1.1), (A, 0.9)) + 0.01 * np.random.default_rng(0).standard_normal(int(2.7 * RATE))
    theirs = MusicgenMelodyFeatureExtractor()(audio, sampling_rate=RATE, return_tensors="pt")["input_features"][0]
    assert torch.equal(chroma(audio), theirs)


def test_read_melody_mixes_resamples_and_refuses_what_cannot_be_heard(melody_file, tmp_path):
    assert read_melody(None) is None
    assert read_melody(melody_file).argmax(1)[:5].tolist() == [9] * 5
    (tmp_path / "notes.txt").write_text("not audio")
    sf.write(tmp_path / "quiet.wav", np.zeros(RATE), RATE)
    for bad, words in (("notes.txt", "melody cannot be read as audio"), ("quiet.wav", "melody is silent")):
        with pytest.raises(InputError, match=words):
            read_melody(tmp_path / bad)


# ------------------------------------------------------------------------------------------------ against generate


def features(melody: torch.Tensor | None, prompts: int) -> dict:
    """generate's melody argument for a batch of `prompts` (none without a melody)."""
    return {} if melody is None else {"input_features": melody[None].expand(prompts, -1, -1)}


@pytest.mark.parametrize("with_melody", [True, False], ids=["melody", "no melody"])
@pytest.mark.parametrize(
    "prompts, sampling",
    [
        (["a piano"], Sampling(greedy=True)),
        (["a piano"], Sampling(greedy=True, guidance_scale=1.0)),
        (["", "a loud rock guitar solo"], Sampling(greedy=True)),
        (["a piano"], Sampling()),
    ],
)
def test_tokens_equal_transformers_generate_with_input_features(melody_model, prompts, sampling, with_melody):
    melody = chroma(tune((A, 1.0), (G, 0.5))) if with_melody else None
    frames, seed = 30, 11
    kwargs = dict(do_sample=not sampling.greedy, guidance_scale=sampling.guidance_scale)
    torch.manual_seed(seed)
    theirs, _, _ = hf_generate(melody_model, prompts, frames, **kwargs, **features(melody, len(prompts)))
    ours = decode(melody_model, prompts, frames, seed=seed, sampling=sampling, melody=melody)
    assert torch.equal(ours.codes, theirs)


def test_the_melody_changes_what_is_generated(melody_model):
    a, g = (chroma(tune((hz, 2.0))) for hz in (A, G))
    runs = [decode(melody_model, ["a piano"], 40, sampling=Sampling(greedy=True), melody=m).codes for m in (a, g, None)]
    assert not torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_a_prompt_too_long_for_the_position_table_is_refused(melody_model):
    with pytest.raises(InputError, match=r"need \d+ decoder positions; tiny-melody has 2048: shorten"):
        decode(melody_model, ["x" * 400], frames=1500, sampling=Sampling(greedy=True))


# ------------------------------------------------------------------------------------------------ steering


@pytest.mark.parametrize("engine", ["ours", "transformers"])
def test_steering_leaves_the_conditioning_prefix_alone(melody_model, engine):
    """Every layer's states at the prefix's positions (the chroma and the text) are the unsteered ones; from the clip's
    first position on, the plan steers. The readout captures the clip's steps only."""
    prompt, frames = "a piano", 12
    prefix = melody_model.prefix_length(prompt)
    steps = melody_model.steps_for(frames)
    melody = chroma(tune((A, 1.0)))
    plan = random_plan(melody_model, steps)

    def first_forward(steered: bool) -> tuple[list[torch.Tensor], torch.Tensor]:
        outputs = []
        recorders = [
            layer.register_forward_hook(lambda _m, _i, out: outputs.append(out[0].clone()))
            for layer in melody_model.decoder_layers()
        ]
        try:
            with HookManager(
                melody_model, plan if steered else None, capture_layer=2, steps=steps, cfg=True, prefix=prefix
            ) as hooks:
                if engine == "ours":
                    decode(melody_model, [prompt], frames, sampling=Sampling(greedy=True), melody=melody)
                else:
                    hf_generate(
                        melody_model, [prompt], frames, do_sample=False, guidance_scale=3.0, **features(melody, 1)
                    )
        finally:
            for recorder in recorders:
                recorder.remove()
        assert hooks.positions == steps  # every step captured, none of the prefix's positions
        # our loop's first forward is the prefix alone; transformers' is the prefix and the clip's first position
        return outputs[: melody_model.num_layers], hooks.states.clone()

    plain, plain_states = first_forward(False)
    steered, steered_states = first_forward(True)
    for before, after in zip(plain, steered):
        assert after.shape[1] >= prefix and torch.equal(before[:, :prefix], after[:, :prefix])
    if engine == "transformers":  # position P, the clip's first, is in the same forward: steered
        assert not torch.equal(plain[-1][:, prefix], steered[-1][:, prefix])
    assert not torch.equal(plain_states[0], steered_states[0])  # the first step's captured state is steered


@pytest.mark.parametrize("sampling", [Sampling(greedy=True), Sampling()])
def test_steered_renders_with_a_melody_agree_across_engines(melody_model, banks, melody_file, sampling):
    recipe = replace(steered(seconds=0.6), model="tiny-melody", sampling=sampling, melody=str(melody_file))
    fast, hf = (generate(melody_model, recipe, banks=banks, engine=e) for e in (run_decode, run_reference))
    assert torch.equal(fast.tokens, hf.tokens) and np.array_equal(fast.audio, hf.audio)
    torch.testing.assert_close(fast.readout.window, hf.readout.window, rtol=0, atol=1e-5)
    assert fast.readout.steps == melody_model.steps_for(30)
    plain = generate(melody_model, replace(recipe, controls=()), banks=banks)
    assert not torch.equal(plain.tokens, fast.tokens)


def test_closed_loop_steering_with_a_melody_prefix_agrees_across_engines(melody_model, banks, melody_file):
    """The melody prefix's positions are no steps of the clip: the controller's first gain (kp * p = 0.5, nothing read
    yet) is step 0's, on both engines."""
    recipe = replace(steered(seconds=0.6), model="tiny-melody", melody=str(melody_file))
    held = replace(recipe.controls[0], target=Target(p=0.5))
    recipe = replace(recipe, controls=(held, *recipe.controls[1:]))
    fast, hf = (generate(melody_model, recipe, banks=banks, engine=e) for e in (run_decode, run_reference))
    assert torch.equal(fast.tokens, hf.tokens)
    torch.testing.assert_close(fast.strengths, hf.strengths, rtol=0, atol=1e-4)
    assert float(fast.strengths[0, 0]) == pytest.approx(0.5 * held.strength)
    assert (fast.strengths[:, 1] == recipe.controls[1].strength).all()  # the fixed control


def test_a_melody_for_a_model_without_melody_conditioning_is_refused(tiny, melody_file):
    recipe = replace(steered(), controls=(), readout=None, melody=str(melody_file))
    with pytest.raises(InputError, match="melody is given, but tiny has no melody conditioning"):
        generate(tiny, recipe)


# ------------------------------------------------------------------------------------------------ CLI and page


def test_the_cli_follows_a_melody_and_records_it(tmp_path, melody_file, capsys):
    out = tmp_path / "out.wav"
    args = ("--model", "tiny-melody", "--prompt", "a piano", "--seconds", "0.4", "--out", out)
    assert run_cli(capsys, *args, "--melody", melody_file) == (0, [])
    assert sf.read(out)[0].shape == (0.4 * RATE,)
    recipe = replace(steered(), controls=(), readout=None, melody=str(melody_file))
    code, errors = run_cli(capsys, "--recipe", write_recipe(tmp_path, recipe), "--out", tmp_path / "no.wav")
    assert code == 2 and len(errors) == 1 and "melody is given, but tiny has no melody conditioning" in errors[0]
    assert not (tmp_path / "no.wav").exists()


def test_the_page_shows_the_melody_box_on_melody_models_only_and_renders_with_it(melody_model, tiny, melody_file):
    from studio.ui.handlers import Handlers
    from studio.ui.layout import build_app
    from studio.ui.session import Studio

    def melody_box_visible(loaded) -> bool:
        app = build_app(loaded, banner="")
        box = next(b for b in app.blocks.values() if getattr(b, "elem_id", None) == "melody")
        parent = box.parent
        while parent is not None and not hasattr(parent, "open"):
            parent = parent.parent
        return parent.visible

    assert melody_box_visible(melody_model) and not melody_box_visible(tiny)
    recipe = replace(steered(seconds=0.4), model="tiny-melody", controls=(), readout=None, melody=str(melody_file))
    wav, record = Handlers(Studio(melody_model)).render(json.dumps(recipe.to_dict()))  # no banks: a plain render
    assert sf.read(wav)[0].shape == (0.4 * RATE,)
    assert json.loads(Path(record).read_text())["recipe"]["melody"] == str(melody_file)


def test_a_stereo_melody_checkpoint_decodes_both_channels_as_transformers_does():
    """facebook/musicgen-stereo-melody's kind: the melody prefix and interleaved channels together (tiny-melody made
    stereo in code, as tiny-stereo is made from tiny)."""
    from studio.model import as_loaded, build_tiny_random_model, stereo_from_mono, tiny_tokenizer

    mono = build_tiny_random_model(melody=True)
    loaded = as_loaded(
        stereo_from_mono(mono, "tiny-stereo-melody"), tiny_tokenizer(), "tiny-stereo-melody", torch.device("cpu")
    )
    assert (loaded.audio_channels, loaded.chroma_length) == (2, 235)
    melody = chroma(tune((A, 1.0)))
    inputs = loaded.tokenizer(["a piano"], return_tensors="pt")
    with torch.inference_mode():
        audio = loaded.model.generate(
            **inputs, input_features=melody[None], max_new_tokens=loaded.steps_for(20), do_sample=False
        )
    ours = decode(loaded, ["a piano"], 20, sampling=Sampling(greedy=True), melody=melody)
    assert np.array_equal(ours.audio[0], audio[0].numpy().T)


def test_teacher_forced_scores_read_past_the_prefix(melody_model):
    """The fidelity check's scores (studio/precision.py) on a melody checkpoint, in one forward and position by
    position: the scores of the clip's positions, the prefix cut off, pick the greedy decode's tokens."""
    from studio.decode import teacher_forced_scores
    from studio.model import FREE

    out = decode(melody_model, ["a piano"], 20, sampling=Sampling(greedy=True))
    scores = teacher_forced_scores(melody_model, "a piano", out.sequence[0], guidance_scale=3.0)
    stepwise = teacher_forced_scores(melody_model, "a piano", out.sequence[0], guidance_scale=3.0, stepwise=True)
    free = (melody_model.delay_pattern(20) == FREE)[:, 1:]
    assert scores.shape[:2] == free.shape and stepwise.shape == scores.shape
    assert torch.equal(scores.argmax(-1)[free], out.sequence[0, :, 1:][free])
    assert torch.allclose(stepwise, scores, atol=1e-4)
