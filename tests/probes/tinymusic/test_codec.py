"""probes/tinymusic/codec.py: the codec trains deterministically, resumes to the same bytes, quantizes as
transformers' EncodecModel does, and the committed codec keeps pitch audible to an outside transcriber."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import EncodecModel

from probes import transcribe
from probes.tinymusic.codec import CodecSettings, new_codec, quantize, reconstruct, train_codec

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "assets" / "models" / "tiny" / "codec"
RATE = 32000
FEW = CodecSettings(steps=4, batch=2, crop_seconds=0.1, checkpoint_every=2)


def tones(count: int = 4, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return np.stack([0.3 * np.sin(2 * np.pi * (220 + 55 * i) * t) for i in range(count)]).astype(np.float32)


def states_equal(a: EncodecModel, b: EncodecModel) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_training_is_deterministic_and_moves_the_weights(tmp_path):
    first = train_codec(tones(), RATE, tmp_path / "a", FEW)
    second = train_codec(tones(), RATE, tmp_path / "b", FEW)
    assert states_equal(first, second)
    assert not torch.equal(first.decoder.layers[-1].conv.bias, new_codec(0).decoder.layers[-1].conv.bias)


def test_an_interrupted_run_resumes_to_the_same_bytes(tmp_path):
    whole = train_codec(tones(), RATE, tmp_path / "whole", FEW)

    def stop_after_three(done, total, losses, eta):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_codec(tones(), RATE, tmp_path / "cut", FEW, stop_after_three)
    assert torch.load(tmp_path / "cut" / "codec-checkpoint.pt", weights_only=True)["step"] == 2
    assert states_equal(whole, train_codec(tones(), RATE, tmp_path / "cut", FEW))
    with pytest.raises(ValueError, match="other settings"):
        train_codec(tones(), RATE, tmp_path / "cut", replace(FEW, lr=1e-4))


def test_quantizing_matches_encodec_models_own_codes(tmp_path):
    codec = train_codec(tones(), RATE, tmp_path, FEW)
    audio = torch.from_numpy(tones(2))
    with torch.no_grad():
        latents = codec.encoder(audio[:, None, :])
        ours, _ = quantize(codec, latents)
        codes = codec.quantizer.encode(latents, bandwidth=codec.config.target_bandwidths[0])
        theirs = codec.quantizer.decode(codes)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    assert reconstruct(codec, audio).shape == audio.shape


@pytest.mark.skipif(
    not COMMITTED.is_dir(),
    reason=f"no committed codec at {COMMITTED}: build it with `python -m probes tiny-model --stage codec`",
)
@pytest.mark.skipif(transcribe.unavailable() is not None, reason=str(transcribe.unavailable()))
def test_the_committed_codec_keeps_the_pitch_class_audible():
    from probes.syntheory import list_samples, read_clip, render
    from probes.tinymusic.data import INSTRUMENTS, NOTE_OCTAVES, held_out

    report = json.loads((COMMITTED / "report.json").read_text())
    assert report["reconstructed_accuracy"] >= 0.9 and report["held_out_notes"] >= 90
    codec = EncodecModel.from_pretrained(COMMITTED).eval()
    samples = list_samples("notes", instruments=INSTRUMENTS, octaves=NOTE_OCTAVES)
    picked = [sample for sample, held in zip(samples, held_out(len(samples))) if held][:12]
    audio = np.stack([read_clip(path) for path in render(picked, progress=False)])
    heard = [transcribe.pitch_class(clip, RATE) for clip in reconstruct(codec, torch.from_numpy(audio)).numpy()]
    expected = [sample.label for sample in picked]
    assert sum(h == e for h, e in zip(heard, expected)) >= 10, list(zip(heard, expected))
