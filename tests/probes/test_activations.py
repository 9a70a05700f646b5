"""probes/activations.py: delay layout, layer outputs, pooling, batching and the safetensors cache."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from probes.activations import cached_activations, delayed_decoder_input, extract_activations, layer_states


def tones(freqs, seconds=1.0, rate=32000):
    t = np.arange(int(seconds * rate)) / rate
    return [(0.5 * np.sin(2 * np.pi * f * t)).astype(np.float32) for f in freqs]


def test_delay_layout_matches_transformers_delay_pattern(tiny):
    codes = torch.arange(4 * 5).reshape(1, 4, 5)
    ours = delayed_decoder_input(codes, pad_id=256)
    assert ours.shape == (1, 4, 5 + 4 - 1)
    assert ours[0, 2].tolist() == [256, 256, 256, 10, 11, 12, 13, 14]
    bos_then_codes = torch.cat([torch.full((1, 4, 1), 256), codes], dim=-1).reshape(4, -1)
    _, pattern = tiny.model.decoder.build_delay_pattern_mask(bos_then_codes, pad_token_id=256, max_length=5 + 4)
    assert torch.equal(ours.reshape(4, -1), pattern[:, :-1])


def test_layer_outputs_are_the_decoders_hidden_states(tiny):
    audio = torch.from_numpy(np.stack(tones([220, 330])))
    pooled = layer_states(tiny, audio, ("mean", "last", "max"))
    from probes.activations import encode_clips

    codes = encode_clips(tiny, audio)
    ids = delayed_decoder_input(codes, tiny.model.config.decoder.vocab_size).reshape(2 * 4, -1)
    text = tiny.tokenizer(["", ""], return_tensors="pt")
    with torch.inference_mode():
        hidden = tiny.model(**text, decoder_input_ids=ids, output_hidden_states=True).decoder_hidden_states
    # hidden[l + 1] is layer l's output for all but the last layer (the last one is after the final layer norm)
    for layer in range(tiny.num_layers - 1):
        states = hidden[layer + 1]
        assert torch.allclose(pooled["mean"][:, layer], states.mean(1), atol=1e-6)
        assert torch.allclose(pooled["last"][:, layer], states[:, -1], atol=1e-6)
        assert torch.allclose(pooled["max"][:, layer], states.amax(1), atol=1e-6)
    assert pooled["mean"].shape == (2, tiny.num_layers, tiny.hidden_size)


def test_batching_and_mixed_lengths_keep_order_and_values(tiny):
    clips = tones([220, 440], 1.0) + tones([330], 0.5) + tones([550], 1.0)
    together = extract_activations(tiny, clips, ("mean",), batch_size=2, progress=False)["mean"]
    for i, clip in enumerate(clips):
        alone = extract_activations(tiny, [clip], ("mean",), progress=False)["mean"][0]
        assert torch.allclose(together[i], alone, atol=1e-5)
    assert not torch.allclose(together[0], together[1])  # different pitches, different states


def test_bad_pooling_is_refused_before_any_work(tiny):
    with pytest.raises(ValueError, match="unknown pooling 'median'"):
        extract_activations(tiny, tones([220]), ("median",), progress=False)


def test_cache_is_safetensors_and_a_hit_does_not_touch_the_clips(tiny, tmp_path):
    calls = []

    def clips():
        calls.append(1)
        return tones([220, 330], 0.5)

    first = cached_activations(tiny, clips, "two-tones", tmp_path, pooling="mean", progress=False)
    files = sorted(tmp_path.glob("acts-*.safetensors"))
    assert len(files) == 4 and not list(tmp_path.glob("*.tmp"))  # one per pooling and the norms, nothing half-written
    again = cached_activations(tiny, clips, "two-tones", tmp_path, pooling="mean", progress=False)
    last = cached_activations(tiny, clips, "two-tones", tmp_path, pooling="last", progress=False)
    assert calls == [1] and torch.equal(first, again) and not torch.equal(first, last)
    assert any(torch.equal(load_file(f)["activations"], first) for f in files)
    cached_activations(tiny, clips, "other-tones", tmp_path, pooling="mean", progress=False)
    assert calls == [1, 1]


def _truncate(file):
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])


def _wrong_shape(file):
    save_file({"activations": torch.zeros(2, 3, 5)}, str(file))


@pytest.mark.parametrize("damage", [_truncate, _wrong_shape])
def test_unreadable_cache_entry_is_recomputed_and_replaced(tiny, tmp_path, caplog, damage):
    calls = []

    def clips():
        calls.append(1)
        return tones([220, 330], 0.5)

    first = cached_activations(tiny, clips, "two-tones", tmp_path, pooling="mean", progress=False)
    mean_file = next(f for f in tmp_path.glob("acts-*.safetensors") if torch.equal(load_file(f)["activations"], first))
    damage(mean_file)
    with caplog.at_level("WARNING", logger="probes.activations"):
        again = cached_activations(tiny, clips, "two-tones", tmp_path, pooling="mean", progress=False)
    assert calls == [1, 1] and torch.allclose(again, first, atol=1e-6)
    assert any(str(mean_file) in r.getMessage() and "recomputing" in r.getMessage() for r in caplog.records)
    assert torch.equal(load_file(mean_file)["activations"], again)  # replaced by a good file
    assert len(list(tmp_path.glob("acts-*.safetensors"))) == 4 and not list(tmp_path.glob("*.tmp"))
    cached_activations(tiny, clips, "two-tones", tmp_path, pooling="mean", progress=False)
    assert calls == [1, 1]  # and read from cache again
