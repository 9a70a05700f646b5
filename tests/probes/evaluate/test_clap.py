"""probes/evaluate/clap.py: the skipped result without a checkpoint, and the real loading and scoring path on a tiny
randomly initialised ClapModel + ClapProcessor written with save_pretrained (save_tiny_clap; its values mean
nothing, shapes and flow are real)."""

import json

import numpy as np
import pytest

from probes.evaluate import EvaluationError
from probes.evaluate.clap import NO_CHECKPOINT_REASON, ClapScorer, clap_similarity, resample, save_tiny_clap

SR = 32000
PROJECTION = 16  # save_tiny_clap's projection width


@pytest.fixture(scope="module")
def tiny_clap(tmp_path_factory):
    return save_tiny_clap(tmp_path_factory.mktemp("clap"))


def clips(n: int, seconds: float, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.3 * rng.standard_normal(int(seconds * SR))).astype(np.float32) for _ in range(n)]


def test_without_a_checkpoint_the_metric_is_skipped_with_its_reason():
    result = clap_similarity(None, clips(2, 0.5), SR, ["a", "b"])
    assert result.status == "skipped" and not result.ok
    assert result.reason == NO_CHECKPOINT_REASON and "--clap" in result.reason
    assert result.similarities is None and result.audio_embeddings is None
    summary = result.summary()
    assert summary["status"] == "skipped" and summary["reason"] == NO_CHECKPOINT_REASON
    json.dumps(summary)


def test_a_missing_or_broken_folder_is_an_error_not_a_skip(tmp_path):
    with pytest.raises(EvaluationError, match="does not exist"):
        clap_similarity(tmp_path / "nowhere", clips(1, 0.5), SR, ["a"])
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(EvaluationError, match="cannot load CLAP"):
        ClapScorer.load(tmp_path)


def test_resample_is_exact_in_length_and_identity_at_the_same_rate():
    audio = clips(1, 1.0)[0]
    assert np.array_equal(resample(audio, SR, SR), audio)
    assert len(resample(audio, 32000, 48000)) == 48000


def test_tiny_clap_scores_through_the_real_code_path(tiny_clap):
    scorer = ClapScorer.load(tiny_clap, device="cpu")
    assert scorer.sample_rate == 48000
    audio = clips(3, 1.0) + clips(1, 11.0, seed=1)  # the last is longer than max_length_s: random fusion crops
    texts = ["warm piano", "warm piano", "fast drums", "warm piano"]
    result = scorer.score(audio, SR, texts)
    assert result.ok and result.reason == "" and result.checkpoint == str(tiny_clap)
    assert result.similarities.shape == (4,) and result.audio_embeddings.shape == (4, PROJECTION)
    np.testing.assert_allclose(np.linalg.norm(result.audio_embeddings, axis=1), 1.0, atol=1e-9)
    # each similarity is the cosine between the clip and its own prompt
    text = scorer.embed_text(["warm piano", "fast drums"])
    np.testing.assert_allclose(result.similarities, (result.audio_embeddings * text[[0, 0, 1, 0]]).sum(1), atol=1e-6)
    # reproducible, including the random crops of the long clip; numpy's global generator is left as it was
    np.random.seed(123)
    before = np.random.random()
    np.random.seed(123)
    again = clap_similarity(tiny_clap, audio, SR, texts, device="cpu")
    assert np.random.random() == before
    np.testing.assert_allclose(again.similarities, result.similarities, atol=1e-6)
    assert again.summary()["n"] == 4
    # the seed does reach the crops: another seed changes the long clip's score only
    other = ClapScorer.load(tiny_clap, device="cpu", seed=1).score(audio, SR, texts).similarities
    np.testing.assert_allclose(other[:3], result.similarities[:3], atol=1e-6)
    assert abs(other[3] - result.similarities[3]) > 1e-6


def test_score_refuses_mismatched_texts(tiny_clap):
    scorer = ClapScorer.load(tiny_clap, device="cpu")
    with pytest.raises(EvaluationError, match="one prompt per clip"):
        scorer.score(clips(2, 0.5), SR, ["only one"])


def test_a_short_clip_scores_the_same_alone_and_in_any_batch(tiny_clap):
    """The fused extractor flags a random clip of an all-short batch as "longer"; the scorer uses the true flag, so a
    clip's score does not depend on the clips batched with it."""
    scorer = ClapScorer.load(tiny_clap, device="cpu")
    audio = clips(3, 0.5, seed=2)
    together = scorer.score(audio, SR, ["a", "a", "a"]).similarities
    for i, clip in enumerate(audio):
        np.testing.assert_allclose(scorer.score([clip], SR, ["a"]).similarities, together[i], atol=1e-6)
    reordered = scorer.score(audio[::-1], SR, ["a", "a", "a"]).similarities
    np.testing.assert_allclose(reordered[::-1], together, atol=1e-6)


def test_a_file_is_refused_with_what_is_expected_instead(tmp_path):
    checkpoint = tmp_path / "630k-audioset-best.pt"
    checkpoint.write_bytes(b"laion-clap weights")
    with pytest.raises(EvaluationError, match="is a file, but --clap expects a folder") as error:
        ClapScorer.load(checkpoint)
    assert "save_pretrained" in str(error.value) and "laion/clap-htsat-unfused" in str(error.value)
    assert "does not exist" not in str(error.value)
