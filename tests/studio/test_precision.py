"""studio/precision.py and the int8 decoder (studio/model.py quantize_decoder): what int8 swaps, what it keeps, how
close it stays to fp32 on the tiny model, and how ``load(..., "auto")`` decides."""

import pytest
import torch
from torch import nn

import studio.precision as precision
from probes.activations import cache_key, extract_activations
from probes.bank import ConceptBank
from studio.decode import decode, teacher_forced_scores
from studio.errors import ModelLoadError
from studio.files import ASSETS
from studio.model import load_model, quantize_decoder, resolve_precision
from studio.readout import classify
from studio.sampling import Sampling

PROMPT = "a C note on a piano"


@pytest.fixture(scope="module")
def tiny_int8():
    return load_model("tiny", device="cpu", precision="int8")


def _linears(module):
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def _int8(module):
    return [m for m in module.modules() if type(m).__module__.startswith("torch.ao.nn.quantized.dynamic")]


def test_int8_swaps_the_decoder_layers_linears_only(tiny, tiny_int8):
    decoder = tiny_int8.model.decoder
    assert len(_int8(decoder)) == 4 * 10  # per layer q k v o, cross q k v o, fc1 fc2
    assert _linears(decoder) == list(decoder.lm_heads) and len(_linears(tiny.model.decoder)) == 4 * 10 + 4
    assert len(_linears(tiny_int8.model.text_encoder)) == len(_linears(tiny.model.text_encoder))  # runs once a clip
    assert tiny_int8.precision == "int8" and tiny_int8.dtype == torch.float32  # activations, steering, readout
    assert tiny_int8.weights_fingerprint == tiny.weights_fingerprint  # the same checkpoint
    assert cache_key(tiny_int8, "d", "mean") != cache_key(tiny, "d", "mean")  # but not the same activations


def test_restore_puts_the_fp32_layers_back_bit_for_bit():
    loaded = load_model("tiny", device="cpu")
    tokens, free = precision.check_tokens(loaded)
    before = teacher_forced_scores(loaded, PROMPT, tokens, 3.0)
    restore = quantize_decoder(loaded)
    assert not torch.equal(teacher_forced_scores(loaded, PROMPT, tokens, 3.0), before)
    restore()
    assert loaded.precision == "fp32" and torch.equal(teacher_forced_scores(loaded, PROMPT, tokens, 3.0), before)


def test_int8_stays_close_to_fp32_on_the_tokens_fp32_samples(tiny, tiny_int8):
    """The bound the issue asks of a quantized decoder, on the tiny model (bench/generate.py --precision int8 measures
    musicgen-small's shape): teacher-forced on 3 s that fp32 sampled, int8 a position per forward as it decodes, the
    arg-maxes agree at the issue's 0.97 (0.975-0.982 over seeds 0-3) and the distributions are close. The tiny
    model's scores are flat (its top probability averages about 0.35), so its top-1 is a harder test than a
    confident model's. In one forward over all positions int8 gives every position's activations one scale and
    agrees less (0.940-0.957): the scores the check compares must be the decode's."""
    frames = tiny.frames_for(3.0)
    sampling = Sampling(guidance_scale=3.0, top_k=250)
    sampled = decode(tiny, [PROMPT], frames, seed=3, sampling=sampling, with_audio=False).sequence[0]
    reference = teacher_forced_scores(tiny, PROMPT, sampled, 3.0)
    free = precision.predicted_slots(tiny, frames)
    fidelity = precision.compare(reference, precision.int8_scores(tiny_int8, PROMPT, sampled, 3.0), free)
    assert fidelity.slots == 4 * frames
    assert fidelity.top1 >= precision.MIN_TOP1 and fidelity.kl <= 0.005, fidelity.describe()
    one_forward = precision.compare(reference, teacher_forced_scores(tiny_int8, PROMPT, sampled, 3.0), free)
    assert one_forward.top1 < fidelity.top1 and one_forward.kl > fidelity.kl
    assert precision.compare(reference, reference, free).top1 == 1.0


def test_stepwise_scores_are_the_one_forward_scores_in_fp32(tiny):
    """Position by position with the cache, as a decode runs, the fp32 decoder scores what one forward does."""
    tokens, _ = precision.check_tokens(tiny)
    stepwise = teacher_forced_scores(tiny, PROMPT, tokens, 3.0, stepwise=True)
    assert torch.allclose(stepwise, teacher_forced_scores(tiny, PROMPT, tokens, 3.0), atol=1e-3)


def test_int8_reads_the_same_notes_from_the_same_audio(tiny, tiny_int8):
    """The notes bank's readout probe on the pooled states of the same clips (one synthesized note per pitch class):
    the class probabilities move by at most 0.05 and the arg-max class never changes."""
    bank = ConceptBank.load(ASSETS / "banks" / "tiny" / "notes")
    rate = tiny.sample_rate
    t = torch.arange(rate) / rate
    clips = [
        (0.3 * sum(torch.sin(2 * torch.pi * 261.63 * 2 ** (k / 12) * h * t) / h for h in range(1, 5))).numpy()
        for k in range(12)
    ]
    probs = [
        classify(bank.readout, extract_activations(m, clips, progress=False)["mean"][:, bank.readout_layer])
        for m in (tiny, tiny_int8)
    ]
    assert (probs[0] - probs[1]).abs().max() <= 0.05
    assert torch.equal(probs[0].argmax(-1), probs[1].argmax(-1))


def test_auto_keeps_fp32_where_int8_is_not_faster_or_not_faithful(monkeypatch):
    loaded = precision.load("tiny", device="cpu")
    assert loaded.precision == "fp32" and "not faster" in loaded.precision_note
    monkeypatch.setattr(precision, "INT8_MIN_BYTES", 0)  # as if the tiny decoder were large: the check runs
    checked = precision.load("tiny", device="cpu")
    assert checked.precision == "fp32" and "fell short" in checked.precision_note  # the arpeggio's top-1 is 0.944
    assert len(_linears(checked.model.decoder)) == 44 and not _int8(checked.model.decoder)  # fp32 is back
    monkeypatch.setattr(precision, "MIN_TOP1", 0.5)
    kept = precision.load("tiny", device="cpu")
    assert kept.precision == "int8" and "top-1 agreement with fp32 0." in kept.precision_note


def test_a_precision_is_checked_before_any_weights_load():
    assert resolve_precision(None, torch.device("cpu")) == "fp32"
    assert resolve_precision(None, torch.device("cuda")) == "fp16"
    with pytest.raises(ModelLoadError, match="int8 is the CPU path"):
        resolve_precision("int8", torch.device("cuda"))
    with pytest.raises(ModelLoadError, match="unknown precision 'fp8'"):
        load_model("tiny", device="cpu", precision="fp8")


def test_the_command_line_offers_every_precision_and_auto():
    from studio.cli import PRECISIONS as offered
    from studio.model import PRECISIONS

    assert set(offered) == {precision.AUTO, *PRECISIONS}
