"""Our own MusicGen decode loop over the loaded transformers modules, readable top to bottom.

    prompts --T5--> text states --(enc_to_dec_proj)--> cross-attention states, batch [conditional; unconditional]
        (a melody checkpoint: chroma frames and text states are instead a prefix of P decoder positions, prefilled
        in one forward; the clip's positions then count from P)
    an audio prompt of P frames (continuation): positions 0 .. P - 1 in one forward, the KV cache filled
    for step t in P .. total - 1:                       total = frames + lag - 1 (lag: codebooks per channel)
        the decoder stack computes position t (one new position, a preallocated KV cache holds the earlier ones)
        lm heads -> logits per codebook -> CFG: uncond + (cond - uncond) * scale -> temperature, top-k, top-p
        -> greedy arg-max or a sample from the seeded generator -> the delay pattern fixes the padded slots
        -> the tokens of position t + 1 go straight into the next step's input buffer on the device
    strip the delay pattern -> codes [B, K, frames] -> EnCodec (a stereo model's channels each) -> audio

It follows transformers 5.24's ``MusicgenForConditionalGeneration.generate`` (text encoding, the zeroed unconditional
half with its zero attention mask, the guidance formula, the delay pattern, the order temperature -> top-k -> top-p),
so on the CPU it gives generate's tokens: greedy, and sampled when generate runs after ``torch.manual_seed(seed)``
(tests/studio/test_decode.py checks both). Logits agree to about 1e-7, not bit for bit: our attention runs over a
window of the preallocated cache with a mask (``ATTENTION_BUCKET``), generate's over a growing cache.

Step semantics (shared with studio/hooks.py): step t = 0 is the first decoder forward; decoder step t computes
sequence position t (position 0 is the BOS column) and predicts the tokens of position t + 1; ``on_step(t + 1, total,
sequence)`` is called after it, `sequence` the token grid [B * K, S] on the device (positions up to t + 1 are filled).

Why the decoder stack's ``forward`` is swapped while we decode: steering (studio/hooks.py) is a set of module hooks on
the decoder stack and its layers, so each step calls the stack module itself, once, with the new position only, and
the hooks fire as in transformers' own loop. Its stock ``forward`` cannot be captured in a CUDA graph, though: it reads
the cache length on the host every call (``if seq_len + cache_length > ...`` in the positional embedding). So for the
duration of a decode, the stack instance's ``forward`` is our ``_DecodeProgram.stack_forward``, which reads the step
from a device counter; the layers, their attention and the cache are transformers' own. The caller holds
``LoadedModel.lock`` (nothing else may run the model meanwhile), and the stock forward is back on every exit.

CUDA graphs: on a CUDA device the whole step (stack, heads, guidance, sampling, delay pattern, writing the next input)
is captured once after a few eager warm-up steps and replayed; the step counter, the KV cache, the input buffer and
the generator state live on the device, so replaying needs no Python per layer and no host sync. Eager and graph
paths run the same kernels on the same buffers, so they give the same tokens for the same seed (checked by the GPU
tests of tests/studio/test_decode.py; on the CPU a recorded-and-replayed step stands in for the graph). Module hooks
only run while the graph is captured, not on replay, so a graph is used only when every hook on the decoder declares
itself replay-safe (``cuda_graph_safe = True`` on the hook function or the object it is bound to): it must read the
step from the device (``kwargs["cache"].get_seq_length()`` is a 0-dim device tensor here from step 1 on, the int 0 at
step 0; never turn the tensor into an int) and write captured states into preallocated buffers with device indices.
studio/hooks.py's HookManager does.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from transformers import DynamicCache, EncoderDecoderCache, StaticCache
from transformers.cache_utils import Cache, StaticLayer
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import BaseModelOutputWithPastAndCrossAttentions

from studio.errors import InputError
from studio.hooks import decoder_hooks
from studio.model import FREE, LoadedModel
from studio.sampling import Sampling, filter_scores, guide, sample

log = logging.getLogger(__name__)

StepCallback = Callable[[int, int, torch.Tensor], None]  # (steps done, total steps, the token grid [B * K, S] so far)
WARMUP_STEPS = 3  # eager steps before capture: step 0 fills the cross-attention cache, the next ones settle kernels
ATTENTION_BUCKET = 128  # self-attention reads the cache up to the end of the current bucket of this many positions
_ATTENTION = ("sdpa", "eager")


@dataclass
class DecodeResult:
    """What one decode produced. ``codes`` are EnCodec's input, ``sequence`` the decoder's token grid."""

    codes: torch.Tensor  # [B, K, frames] int64 (CPU): audio codes per prompt and codebook
    sequence: torch.Tensor  # [B, K, total + 1] int64 (CPU): delay-pattern grid, BOS column first, pads kept
    audio: np.ndarray | None  # [B, frames * hop] float32 ([B, frames * hop, 2] stereo); None when with_audio=False
    sample_rate: int
    steps: int  # decoder forwards = frames + lag - 1
    used_cuda_graph: bool  # some steps were CUDA graph replays


# ------------------------------------------------------------------------------------------------ pure pieces

# ------------------------------------------------------------------------------------------------ the program


@dataclass(frozen=True)
class Conditioning:
    """What the decoder batch is conditioned on. Text checkpoints cross-attend: states [R, S, d], transformers' 4-D
    mask for one new position (or None) and the text's own [R, S] mask. A melody checkpoint reads ``prefix`` [R, P, d]
    instead, P decoder positions (chroma frames, then the text) before the clip's, and has no cross-attention."""

    states: torch.Tensor
    mask: torch.Tensor | None
    text_mask: torch.Tensor
    rows: int  # R = B, or 2B with classifier-free guidance
    prefix: torch.Tensor | None = None


def _chroma_states(loaded: LoadedModel, melody: torch.Tensor | None, batch: int, cfg: bool) -> torch.Tensor:
    """A melody checkpoint's chroma positions [R, chroma_length, d], as transformers' generate makes them: the melody's
    one-hot frames [n, 12] repeated to the length (or cut), or without one, every frame C (the checkpoints' "no
    melody"), which is also the unconditional half's."""
    length = loaded.chroma_length
    none = torch.zeros(1, 12, device=loaded.device)
    none[:, 0] = 1
    frames = none if melody is None else melody.to(loaded.device, torch.float32)
    frames = frames.repeat(-(-length // len(frames)), 1)[:length]
    chroma = torch.stack([frames] * batch + [none.expand(length, -1)] * (batch if cfg else 0)).to(loaded.dtype)
    projection = getattr(loaded.model, "audio_enc_to_dec_proj", None)  # present when 12 != the decoder width
    return chroma if projection is None else projection(chroma)


def encode_text(
    loaded: LoadedModel, prompts: Sequence[str], cfg: bool, melody: torch.Tensor | None = None
) -> Conditioning:
    """T5-encode the prompts as transformers' generate does: with CFG the batch gains an unconditional half whose
    states and attention mask are zero; states are projected to the decoder width and zeroed where masked. A melody
    checkpoint's conditioning is its prefix: the chroma of `melody` (studio/melody.py; None: no melody) then the text
    states, unmasked, as transformers passes them."""
    model = loaded.model
    text = loaded.tokenizer(list(prompts), return_tensors="pt", padding=True).to(loaded.device)
    mask = text["attention_mask"]
    states = model.text_encoder(input_ids=text["input_ids"], attention_mask=mask).last_hidden_state
    if cfg:
        states = torch.cat([states, torch.zeros_like(states)])
        mask = torch.cat([mask, torch.zeros_like(mask)])
    projection = getattr(model, "enc_to_dec_proj", None)  # present when the widths differ (see transformers)
    if projection is not None:
        states = projection(states)
    states = states * mask[..., None]
    if loaded.takes_melody:
        prefix = torch.cat([_chroma_states(loaded, melody, len(prompts), cfg), states], dim=1)
        return Conditioning(states=states, mask=None, text_mask=mask, rows=states.shape[0], prefix=prefix)
    stack = loaded.decoder_stack()
    query = states.new_zeros(states.shape[0], 1, stack.config.hidden_size)  # one new position per step
    cross_mask = create_bidirectional_mask(
        config=stack.config, inputs_embeds=query, attention_mask=mask, encoder_hidden_states=states
    )
    return Conditioning(states=states, mask=cross_mask, text_mask=mask, rows=states.shape[0])


def teacher_forced_scores(
    loaded: LoadedModel, prompt: str, sequence: torch.Tensor, guidance_scale: float, stepwise: bool = False
) -> torch.Tensor:
    """The scores a decode samples from (guided logits, before temperature and filters) at every position of a given
    token grid [K, S] (BOS column first): [K, S - 1, V] float32, row t of codebook k scoring position t + 1. Fidelity
    checks run the same tokens through two versions of a model (studio/precision.py).

    One forward of the decoder over all positions by default. ``stepwise`` runs one position per forward with
    transformers' cache, as a decode does: the same scores in fp32 (to about 1e-4), but int8's dynamic quantization
    gives each forward's activations one scale, so only stepwise scores are the ones an int8 decode samples from.
    """
    cfg = guidance_scale > 1
    stack = loaded.decoder_stack()
    with torch.inference_mode():
        conditioning = encode_text(loaded, [prompt], cfg=cfg)
        inputs = sequence[:, :-1].to(loaded.device).repeat(2 if cfg else 1, 1)
        if conditioning.prefix is None:  # a text checkpoint cross-attends to the text
            context = dict(encoder_hidden_states=conditioning.states, encoder_attention_mask=conditioning.text_mask)
        else:  # a melody checkpoint's stack prepends the prefix to the first forward's tokens and returns both
            context = dict(encoder_hidden_states=conditioning.prefix)
        if not stepwise:
            hidden = stack(input_ids=inputs, **context).last_hidden_state
        else:
            text = conditioning.prefix is None
            cache = EncoderDecoderCache(DynamicCache(), DynamicCache()) if text else DynamicCache()
            steps = []
            for t in range(inputs.shape[1]):
                given = context if text or t == 0 else {}  # the melody prefix goes in once, then lives in the cache
                out = stack(input_ids=inputs[:, t : t + 1], cache=cache, use_cache=True, **given)
                steps.append(out.last_hidden_state[:, -1:])
            hidden = torch.cat(steps, dim=1)
        hidden = hidden[:, -inputs.shape[1] :]  # without the melody prefix
        logits = torch.stack([head(hidden) for head in loaded.model.decoder.lm_heads], dim=1).float()  # [R, K, T, V]
        return (guide(logits, guidance_scale) if cfg else logits)[0]


class _WindowedLayer(StaticLayer):
    """transformers' static cache layer (preallocated for the whole clip, written in place) that hands attention only
    its first ``window`` positions: a view, so attention at position t does not read the empty rest of the cache."""

    def __init__(self, max_cache_len: int):
        super().__init__(max_cache_len=max_cache_len)
        self.window = max_cache_len

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        keys, values = super().update(key_states, value_states, *args, **kwargs)
        return keys[:, :, : self.window], values[:, :, : self.window]


class _DecodeProgram:
    """Every buffer a step reads or writes, preallocated on the device, and the step itself (``step``).

    ``position`` (a [1] int64 device tensor) is the step counter: the position this step computes, counted after a
    melody checkpoint's ``prefix`` of P positions (step t computes position P + t; P = 0 for text checkpoints).
    ``inputs`` holds that position's tokens for every decoder row; ``sequence`` the token grid of the conditional rows.

    Self-attention reads the KV cache up to ``window``, the end of the bucket of ``attention_bucket`` positions that
    holds the newest position (None: the whole preallocated cache), so a step's cost grows with its position, not
    with the clip's length. The window is a shape, fixed while a CUDA graph replays: eager steps and graphs change it
    at the same positions (``window_for``), so both attend over the same keys and give the same tokens.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        conditioning: Conditioning,
        frames: int,
        sampling: Sampling,
        generator: torch.Generator | None,
        given: torch.Tensor | None = None,
        attention_bucket: int | None = ATTENTION_BUCKET,
    ):
        model, device = loaded.model, loaded.device
        self.stack = loaded.decoder_stack()
        self.heads = model.decoder.lm_heads
        self.num_codebooks = loaded.num_codebooks
        self.total = loaded.steps_for(frames)
        self.conditioning = conditioning
        self.sampling, self.generator = sampling, generator
        self.copies = 2 if sampling.guidance_scale > 1 else 1
        batch = conditioning.rows // self.copies
        start = loaded.start_token
        if given is None:
            self.pattern = loaded.delay_pattern(frames).to(device).repeat(batch, 1)  # [B*K, S]
        else:
            self.pattern = torch.cat([loaded.delay_pattern(frames, codes) for codes in given]).to(device)
        self.given = 0 if given is None else int(given.shape[-1])  # frames whose codes are given
        self.prefix = 0 if conditioning.prefix is None else int(conditioning.prefix.shape[1])
        positions = self.prefix + self.total
        table = self.stack.embed_positions.weights.shape[0]
        if positions > table:
            raise InputError(
                f"the prompt's conditioning ({self.prefix} positions) and the clip ({self.total} steps) need "
                f"{positions} decoder positions; {loaded.model_id} has {table}: shorten the prompt or the clip"
            )
        self.sequence = self.pattern.clone()  # column 0 is the BOS column: the start token in every codebook
        self.inputs = torch.full((conditioning.rows * self.num_codebooks, 1), start, dtype=torch.long, device=device)
        self.position = torch.zeros(1, dtype=torch.long, device=device)
        self.key_index = torch.arange(positions, device=device)
        self.offsets = torch.arange(max(1, self.given, self.prefix), device=device)  # positions within one forward
        self.masked_value = (
            None
            if self.stack.config._attn_implementation == "sdpa"
            else torch.tensor(torch.finfo(loaded.dtype).min, dtype=loaded.dtype, device=device)
        )
        config = self.stack.config
        self.attention_bucket = attention_bucket
        self.window = positions
        self.self_attention = [_WindowedLayer(positions) for _ in range(config.num_hidden_layers)]
        self.cache = (
            EncoderDecoderCache(
                Cache(layers=self.self_attention),
                StaticCache(config=config, max_cache_len=conditioning.states.shape[1]),
            )
            if self.prefix == 0
            else Cache(layers=self.self_attention)  # a melody checkpoint's layers have no cross-attention
        )

    def window_for(self, step: int) -> int:
        """The cache positions self-attention reads while computing `step` (and any before it in one forward)."""
        end = len(self.key_index)
        if self.attention_bucket is None:
            return end
        return min(end, -(-(self.prefix + step + 1) // self.attention_bucket) * self.attention_bucket)

    def set_window(self, window: int) -> None:
        if window == self.window:  # most steps: the window changes once every ATTENTION_BUCKET positions
            return
        self.window = window
        for layer in self.self_attention:
            layer.window = window

    def stack_forward(
        self, input_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None, **_ignored
    ) -> BaseModelOutputWithPastAndCrossAttentions:
        """The decoder stack for the next n positions (replaces the stack's ``forward`` during a decode): one at a
        step, the given frames' positions at once in the prefill, a melody checkpoint's prefix (`inputs_embeds`) first.

        Same arithmetic as transformers' MusicgenDecoder.forward: the sum of the codebook embeddings plus the
        sinusoidal position, every layer against the KV cache, the final layer norm. The positions and the causal
        mask come from the device counter, so nothing here reads a value back to the host.
        """
        stack = self.stack
        if inputs_embeds is None:
            count = input_ids.shape[-1]
            codes = input_ids.reshape(-1, self.num_codebooks, count)
            embeds = sum(stack.embed_tokens[k](codes[:, k]) for k in range(self.num_codebooks))
        else:
            embeds, count = inputs_embeds, inputs_embeds.shape[1]
        positions = self.position + self.offsets[:count]
        hidden = embeds + stack.embed_positions.weights.index_select(0, positions)
        keys = self.key_index[: self.window]
        visible = (keys <= positions[:, None]).view(1, 1, count, -1)  # query t sees keys 0..t
        causal = visible if self.masked_value is None else torch.where(visible, 0.0, self.masked_value)
        conditioning = self.conditioning
        for layer in stack.layers:
            if self.prefix:  # a melody checkpoint's layer: self-attention only, and it returns (states, weights)
                hidden = layer(hidden, causal, cache=self.cache, use_cache=True)[0]
                continue
            hidden = layer(
                hidden,
                causal,
                conditioning.states,
                encoder_attention_mask=conditioning.mask,
                cache=self.cache,
                use_cache=True,
            )
        return BaseModelOutputWithPastAndCrossAttentions(last_hidden_state=stack.layer_norm(hidden), cache=self.cache)

    def prefill(self) -> None:
        """A melody checkpoint's prefix in one forward, then steps 0 .. G - 1 of the G given frames in one forward
        (every token they predict is given): the KV cache then holds them, as after transformers' prefill of an audio
        prompt. No sampling, so the generator is untouched.
        """
        if self.prefix:
            self.set_window(self.window_for(-1))
            self.stack(inputs_embeds=self.conditioning.prefix, cache=self.cache, use_cache=True)
            self.position.fill_(self.prefix)
        if not self.given:
            return
        tokens = self.sequence[:, : self.given]
        self.set_window(self.window_for(self.given - 1))
        self.stack(input_ids=tokens.repeat(self.copies, 1), cache=self.cache, use_cache=True)
        self.position.fill_(self.prefix + self.given)
        self.inputs.copy_(self.sequence[:, self.given].repeat(self.copies)[:, None])

    def step(self) -> None:
        """One decoder step: position t in, the tokens of position t + 1 written to ``inputs`` and ``sequence``."""
        hidden = self.stack(input_ids=self.inputs, cache=self.cache, use_cache=True).last_hidden_state
        logits = torch.stack([head(hidden) for head in self.heads], dim=1)[:, :, -1].float()  # [R, K, V]
        scores = logits.reshape(-1, logits.shape[-1])
        if self.copies == 2:
            scores = guide(scores, self.sampling.guidance_scale)
        if self.sampling.greedy:
            tokens = scores.argmax(dim=-1)
        else:
            s = self.sampling
            tokens = sample(filter_scores(scores, s.temperature, s.top_k, s.top_p), self.generator)
        column = self.position + (1 - self.prefix)
        fixed = self.pattern.index_select(1, column).squeeze(1)
        tokens = torch.where(fixed == FREE, tokens, fixed)
        self.sequence.index_copy_(1, column, tokens[:, None])
        self.inputs.copy_(tokens.repeat(self.copies)[:, None])
        self.position.add_(1)


@contextmanager
def _stack_forward_replaced(stack: torch.nn.Module, forward: Callable) -> Iterator[None]:
    """Route calls of the decoder stack module (hooks included) to `forward` for the duration of the block."""
    previous = stack.__dict__.get("forward")
    stack.forward = forward
    try:
        yield
    finally:
        if previous is None:
            del stack.forward
        else:
            stack.forward = previous


def _hooks_allow_graph(stack: torch.nn.Module) -> bool:
    """True when every module hook inside the decoder stack (itself included) declares ``cuda_graph_safe = True``."""
    for hook in decoder_hooks(stack):
        owner = getattr(hook, "__self__", None)
        if not (getattr(hook, "cuda_graph_safe", False) or getattr(owner, "cuda_graph_safe", False)):
            return False
    return True


# ------------------------------------------------------------------------------------------------ the loops


def _run_eager(program: _DecodeProgram, on_step: StepCallback | None, last: int | None = None) -> None:
    """Steps until `last` are done (default: all of them), each attending over its window."""
    for done in range(program.given + 1, (program.total if last is None else last) + 1):
        program.set_window(program.window_for(done - 1))
        program.step()
        if on_step is not None:
            on_step(done, program.total, program.sequence)


def _run_graphed(program: _DecodeProgram, on_step: StepCallback | None) -> None:
    """Eager warm-up steps on a side stream, then the step captured once per attention window and replayed.

    Capturing records the step's kernels without running them, so the captured step is the next real step; the
    graphs of all windows share one memory pool (they never run at once). ``on_step`` is called once each replay is
    queued; the GPU may still be working on it (read a device value in the callback if you need it finished).
    """
    device = program.position.device
    warmup = min(program.given + WARMUP_STEPS, program.total)
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        _run_eager(program, on_step, last=warmup)
    torch.cuda.current_stream(device).wait_stream(side)
    pool = torch.cuda.graph_pool_handle()

    def capture(step: Callable[[], None]) -> tuple[Callable[[], None], bool]:
        graph = torch.cuda.CUDAGraph()
        if program.generator is not None:
            graph.register_generator_state(program.generator)
        # thread_local: other threads of a server (e.g. Gradio's) may allocate on the GPU while we capture
        with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
            step()
        return graph.replay, False

    _replay_by_window(program, warmup, on_step, capture)


def _replay_by_window(
    program: _DecodeProgram,
    first: int,
    on_step: StepCallback | None,
    record: Callable[[Callable[[], None]], tuple[Callable[[], None], bool]],
) -> None:
    """Steps after `first` done, through recordings of the step: one per attention window (its length is baked into
    a recording), made when the window changes and replayed for every step inside it. ``record(step)`` returns the
    replay and whether recording ran the step (a CUDA capture does not; the CPU tests' stand-in does)."""
    replay, recorded = None, None
    for done in range(first + 1, program.total + 1):
        window = program.window_for(done - 1)
        ran = False
        if window != recorded:
            program.set_window(window)
            (replay, ran), recorded = record(program.step), window
        if not ran:
            replay()
        if on_step is not None:
            on_step(done, program.total, program.sequence)


def _check_request(
    loaded: LoadedModel,
    prompts: Sequence[str],
    frames: int,
    sampling: Sampling,
    given: torch.Tensor | None,
    attention_bucket: int | None,
) -> None:
    if isinstance(prompts, str) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise InputError("prompts must be a non-empty list of strings")
    if not isinstance(frames, (int, np.integer)) or isinstance(frames, bool) or frames < 1:
        raise InputError(f"frames must be a positive integer, got {frames}")
    config = loaded.model.config.decoder
    if config._attn_implementation not in _ATTENTION:
        raise InputError(
            f"the fast decoder supports attention {' or '.join(_ATTENTION)}, the model uses "
            f"'{config._attn_implementation}'; load it with attn_implementation='sdpa' or use --engine hf"
        )
    loaded.check_seconds(frames / loaded.frame_rate)  # the model's length limit keeps every step inside its positions
    if given is not None:
        shape = (len(prompts), loaded.num_codebooks)
        if given.dim() != 3 or tuple(given.shape[:2]) != shape or not 0 < given.shape[-1] < frames:
            raise InputError(
                f"given codes must be [{shape[0]}, {shape[1]}, P] with 0 < P < frames ({frames}), "
                f"got {list(given.shape)}"
            )
    if attention_bucket is not None and not (isinstance(attention_bucket, int) and attention_bucket >= 1):
        raise InputError(f"attention_bucket must be a positive integer or None, got {attention_bucket!r}")
    if not sampling.greedy and not sampling.temperature > 0:
        raise InputError(f"temperature must be > 0, got {sampling.temperature}")
    if not 0.0 <= sampling.top_p <= 1.0:
        raise InputError(f"top_p must be within [0, 1], got {sampling.top_p}")


def _use_graph(loaded: LoadedModel, requested: bool | None) -> bool:
    stack = loaded.decoder_stack()
    if requested is None:
        graph_ok = loaded.device.type == "cuda" and _hooks_allow_graph(stack)
        if loaded.device.type == "cuda" and not graph_ok:
            log.info("decoder hooks are not marked cuda_graph_safe: decoding eagerly")
        return graph_ok
    if requested and loaded.device.type != "cuda":
        raise InputError(f"use_cuda_graph needs a CUDA device, the model is on {loaded.device}")
    if requested and not _hooks_allow_graph(stack):
        raise InputError(
            "use_cuda_graph: a hook on the decoder is not marked cuda_graph_safe (it would not run on "
            "graph replays); decode eagerly (use_cuda_graph=False) or make the hook replay-safe"
        )
    return bool(requested)


def decode(
    loaded: LoadedModel,
    prompts: Sequence[str],
    frames: int,
    *,
    seed: int = 0,
    sampling: Sampling = Sampling(),
    on_step: StepCallback | None = None,
    use_cuda_graph: bool | None = None,
    with_audio: bool = True,
    given: torch.Tensor | None = None,
    attention_bucket: int | None = ATTENTION_BUCKET,
    melody: torch.Tensor | None = None,
) -> DecodeResult:
    """Generate `frames` audio frames (50 per second) for each prompt; the caller holds ``loaded.lock``.

    Runs frames + K - 1 decoder steps, calling ``on_step(done, total, sequence)`` after each. Sampling draws from a
    torch.Generator on the model's device seeded with `seed` (the global RNG is left alone): the same inputs and seed
    give the same tokens, eagerly or through the CUDA graph. ``use_cuda_graph=None`` uses a graph on CUDA when every
    decoder hook is marked replay-safe (see the module docstring); True insists, False never does.
    ``top_k = 0`` and ``top_p = 0`` switch those filters off (transformers' generate would fall back to the
    generation config's values instead).

    `given` codes [B, K, P] (an audio prompt, ``LoadedModel.encode_audio``) are the first P of the `frames`: they are
    prefilled, ``on_step`` is called from step P + 1 on, and the audio holds all `frames`, the given ones re-decoded.

    ``attention_bucket``: self-attention reads the cache up to the end of the current bucket of this many positions;
    None reads the whole preallocated cache at every step (as before; kept for benchmarks and tests).

    `melody` (a melody checkpoint's, one-hot chroma [n, 12] from studio/melody.py) conditions every prompt; without
    it a melody checkpoint hears none, as transformers' generate without ``input_features``.
    """
    _check_request(loaded, prompts, frames, sampling, given, attention_bucket)
    if melody is not None and not loaded.takes_melody:
        raise InputError(f"a melody is given, but {loaded.model_id} has no melody conditioning")
    graphed = _use_graph(loaded, use_cuda_graph)
    generator = None if sampling.greedy else torch.Generator(device=loaded.device).manual_seed(int(seed))
    with torch.inference_mode():
        conditioning = encode_text(loaded, prompts, cfg=sampling.guidance_scale > 1, melody=melody)
        program = _DecodeProgram(loaded, conditioning, frames, sampling, generator, given, attention_bucket)
        with _stack_forward_replaced(program.stack, program.stack_forward):
            program.prefill()
            (_run_graphed if graphed else _run_eager)(program, on_step)
        sequence = program.sequence.view(len(prompts), loaded.num_codebooks, -1)
        codes = loaded.strip_delay(sequence, frames)
        audio = loaded.decode_codes(codes) if with_audio else None
    # Copies made outside inference mode: ordinary tensors the caller may modify.
    return DecodeResult(
        codes=codes.to("cpu", copy=True),
        sequence=sequence.to("cpu", copy=True),
        audio=audio,
        sample_rate=loaded.sample_rate,
        steps=program.total,
        used_cuda_graph=graphed and program.total > program.given + WARMUP_STEPS,
    )


def warm_up(loaded: LoadedModel) -> None:
    """One short decode, long enough to capture and replay a CUDA graph on a GPU, so that kernels are selected and
    memory is allocated before the first request is served."""
    with loaded.lock:
        decode(loaded, [""], frames=WARMUP_STEPS + 2, sampling=Sampling(guidance_scale=3.0), with_audio=False)
