"""Train the tiny model's text encoder and decoder: a MusicGen with the real architecture (T5 text encoder, MusicGen
decoder, the tiny codec of codec.py, frozen) trained from scratch with teacher forcing on the codec's codes of the
SynTheory renders (data.py), with captions made from their labels.

- Codes: every clip (4 s) is encoded once with the trained codec to [4, 200] codes, cached in <work>/../codes-*.pt.
- Captions (``caption``): "a sustained E note on a nylon guitar", "a minor chord on strings", ... Some leave the
  concept out ("a note on a piano") or the instrument ("a C note"), so that the prompt alone does not decide
  the class; a share is empty (the unconditional rows of classifier-free guidance: zero states, zero mask, as
  studio/decode.py feeds them).
- Loss: cross-entropy over the free slots of the delay-pattern grid (studio.model.apply_delay), 4 codebooks, on
  random crops. Every other step trains on short crops (0.16 s, 8 frames) of a larger batch: a crop's first frames
  can only come from the caption, and a long crop's loss, mostly continuing what it already hears, barely rewards
  reading it. Measured here (one thread): trained on 1.5 s crops only, 2000 steps, the held-out notes' loss on their
  first 4 frames was 3.745 with the right caption against 3.755 with the pitch 6 semitones off, and 2 of 16
  generations had the named pitch (basic-pitch); on 0.16 s crops of notes only, 1500 steps, 3.805 against 4.514,
  and 6 of 8 (guidance 3, 1 s). The mix of both keeps the sustained notes of the long crops: with these defaults
  (3000 steps, all concepts; run once through the same train_decoder, at one thread, ~0.46 s/step when alone) the
  first 8 frames' loss was 3.234 right / 3.491 six semitones off / 3.322 no class / 3.344 empty, and basic-pitch
  heard the named pitch class in 32 of 36 notes of 2 s (12 classes x seeds 0-2, top-k 250, guidance 3); for "a note
  on a piano" it heard 10 of the 12 classes over the same 36 (F# 9, G 7, F 6, E 4, C 3, ...). The committed model
  is that run's bytes, rebuilt by `python -m probes tiny-model --stage decoder`; its report.json holds its figures.
- Deterministic: the batch of step t comes from a generator seeded with (seed, t); checkpoints every
  `checkpoint_every` steps hold the model, optimizer and step, so a resumed run continues the same sequence.
  (tests/probes/tinymusic/test_decoder.py: two runs and an interrupted-then-resumed run give the same bytes; this
  needs T5's dropout off, its global-RNG draws are not in the checkpoint.)
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import EncodecModel, MusicgenForCausalLM, MusicgenForConditionalGeneration, T5EncoderModel

from probes.tinymusic.data import Clips
from probes.transcribe import PITCH_CLASSES, pitch_class
from studio.files import atomic_path
from studio.model import apply_delay, musicgen_config, sampling_defaults, tiny_tokenizer

log = logging.getLogger(__name__)

CHECKPOINT = "decoder-checkpoint.pt"
INSTRUMENT_WORDS = {
    0: "piano",
    4: "electric piano",
    11: "vibraphone",
    24: "nylon guitar",
    40: "violin",
    48: "strings",
    56: "trumpet",
    71: "clarinet",
    73: "flute",
    80: "square lead synth",
}
INTERVAL_WORDS = {
    "m2": "minor second",
    "M2": "major second",
    "m3": "minor third",
    "M3": "major third",
    "P4": "perfect fourth",
    "TT": "tritone",
    "P5": "perfect fifth",
    "m6": "minor sixth",
    "M6": "major sixth",
    "m7": "minor seventh",
    "M7": "major seventh",
    "P8": "octave",
}


@dataclass(frozen=True)
class DecoderSettings:
    steps: int = 3000
    batch: int = 16
    crop_seconds: float = 1.0
    # Every `short_every`-th step trains on `short_batch` crops of `short_crop_seconds` instead (see the module
    # docstring); 0 = never.
    short_every: int = 2
    short_batch: int = 64
    short_crop_seconds: float = 0.16
    lr: float = 1e-3
    lr_warmup: int = 100
    seed: int = 0
    drop_caption: float = 0.15  # share of empty captions (unconditional rows for guidance)
    drop_concept: float = 0.2  # share of captions without the class ("a note on a piano")
    drop_instrument: float = 0.2  # share without the instrument ("a C note")
    text_width: int = 64
    text_layers: int = 2
    width: int = 128
    layers: int = 4
    heads: int = 4
    checkpoint_every: int = 500


def caption(concept: str, label: str, program: int | None, rng: np.random.Generator, s: DecoderSettings) -> str:
    """A caption from the labels; with probabilities from `s` it leaves out the class or the instrument."""
    if rng.random() < s.drop_caption:
        return ""
    if concept == "tempos":
        return f"a click track at {label} bpm" if rng.random() >= s.drop_concept else "a click track"
    keep_class = rng.random() >= s.drop_concept
    keep_inst = rng.random() >= s.drop_instrument
    inst = _on(INSTRUMENT_WORDS[program]) if keep_inst else ""
    if concept == "notes":
        what = f"{label} note" if keep_class else "note"
        adjective = "sustained " if rng.random() < 0.3 else ""
        return f"{_a(adjective + what)} {adjective}{what}{inst}"
    if concept == "chords":
        return f"a {label} chord{inst}" if keep_class else f"a chord{inst}"
    if concept == "intervals":
        name = INTERVAL_WORDS[label]
        return f"{_a(name)} {name} interval{inst}" if keep_class else f"an interval{inst}"
    if concept == "scales":
        return f"a {label} scale{inst}" if keep_class else f"a scale{inst}"
    raise ValueError(concept)


def note_caption(pitch: str | None, instrument: str) -> str:
    """ "an E note on a violin", or "a note on a violin" with no pitch: a notes caption as the model learned them."""
    what = f"{pitch} note" if pitch else "note"
    return f"{_a(what)} {what}{_on(instrument)}"


def _on(instrument: str) -> str:
    return f" on {instrument}" if instrument == "strings" else f" on {_a(instrument)} {instrument}"


def _a(word: str) -> str:
    return "an" if word[0].lower() in "aeiou" or word[:2] in ("E ", "F ", "A ") or word[:3] in ("F# ", "A# ") else "a"


@torch.no_grad()
def encode_all(codec: EncodecModel, audio: np.ndarray, batch: int = 16) -> torch.Tensor:
    """[N, samples] -> [N, K, frames] int16 codes."""
    out = []
    for i in range(0, len(audio), batch):
        x = torch.from_numpy(audio[i : i + batch])[:, None]
        out.append(codec.encode(x).audio_codes[0].to(torch.int16))
    return torch.cat(out)


def cached_codes(codec: EncodecModel, clips: Clips, work: Path) -> torch.Tensor:
    digest = hashlib.sha256()
    for tensor in codec.state_dict().values():
        digest.update(tensor.reshape(-1)[:256].float().numpy().tobytes())
    digest.update(str(clips.audio.shape).encode())
    path = work / f"codes-{digest.hexdigest()[:12]}.pt"
    if path.exists():
        return torch.load(path)
    codes = encode_all(codec, clips.audio)
    work.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(codes, tmp)
    return codes


def new_model(codec: EncodecModel, s: DecoderSettings) -> MusicgenForConditionalGeneration:
    torch.manual_seed(s.seed)
    codebook = codec.config.codebook_size
    config = musicgen_config(
        text=dict(
            vocab_size=384,
            d_model=s.text_width,
            d_kv=s.text_width // 4,
            d_ff=s.text_width * 2,
            num_layers=s.text_layers,
            num_heads=4,
            dropout_rate=0.0,
        ),
        codec=codec.config.to_diff_dict() | {k: v for k, v in codec.config.to_dict().items() if k != "architectures"},
        decoder=dict(
            vocab_size=codebook,
            hidden_size=s.width,
            num_hidden_layers=s.layers,
            num_attention_heads=s.heads,
            ffn_dim=s.width * 4,
            max_position_embeddings=1504,
            dropout=0.0,
        ),
    )
    model = MusicgenForConditionalGeneration(
        config=config,
        text_encoder=T5EncoderModel(config.text_encoder),
        audio_encoder=codec,
        decoder=MusicgenForCausalLM(config.decoder),
    )
    model.generation_config = sampling_defaults(codebook)
    return model


def condition(model, tokenizer, captions: list[str]):
    """T5 states projected to the decoder width, zeroed (with a zero mask) for empty captions, as decode.py does."""
    text = tokenizer(captions, return_tensors="pt", padding=True)
    mask = text["attention_mask"].clone()
    empty = torch.tensor([c == "" for c in captions])
    mask[empty] = 0
    states = model.text_encoder(input_ids=text["input_ids"], attention_mask=text["attention_mask"]).last_hidden_state
    if getattr(model, "enc_to_dec_proj", None) is not None:
        states = model.enc_to_dec_proj(states)
    return states * mask[..., None], mask


def loss_on(model, tokenizer, codes: torch.Tensor, captions: list[str]) -> torch.Tensor:
    """Cross-entropy of the decoder on the delay grid of codes [B, K, F]."""
    pad = model.config.decoder.pad_token_id
    grid = apply_delay(codes, pad)  # [B, K, F + K], column 0 = BOS
    batch, books, length = grid.shape
    states, mask = condition(model, tokenizer, captions)
    inputs = grid[:, :, :-1].reshape(batch * books, length - 1)
    out = model.decoder(input_ids=inputs, encoder_hidden_states=states, encoder_attention_mask=mask)
    logits = out.logits.reshape(batch, books, length - 1, -1)
    target = grid[:, :, 1:].clone()
    target[target == pad] = -100
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1), ignore_index=-100)


def make_batch(codes: torch.Tensor, clips: Clips, step: int, s: DecoderSettings):
    rng = np.random.default_rng([s.seed, step])
    short = s.short_every and step % s.short_every == s.short_every - 1
    batch, seconds = (s.short_batch, s.short_crop_seconds) if short else (s.batch, s.crop_seconds)
    idx = rng.integers(len(codes), size=batch)
    frames = int(round(seconds * 50))
    starts = rng.integers(0, codes.shape[-1] - frames + 1, size=batch)
    crop = torch.stack([codes[i, :, t : t + frames] for i, t in zip(idx, starts)]).long()
    caps = [caption(clips.concepts[i], clips.labels[i], clips.programs[i], rng, s) for i in idx]
    return crop, caps


def train_decoder(codec, clips: Clips, codes, work: Path, s: DecoderSettings, report=None, stop_after=None):
    """Train (or resume) and return (model, history of (step, loss, seconds)); `stop_after` steps ends early (as an
    interruption would, after writing a checkpoint)."""
    codec.requires_grad_(False).eval()
    model = new_model(codec, s)
    tokenizer = tiny_tokenizer()
    params = [p for n, p in model.named_parameters() if not n.startswith("audio_encoder.")]
    opt = torch.optim.AdamW(params, lr=s.lr, betas=(0.9, 0.95), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: min(1.0, (t + 1) / s.lr_warmup) * 0.5 * (1 + np.cos(np.pi * min(t, s.steps) / s.steps))
    )
    start, history = 0, []
    ckpt = work / CHECKPOINT
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        if state["settings"] == asdict(s):
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
            start, history = state["step"], state["history"]
            log.info("resumed at step %d", start)
    model.train()
    model.audio_encoder.eval()
    began = time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    for step in range(start, s.steps if stop_after is None else min(s.steps, stop_after)):
        crop, caps = make_batch(codes, clips, step, s)
        loss = loss_on(model, tokenizer, crop, caps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        history.append((step + 1, float(loss.item()), time.perf_counter() - began))
        if report:
            report(step + 1, s.steps, float(loss.item()))
        if (step + 1) % s.checkpoint_every == 0 or step + 1 in (s.steps, stop_after):
            with atomic_path(ckpt) as tmp:
                torch.save(
                    dict(
                        model=model.state_dict(),
                        opt=opt.state_dict(),
                        sched=sched.state_dict(),
                        step=step + 1,
                        history=history,
                        settings=asdict(s),
                    ),
                    tmp,
                )
    return model.eval(), history


def training_seconds(history: list[tuple[int, float, float]]) -> float:
    """Seconds spent training over every run of a build: each run (a resumed one too) restarts its history clock."""
    total, last = 0.0, 0.0
    for _, _, seconds in history:
        if seconds < last:  # a new run began here
            total += last
        last = seconds
    return round(total + last, 1)


def judge_prompts(model, seeds: int = 5, seconds: float = 2.0, instrument: str = "piano") -> dict:
    """Prompt adherence as the studio samples (studio/decode.py, its default sampling: top-k 250, guidance 3):
    "a C note on a piano" ... for the 12 pitch classes and seeds 0..seeds-1, and "a note on a piano" (no pitch named)
    as often; basic-pitch names the pitch class heard."""
    from studio.decode import decode
    from studio.model import as_loaded
    from studio.sampling import Sampling

    loaded = as_loaded(model, tiny_tokenizer(), "tiny-trained", torch.device("cpu"))
    named = [note_caption(c, instrument) for c in PITCH_CLASSES]
    unnamed = [note_caption(None, instrument)] * len(PITCH_CLASSES)
    frames = int(round(seconds * loaded.frame_rate))
    heard = {"named": [], "unnamed": []}
    for seed in range(seeds):
        for kind, prompts in (("named", named), ("unnamed", unnamed)):
            out = decode(loaded, prompts, frames, seed=seed, sampling=Sampling())
            heard[kind].append([pitch_class(clip, loaded.sample_rate) for clip in out.audio])
    hits = sum(h == c for row in heard["named"] for h, c in zip(row, PITCH_CLASSES))
    unnamed_heard = [h for row in heard["unnamed"] for h in row]
    return {
        "judge": "basic-pitch 0.4.0 (ICASSP 2022, ONNX): pitch class with the most duration x amplitude",
        "sampling": "top-k 250, guidance 3 (the studio's default)",
        "prompt_adherence": hits / (len(PITCH_CLASSES) * seeds),
        "heard_named": heard["named"],
        "unnamed_prompt": unnamed[0],
        "unnamed_heard_counts": {c: unnamed_heard.count(c) for c in [*PITCH_CLASSES, None]},
    }


@torch.no_grad()
def caption_effect(model, held: Clips, codes: torch.Tensor, frames: int = 8) -> dict:
    """Teacher-forced loss of the held-out notes' first `frames` frames under captions that name their pitch class,
    one 6 semitones off, none, or nothing at all: how much the decoder reads the pitch from the text."""
    tokenizer, codes = tiny_tokenizer(), codes[:, :, :frames].long()
    words = [INSTRUMENT_WORDS[p] for p in held.programs]

    def named(shift):
        pitch = [PITCH_CLASSES[(PITCH_CLASSES.index(label) + shift) % 12] for label in held.labels]
        return [note_caption(c, w) for c, w in zip(pitch, words)]

    captions = {
        "right_class": named(0),
        "class_6_semitones_off": named(6),
        "no_class": [note_caption(None, w) for w in words],
        "empty": [""] * len(words),
    }
    losses = {}
    for name, texts in captions.items():
        batches = [loss_on(model, tokenizer, codes[i : i + 32], texts[i : i + 32]) for i in range(0, len(texts), 32)]
        losses[name] = round(float(torch.stack(batches).mean()), 4)
    return {"frames": frames, "held_out_notes": len(held.labels), **losses}
