"""The one command that rebuilds the tiny model, stage by stage: `python -m probes tiny-model --out assets/models/tiny`
(both stages; `--stage codec` or `--stage decoder` for one).

Stage "codec": render the clips (data.py), train the codec (codec.py; resumable from its checkpoint in --work), save
it with save_pretrained under <out>/codec, and judge it: basic-pitch (probes/transcribe.py) transcribes the held-out
notes after a pass through the codec, and the share whose pitch class it hears right goes to <out>/codec/report.json
beside the same figure for the original renders.

Stage "decoder": train the text encoder and decoder on that codec's codes (decoder.py; resumable likewise), save the
whole MusicGen under <out>/musicgen, and judge it in <out>/musicgen/report.json: the caption's effect on the held-out
notes' loss, and basic-pitch on notes generated for "a C note on a piano" ... and for "a note on a piano".
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import EncodecModel

from probes import transcribe
from probes.tinymusic.codec import CodecSettings, reconstruct, train_codec
from probes.tinymusic.data import Clips, training_clips
from probes.tinymusic.decoder import (
    DecoderSettings,
    cached_codes,
    caption_effect,
    judge_prompts,
    train_decoder,
    training_seconds,
)
from studio.errors import StudioError
from studio.files import write_json


def judge_codec(codec, notes: Clips, batch: int = 16) -> dict:
    """Pitch-class accuracy of basic-pitch on the held-out notes, reconstructed and original."""
    audio = torch.from_numpy(notes.audio)
    rebuilt = torch.cat([reconstruct(codec, audio[i : i + batch]) for i in range(0, len(audio), batch)]).numpy()
    heard = [transcribe.pitch_class(clip, notes.sample_rate) for clip in tqdm(rebuilt, desc="judging", leave=False)]
    original = [transcribe.pitch_class(clip, notes.sample_rate) for clip in notes.audio]
    return {
        "judge": "basic-pitch 0.4.0 (ICASSP 2022, ONNX): pitch class with the most duration x amplitude",
        "held_out_notes": len(notes.labels),
        "reconstructed_accuracy": sum(h == y for h, y in zip(heard, notes.labels)) / len(notes.labels),
        "original_accuracy": sum(h == y for h, y in zip(original, notes.labels)) / len(notes.labels),
        "misheard": [{"label": y, "heard": h} for h, y in zip(heard, notes.labels) if h != y],
    }


def build_codec(
    out: Path, work: Path, settings: CodecSettings, progress: bool = True, per_class: int | None = None
) -> dict:
    """Train, save and judge the codec; returns the report (also written to <out>/codec/report.json)."""
    reason = transcribe.unavailable()
    if reason:  # before hours of work that could not be judged
        raise StudioError(reason)
    began = time.perf_counter()
    train, held_out = training_clips(progress=progress, per_class=per_class)
    with tqdm(total=settings.steps, desc="codec", unit="step", disable=not progress) as bar:

        def report(done, total, losses, eta):
            bar.n = done
            bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()}, refresh=False)
            bar.refresh()

        codec = train_codec(train.audio, train.sample_rate, work, settings, report)
    folder = out / "codec"
    codec.save_pretrained(folder)
    report_ = {
        "settings": asdict(settings),
        "training_clips": len(train.labels),
        "build_seconds": round(time.perf_counter() - began, 1),
        **judge_codec(codec, held_out),
    }
    write_json(folder / "report.json", report_)
    return report_


def build_decoder(
    out: Path,
    work: Path,
    settings: DecoderSettings,
    progress: bool = True,
    seeds: int = 5,
    per_class: int | None = None,
) -> dict:
    """Train the T5 text encoder and MusicGen decoder on the codes of the codec in <out>/codec (decoder.py; resumable
    from its checkpoint in `work`), save the whole MusicGen with save_pretrained under <out>/musicgen, and judge it:
    how much the caption moves the held-out notes' loss, and basic-pitch on generated notes (report.json)."""
    reason = transcribe.unavailable()
    if reason:
        raise StudioError(reason)
    began = time.perf_counter()
    codec = EncodecModel.from_pretrained(out / "codec").eval()
    train, held = training_clips(progress=progress, per_class=per_class)
    codes = cached_codes(codec, train, work.parent)
    with tqdm(total=settings.steps, desc="decoder", unit="step", disable=not progress) as bar:

        def report(done, total, loss):
            bar.n = done
            bar.set_postfix({"loss": f"{loss:.3f}"}, refresh=False)
            bar.refresh()

        model, history = train_decoder(codec, train, codes, work, settings, report)
    folder = out / "musicgen"
    model.save_pretrained(folder)
    trained = round(time.perf_counter() - began, 1)
    report_ = {
        "settings": asdict(settings),
        "training_clips": len(train.labels),
        "final_loss_mean_last_50": sum(loss for _, loss, _ in history[-50:]) / len(history[-50:]),
        "build_seconds": trained,  # this run's, up to the save: a resumed run's is short
        "training_seconds": training_seconds(history),
        "caption_effect": caption_effect(model, held, cached_codes(codec, held, work.parent)),
        **judge_prompts(model, seeds=seeds),
    }
    write_json(folder / "report.json", report_)
    return report_
