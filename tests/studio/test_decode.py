"""studio/decode.py: our decode loop against transformers' own generate, on the tiny model.

CPU tests compare tokens (the EnCodec codes generate hands to the codec), not just audio. GPU tests (graph against
eager, greedy against transformers in fp16) skip with a reason when no CUDA device is present.
"""

from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from torch.fx.experimental.proxy_tensor import make_fx
from transformers.generation.logits_process import (
    ClassifierFreeGuidanceLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from studio import decode as decoding
from studio.decode import decode
from studio.errors import InputError
from studio.hooks import HookManager
from studio.model import delay_pattern, strip_delay
from studio.plan import SteeringPlan
from studio.sampling import Sampling, filter_scores, guide, sample

GREEDY = Sampling(greedy=True)


def hf_generate(loaded, prompts, frames, **kwargs):
    """transformers' generate for `frames` frames: (codes [B, K, frames] it decoded, audio [B, samples], output)."""
    model = loaded.model
    inputs = loaded.tokenizer(prompts, return_tensors="pt", padding=True).to(loaded.device)
    codec = model.audio_encoder
    with mock.patch.object(codec, "decode", wraps=codec.decode) as spy, torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=loaded.steps_for(frames), **kwargs)
    audio = out.sequences if kwargs.get("return_dict_in_generate") else out
    return spy.call_args.args[0][0].cpu(), audio[:, 0].float().cpu().numpy(), out


def random_plan(loaded, steps, controls=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    L, d = loaded.num_layers, loaded.hidden_size
    directions = torch.randn(L, controls, d, generator=gen)
    directions /= directions.norm(dim=-1, keepdim=True)
    return SteeringPlan(
        coefficients=2 * torch.rand(steps, L, controls, generator=gen),
        directions=directions,
        cfg_mode="both",
        labels=tuple(f"c{k}" for k in range(controls)),
        layer_weights=torch.ones(L, controls),
        schedules=torch.ones(steps, controls),
        gates=torch.ones(steps, L, controls, dtype=torch.bool),
    )


# ------------------------------------------------------------------------------------------------ pure pieces


@pytest.mark.parametrize("frames", [3, 4, 7, 50])
def test_delay_pattern_is_transformers_pattern(tiny, frames):
    K, pad = tiny.num_codebooks, 256
    bos = torch.full((K, 1), pad, dtype=torch.long)
    _, theirs = tiny.model.decoder.build_delay_pattern_mask(bos, pad_token_id=pad, max_length=frames + K)
    assert torch.equal(delay_pattern(K, frames, pad), theirs)


@pytest.mark.parametrize("frames", [1, 2])
def test_delay_pattern_of_clips_shorter_than_the_delay(frames):
    """transformers skips the pattern when frames < K - 1 (its generate then returns frames + K - 1 frames);
    we keep it, so one or two frames give one or two frames."""
    pattern = delay_pattern(4, frames, 256)
    for k in range(4):
        assert (pattern[k] == -1).nonzero().flatten().tolist() == list(range(k + 1, k + 1 + frames))


def test_strip_delay_recovers_the_codes_placed_in_the_pattern():
    B, K, frames, pad = 2, 4, 9, 99
    codes = torch.randint(0, 50, (B, K, frames))
    grid = delay_pattern(K, frames, pad).repeat(B, 1, 1)
    for k in range(K):
        grid[:, k, k + 1 : k + 1 + frames] = codes[:, k]
    assert (grid != -1).all()
    assert torch.equal(strip_delay(grid, frames), codes)
    assert torch.equal(grid[grid != pad].reshape(B, K, frames), codes)  # transformers' way of stripping


def test_guidance_and_filters_equal_transformers_processors():
    gen = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(16, 256, generator=gen)
    ids = torch.zeros(8, 1, dtype=torch.long)
    guided = ClassifierFreeGuidanceLogitsProcessor(3.0)(ids, logits)
    assert torch.equal(guide(logits, 3.0), guided)
    for temperature, k, p in [(1.0, 250, 0.0), (0.7, 20, 0.0), (1.3, 0, 0.9), (0.9, 50, 0.5), (1.0, 300, 0.95)]:
        theirs = guided
        if temperature != 1.0:
            theirs = TemperatureLogitsWarper(temperature)(ids, theirs)
        if k:
            theirs = TopKLogitsWarper(k)(ids, theirs)
        if 0 < p < 1:
            theirs = TopPLogitsWarper(p)(ids, theirs)
        ours = filter_scores(guided, temperature, k, p)
        assert torch.equal(ours, theirs), (temperature, k, p)
        assert torch.isfinite(ours).sum(-1).min() >= 1


def test_sample_draws_what_multinomial_draws():
    probs_gen = torch.Generator().manual_seed(1)
    scores = torch.randn(32, 256, generator=probs_gen)
    expected = torch.multinomial(scores.softmax(-1), 1, generator=torch.Generator().manual_seed(9)).squeeze(1)
    assert torch.equal(sample(scores, torch.Generator().manual_seed(9)), expected)


# ------------------------------------------------------------------------------------------------ against generate


@pytest.mark.parametrize(
    "prompts, guidance",
    [
        (["calm piano"], 3.0),
        (["calm piano"], 1.0),
        (["", "a loud rock guitar solo with drums"], 3.0),
        (["80s synth pop", "bass"], 1.0),
    ],
)
def test_greedy_tokens_and_audio_equal_transformers_generate(tiny, prompts, guidance):
    frames = 60
    codes, audio, _ = hf_generate(tiny, prompts, frames, do_sample=False, guidance_scale=guidance)
    ours = decode(tiny, prompts, frames, sampling=Sampling(guidance_scale=guidance, greedy=True))
    assert ours.codes.shape == (len(prompts), tiny.num_codebooks, frames)
    assert torch.equal(ours.codes, codes)
    assert np.array_equal(ours.audio, audio)


def test_greedy_tokens_equal_transformers_generate_with_eager_attention():
    """The causal mask is built per attention implementation: additive for 'eager', boolean for 'sdpa'."""
    from studio.model import load_model

    loaded = load_model("tiny", device="cpu")  # our own copy: the session's `tiny` stays on sdpa
    loaded.model.set_attn_implementation("eager")
    assert loaded.model.decoder.model.decoder.config._attn_implementation == "eager"
    codes, _, _ = hf_generate(loaded, ["calm piano", "x"], 40, do_sample=False, guidance_scale=3.0)
    assert torch.equal(decode(loaded, ["calm piano", "x"], 40, sampling=GREEDY, with_audio=False).codes, codes)


@pytest.mark.parametrize(
    "sampling",
    [
        Sampling(),
        Sampling(top_k=0, top_p=0.9, temperature=0.8),
        Sampling(guidance_scale=1.0, top_k=20, temperature=1.2),
    ],
)
def test_sampled_tokens_equal_transformers_generate_for_the_same_seed(tiny, sampling):
    """generate samples from the global RNG after torch.manual_seed(seed); we from a generator seeded alike."""
    frames, seed = 40, 1234
    kwargs = dict(
        do_sample=True,
        guidance_scale=sampling.guidance_scale,
        temperature=sampling.temperature,
        top_k=sampling.top_k,
        top_p=sampling.top_p or 1.0,
    )
    torch.manual_seed(seed)
    codes, _, _ = hf_generate(tiny, ["warm lofi piano"], frames, **kwargs)
    assert torch.equal(decode(tiny, ["warm lofi piano"], frames, seed=seed, sampling=sampling).codes, codes)


def tone(seconds: float, hz: float = 261.6, rate: int = 32000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.mark.parametrize("sampling", [Sampling(greedy=True), Sampling(greedy=True, guidance_scale=1.0), Sampling()])
def test_continuation_equals_transformers_generate_with_input_values(tiny, sampling):
    """An audio prompt: transformers encodes it and prefills it; we encode it (encode_audio) and prefill it in one
    forward. Same tokens, greedy and sampled (the prefill draws nothing from the generator)."""
    clip, frames, seed = tone(1.0), 90, 77
    given = tiny.encode_audio(clip)
    assert given.shape == (tiny.num_codebooks, 50)
    kwargs = dict(do_sample=not sampling.greedy, guidance_scale=sampling.guidance_scale)
    if not sampling.greedy:
        kwargs.update(top_k=sampling.top_k, temperature=sampling.temperature)
    model = tiny.model
    inputs = tiny.tokenizer(["calm piano"], return_tensors="pt")
    codec = model.audio_encoder
    torch.manual_seed(seed)
    with mock.patch.object(codec, "decode", wraps=codec.decode) as spy, torch.inference_mode():
        audio = model.generate(
            **inputs,
            input_values=torch.from_numpy(clip)[None, None],
            max_new_tokens=frames + tiny.num_codebooks - 1 - 50,
            **kwargs,
        )
    theirs = spy.call_args.args[0][0]
    steps = []
    ours = decode(
        tiny,
        ["calm piano"],
        frames,
        seed=seed,
        sampling=sampling,
        given=given[None],
        on_step=lambda d, *_: steps.append(d),
    )
    assert torch.equal(ours.codes, theirs) and torch.equal(ours.codes[0, :, :50], given)
    assert np.array_equal(ours.audio, audio[:, 0].numpy())
    assert steps == list(range(51, frames + tiny.num_codebooks))  # steps after the prefill, as transformers counts


def test_the_prefill_is_one_forward_that_hooks_see_at_positions_0_to_p(tiny):
    given = tiny.encode_audio(tone(0.4))  # 20 frames
    plan = random_plan(tiny, steps=tiny.steps_for(30))
    with tiny.lock, HookManager(tiny, plan, capture_layer=2, cfg=True) as hooks:
        decode(tiny, ["x"], 30, sampling=Sampling(greedy=True), given=given[None], with_audio=False)
    assert hooks.forwards == 1 + (tiny.steps_for(30) - 20) and hooks.positions == tiny.steps_for(30)
    with pytest.raises(InputError, match=r"given codes must be \[1, 4, P\] with 0 < P < frames \(20\)"):
        decode(tiny, ["x"], 20, given=given[None])


def test_steering_hooks_fire_in_our_loop_as_in_generate(tiny):
    """studio/hooks.py's HookManager steers and captures through our loop exactly as through generate."""
    frames = 30
    steps = frames + tiny.num_codebooks - 1
    plan = random_plan(tiny, steps)
    with HookManager(tiny, plan, capture_layer=3, steps=steps, cfg=True) as theirs:
        codes, _, _ = hf_generate(tiny, ["calm piano"], frames, do_sample=False, guidance_scale=3.0)
    with HookManager(tiny, plan, capture_layer=3, steps=steps, cfg=True) as ours:
        steered = decode(tiny, ["calm piano"], frames, sampling=GREEDY)
    assert torch.equal(steered.codes, codes)
    assert ours.positions == theirs.positions == steps
    torch.testing.assert_close(ours.states, theirs.states, rtol=0, atol=1e-5)  # static vs growing cache: ~1e-7
    plain = decode(tiny, ["calm piano"], frames, sampling=GREEDY)
    assert not torch.equal(plain.codes, steered.codes)


# ------------------------------------------------------------------------------------------------ our loop


def test_steps_callbacks_lengths_and_grid(tiny):
    frames = 23
    total = frames + tiny.num_codebooks - 1
    calls = []
    result = decode(tiny, ["a", "bb"], frames, seed=3, on_step=lambda done, steps, _: calls.append((done, steps)))
    assert result.steps == total and calls == [(t, total) for t in range(1, total + 1)]
    assert result.audio.shape == (2, frames * 640) and result.audio.dtype == np.float32
    assert result.sample_rate == tiny.sample_rate == 32000
    assert result.sequence.shape == (2, tiny.num_codebooks, total + 1)
    pad = tiny.model.config.decoder.vocab_size
    pattern = delay_pattern(tiny.num_codebooks, frames, pad)
    assert (result.sequence[:, :, 0] == pad).all()
    assert torch.equal(result.sequence[:, pattern != -1], pattern[pattern != -1].expand(2, -1))
    assert ((result.codes >= 0) & (result.codes < pad)).all()
    assert not result.used_cuda_graph
    result.codes[0, 0, 0] = 0  # ordinary tensors, not inference-mode ones


def test_same_seed_same_tokens_other_seed_other_tokens_global_rng_untouched(tiny):
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    a = decode(tiny, ["calm piano"], 40, seed=7, with_audio=False)
    assert torch.equal(torch.rand(1), before)
    b = decode(tiny, ["calm piano"], 40, seed=7, with_audio=False)
    c = decode(tiny, ["calm piano"], 40, seed=8, with_audio=False)
    assert a.audio is None
    assert torch.equal(a.codes, b.codes) and not torch.equal(a.codes, c.codes)


def replayed_decode(loaded, prompt, frames, seed, sampling, bucket=8) -> torch.Tensor:
    """Our loop as it runs on a GPU, with make_fx standing in for the CUDA graph: eager warm-up steps, then the step
    recorded once per attention window (its Python, hooks included, runs once and its values are baked in, as in a
    capture) and the recordings replayed for the remaining steps; the token grid."""
    generator = None if sampling.greedy else torch.Generator().manual_seed(seed)
    conditioning = decoding.encode_text(loaded, [prompt], cfg=sampling.guidance_scale > 1)
    program = decoding._DecodeProgram(loaded, conditioning, frames, sampling, generator, attention_bucket=bucket)
    record = lambda step: (make_fx(lambda: step())(), True)  # noqa: E731 (recording runs the step; a capture does not)
    with decoding._stack_forward_replaced(program.stack, program.stack_forward):
        decoding._run_eager(program, None, last=decoding.WARMUP_STEPS)
        decoding._replay_by_window(program, decoding.WARMUP_STEPS, None, record)
    return program.sequence.view(1, loaded.num_codebooks, -1)


@pytest.mark.parametrize("sampling", [GREEDY, Sampling(top_k=50, temperature=0.9)])
def test_step_replayed_from_one_recording_per_window_gives_the_eager_tokens(tiny, sampling):
    """What a CUDA graph needs, checked on the CPU: nothing in the step depends on Python state that changes within
    an attention window (28 steps in windows of 8: four recordings)."""
    eager = decode(tiny, ["calm piano"], 25, seed=11, sampling=sampling, with_audio=False, attention_bucket=8)
    with torch.inference_mode():
        assert torch.equal(replayed_decode(tiny, "calm piano", 25, 11, sampling), eager.sequence)


@pytest.mark.parametrize("sampling", [GREEDY, Sampling()])
def test_attention_reads_the_cache_up_to_its_window_and_gives_the_whole_cache_tokens(tiny, sampling):
    """Step t's self-attention gets the cache up to the end of its bucket of positions, not the whole preallocated
    cache (which made every step pay for the clip's full length); the tokens are those of reading it all."""
    read = []
    update = decoding._WindowedLayer.update

    def spy(layer, *args, **kwargs):
        keys, values = update(layer, *args, **kwargs)
        read.append(keys.shape[2])
        return keys, values

    frames, steps = 25, 25 + tiny.num_codebooks - 1
    with mock.patch.object(decoding._WindowedLayer, "update", spy):
        windowed = decode(tiny, ["calm piano"], frames, seed=3, sampling=sampling, attention_bucket=8)
    assert read[:: tiny.num_layers] == [min(steps, 8 * (t // 8 + 1)) for t in range(steps)]
    assert len(read) == steps * tiny.num_layers
    whole = decode(tiny, ["calm piano"], frames, seed=3, sampling=sampling, attention_bucket=None)
    assert torch.equal(windowed.sequence, whole.sequence)
    assert torch.equal(decode(tiny, ["calm piano"], frames, seed=3, sampling=sampling).sequence, whole.sequence)


def test_steering_hooks_survive_replay(tiny):
    """studio/hooks.py's hooks, recorded once per attention window and replayed, steer and capture as they do
    eagerly."""
    frames = 25
    steps = frames + tiny.num_codebooks - 1
    plan = random_plan(tiny, steps, seed=4)
    with HookManager(tiny, plan, capture_layer=2, steps=steps, cfg=True) as eager_hooks:
        eager = decode(tiny, ["calm piano"], frames, seed=2, with_audio=False, attention_bucket=8)
    with HookManager(tiny, plan, capture_layer=2, steps=steps, cfg=True) as replay_hooks, torch.inference_mode():
        replayed = replayed_decode(tiny, "calm piano", frames, 2, Sampling())
    assert torch.equal(replayed, eager.sequence)
    assert replay_hooks.positions == eager_hooks.positions == steps
    assert torch.equal(replay_hooks.states, eager_hooks.states)
    assert not torch.equal(decode(tiny, ["calm piano"], frames, seed=2, with_audio=False).sequence, eager.sequence)


def test_closed_loop_steering_survives_replay(tiny):
    """studio/control.py's controller (readout probe, PI update, recorded gains) inside the replayed step: the same
    tokens and the same gains as eagerly, and gains that move (the controller acted on every replay)."""
    from probes.bank import ConceptBank
    from studio.control import Controller

    bank = ConceptBank.load(Path(__file__).resolve().parents[2] / "assets" / "banks" / "tiny" / "notes")
    frames = 25
    steps = frames + tiny.num_codebooks - 1
    plan = random_plan(tiny, steps, seed=4)

    def controller():
        return Controller(bank.readout, [0.5, None], [4, 0], [1.0, 0.0], [1.0, 0.0], tiny.frame_rate, steps)

    eager_control, replay_control = controller(), controller()
    with HookManager(tiny, plan, capture_layer=bank.readout_layer, steps=steps, controller=eager_control):
        eager = decode(tiny, ["calm piano"], frames, seed=2, with_audio=False, attention_bucket=8)
    with (
        HookManager(tiny, plan, capture_layer=bank.readout_layer, steps=steps, controller=replay_control),
        torch.inference_mode(),
    ):
        replayed = replayed_decode(tiny, "calm piano", frames, 2, Sampling())
    assert torch.equal(replayed, eager.sequence)
    assert torch.equal(replay_control.gains, eager_control.gains)
    assert len(set(eager_control.gains[:steps, 0].tolist())) > 5 and (eager_control.gains[:, 1] == 1).all()


def test_stock_forward_is_back_after_an_exception_in_the_callback(tiny):
    stack = tiny.model.decoder.model.decoder

    def stop(done, total, tokens):
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        decode(tiny, ["x"], 20, on_step=stop)
    assert "forward" not in stack.__dict__
    codes, _, _ = hf_generate(tiny, ["x"], 10, do_sample=False)
    assert torch.equal(decode(tiny, ["x"], 10, sampling=GREEDY).codes, codes)


def test_only_hooks_marked_replay_safe_allow_a_graph(tiny):
    stack = tiny.model.decoder.model.decoder
    # Asking for hidden states once makes transformers install its (inactive) output recorders for good.
    with torch.inference_mode():
        tiny.model(
            **tiny.tokenizer([""], return_tensors="pt"),
            decoder_input_ids=torch.full((4, 2), 256),
            output_hidden_states=True,
        )
    assert any(m._forward_hooks for m in stack.modules())
    assert decoding._hooks_allow_graph(stack)

    def unmarked(module, args, output):
        return None

    with HookManager(tiny, random_plan(tiny, 10), capture_layer=1, steps=10):  # marks its hooks cuda_graph_safe
        assert decoding._hooks_allow_graph(stack)
        handle = tiny.decoder_layers()[2].self_attn.register_forward_hook(unmarked)
        try:
            assert not decoding._hooks_allow_graph(stack)
        finally:
            handle.remove()
        assert decoding._hooks_allow_graph(stack)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(prompts="calm", frames=10), "list of strings"),
        (dict(prompts=[], frames=10), "list of strings"),
        (dict(frames=0), "positive integer"),
        (dict(frames=2.5), "positive integer"),
        (dict(frames=2000), "seconds must be at most 30 for tiny, got 40"),
        (dict(sampling=Sampling(temperature=0.0)), "temperature"),
        (dict(sampling=Sampling(top_p=1.5)), "top_p"),
        (dict(use_cuda_graph=True), "CUDA device"),
        (dict(attention_bucket=0), "attention_bucket must be a positive integer or None, got 0"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(tiny, kwargs, message):
    args = dict(prompts=["calm"], frames=10) | kwargs
    with pytest.raises(InputError, match=message):
        decode(tiny, args.pop("prompts"), args.pop("frames"), **args)


# ------------------------------------------------------------------------------------------------ GPU only


@pytest.fixture(scope="module", params=["fp32", "fp16"])
def tiny_cuda(request):
    from studio.model import load_model

    return load_model("tiny", device="cuda", precision=request.param)


@pytest.mark.gpu
@pytest.mark.parametrize("sampling", [GREEDY, Sampling(), Sampling(top_k=0, top_p=0.9, temperature=0.8)])
def test_cuda_graph_and_eager_give_identical_tokens(tiny_cuda, sampling):
    """Over 400 steps: four graphs of the default attention window, thirteen of a 32-position one."""
    for bucket in (decoding.ATTENTION_BUCKET, 32):
        args = dict(seed=5, sampling=sampling, attention_bucket=bucket)
        graphed = decode(tiny_cuda, ["calm piano", "drums"], 397, use_cuda_graph=True, **args)
        eager = decode(tiny_cuda, ["calm piano", "drums"], 397, use_cuda_graph=False, **args)
        assert graphed.used_cuda_graph and not eager.used_cuda_graph
        assert torch.equal(graphed.codes, eager.codes)
    assert decode(tiny_cuda, ["calm piano", "drums"], 100, seed=5, sampling=sampling).used_cuda_graph  # the default


@pytest.mark.gpu
def test_greedy_on_cuda_against_transformers(tiny_cuda, record_property):
    """On the GPU the two engines use different attention kernels (a masked static cache against a growing one), so
    their logits may differ in the last bits and greedy tokens may part ways at a near-tie. The first step where they
    do must be a near-tie in transformers' own guided scores; the agreement is recorded (pytest -rA -s shows it)."""
    frames = 100
    codes, _, out = hf_generate(
        tiny_cuda,
        ["calm piano"],
        frames,
        do_sample=False,
        guidance_scale=3.0,
        output_scores=True,
        return_dict_in_generate=True,
    )
    ours = decode(tiny_cuda, ["calm piano"], frames, sampling=GREEDY).codes
    agreement = (ours == codes).float().mean().item()
    record_property("greedy_token_agreement", agreement)
    print(f"{tiny_cuda.dtype}: greedy token agreement with transformers {agreement:.4f}")
    differ = (ours != codes)[0].nonzero()
    if len(differ):
        first = int((differ[:, 0] + differ[:, 1]).argmin())  # codebook k's frame f is predicted at step k + f
        k, f = differ[first].tolist()
        scores = out.scores[k + f][k].float().cpu()
        gap = (scores[codes[0, k, f]] - scores[ours[0, k, f]]).item()
        record_property("first_divergence", {"step": k + f, "score_gap": gap})
        print(f"first divergence at step {k + f} (codebook {k}), score gap {gap:.6f}")
        assert 0 <= gap < (0.05 if tiny_cuda.dtype == torch.float16 else 1e-3)
