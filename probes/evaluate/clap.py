"""Prompt adherence: CLAP text-audio cosine similarity, from a CLAP checkpoint folder on this machine.

A checkpoint folder is what transformers' `save_pretrained` writes for a ClapModel plus its ClapProcessor (e.g. a
downloaded laion/clap-htsat-unfused or -fused); a single file, such as a laion-clap ``.pt`` checkpoint, is refused
with a message saying so. It is loaded with `local_files_only=True`: an evaluation never reaches for the hub. Without
a folder the metric is *skipped*, and the result says why, so a table without CLAP columns is never mistaken for one
where CLAP was measured. A folder that is given but cannot be loaded is an error (EvaluationError),
not a skip: the user asked for CLAP.

Audio is resampled from its rate to the processor's (48 kHz for the published checkpoints) by exact rational
polyphase resampling. For clips longer than the processor's `max_length_s`, its feature extractor picks random crops
with numpy's global generator; `ClapScorer` seeds that generator for the call (and restores its state afterwards) so
scores are reproducible. For fused checkpoints the extractor also marks a random clip of a batch without long clips as
"longer" (a training-time workaround), which would make a clip's score depend on its batch-mates; `ClapScorer` sets
that flag to the truth (the clip is longer than `max_length_s`) so every clip scores the same in any batch.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from math import gcd
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from scipy.signal import resample_poly

from studio.errors import EvaluationError

log = logging.getLogger(__name__)

NO_CHECKPOINT_REASON = (
    "no CLAP checkpoint given: prompt adherence was not measured "
    "(pass --clap PATH, a folder holding a ClapModel and ClapProcessor saved with save_pretrained)"
)


@dataclass
class ClapResult:
    """CLAP similarity of each clip to its prompt, or why it was not measured.

    status "ok": similarities [N] (cosine, -1..1) and unit audio_embeddings [N, e] are set, reason is "".
    status "skipped": both are None and reason says why."""

    status: str
    reason: str = ""
    similarities: np.ndarray | None = field(default=None, repr=False)
    audio_embeddings: np.ndarray | None = field(default=None, repr=False)
    checkpoint: str | None = None

    @classmethod
    def skipped(cls, reason: str) -> "ClapResult":
        return cls("skipped", reason)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def summary(self) -> dict:
        """JSON-ready: status, reason, checkpoint and (when measured) the mean similarity and clip count."""
        out: dict = {"status": self.status, "reason": self.reason, "checkpoint": self.checkpoint}
        if self.ok:
            out.update(mean_similarity=float(np.mean(self.similarities)), n=int(len(self.similarities)))
        return out


@contextlib.contextmanager
def _seeded_numpy_global(seed: int):
    """Seed numpy's legacy global generator for the block, then put its previous state back."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _pooled(output) -> torch.Tensor:
    """transformers 5 returns an output object whose pooler_output holds the projected embedding; 4.x a tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def resample(audio: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Mono float32 audio from source_rate to target_rate by rational polyphase resampling (identity if equal)."""
    audio = np.asarray(audio, dtype=np.float32)
    if source_rate == target_rate:
        return audio
    divisor = gcd(int(source_rate), int(target_rate))
    return resample_poly(audio, target_rate // divisor, source_rate // divisor).astype(np.float32)


class ClapScorer:
    """A loaded CLAP model and processor, embedding audio and text into one unit-norm space."""

    def __init__(self, model, processor, device: torch.device, checkpoint: str, seed: int = 0):
        self.model = model
        self.processor = processor
        self.device = device
        self.checkpoint = checkpoint
        self.seed = seed

    @classmethod
    def load(cls, path: str | Path, device: str | None = None, seed: int = 0) -> "ClapScorer":
        """Load ClapModel + ClapProcessor from a local folder; EvaluationError saying what is wrong otherwise."""
        from transformers import ClapModel, ClapProcessor

        folder = Path(path)
        if folder.is_file():  # e.g. a laion-clap .pt checkpoint, which transformers cannot read
            raise EvaluationError(
                f"the CLAP checkpoint {folder} is a file, but --clap expects a folder: a "
                "transformers ClapModel with its ClapProcessor, both saved with save_pretrained "
                "(e.g. of laion/clap-htsat-unfused); laion-clap .pt checkpoints are not read"
            )
        if not folder.is_dir():
            raise EvaluationError(
                f"the CLAP checkpoint folder {folder} does not exist; pass a folder written by "
                "ClapModel.save_pretrained and ClapProcessor.save_pretrained, or leave out --clap"
            )
        target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        try:
            model = ClapModel.from_pretrained(folder, local_files_only=True).to(target).eval()
            processor = ClapProcessor.from_pretrained(folder, local_files_only=True)
        except Exception as error:  # whatever the loaders raise, the user's problem is the folder
            raise EvaluationError(
                f"cannot load CLAP from {folder}: {error}. It needs the model files (config.json, "
                "model.safetensors) and the processor files (preprocessor/processor config and "
                "tokenizer) side by side"
            ) from error
        log.info("CLAP loaded from %s on %s", folder, target)
        return cls(model, processor, target, str(folder), seed)

    @property
    def sample_rate(self) -> int:
        return int(self.processor.feature_extractor.sampling_rate)

    @torch.inference_mode()
    def embed_audio(self, clips: Sequence[np.ndarray], sample_rate: int, batch_size: int = 8) -> np.ndarray:
        """[N, e] float64 unit-norm audio embeddings of mono clips at `sample_rate`."""
        rows = []
        for start in range(0, len(clips), batch_size):
            batch = [resample(clip, sample_rate, self.sample_rate) for clip in clips[start : start + batch_size]]
            with _seeded_numpy_global(self.seed + start):
                inputs = self.processor.feature_extractor(batch, sampling_rate=self.sample_rate, return_tensors="pt")
            if "is_longer" in inputs:  # the true flag, not the extractor's random pick (see the module docstring)
                limit = self.processor.feature_extractor.nb_max_samples
                inputs["is_longer"] = torch.tensor([[len(clip) > limit] for clip in batch])
            inputs = {name: value.to(self.device) for name, value in inputs.items()}
            rows.append(_pooled(self.model.get_audio_features(**inputs)).float().cpu())
        return _unit_rows(torch.cat(rows)) if rows else np.zeros((0, 0))

    @torch.inference_mode()
    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """[N, e] float64 unit-norm text embeddings."""
        if not texts:
            return np.zeros((0, 0))
        inputs = self.processor.tokenizer(list(texts), padding=True, return_tensors="pt").to(self.device)
        return _unit_rows(_pooled(self.model.get_text_features(**inputs)).float().cpu())

    def score(self, clips: Sequence[np.ndarray], sample_rate: int, texts: Sequence[str]) -> ClapResult:
        """Cosine similarity between each clip and its own text (texts[i] belongs to clips[i])."""
        if len(texts) != len(clips):
            raise EvaluationError(f"{len(texts)} texts for {len(clips)} clips; give one prompt per clip")
        if len(clips) == 0:
            raise EvaluationError("no clips to score with CLAP")
        audio = self.embed_audio(clips, sample_rate)
        unique = list(dict.fromkeys(texts))
        text_rows = self.embed_text(unique)
        text = text_rows[[unique.index(t) for t in texts]]
        return ClapResult("ok", "", (audio * text).sum(axis=1), audio, self.checkpoint)


def _unit_rows(x: torch.Tensor) -> np.ndarray:
    rows = x.double().numpy()
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def clap_similarity(
    checkpoint: str | Path | None,
    clips: Sequence[np.ndarray],
    sample_rate: int,
    texts: Sequence[str],
    device: str | None = None,
) -> ClapResult:
    """CLAP similarity of clips to their prompts, or a skipped result (with its reason) when no checkpoint is given."""
    if checkpoint is None:
        return ClapResult.skipped(NO_CHECKPOINT_REASON)
    return ClapScorer.load(checkpoint, device).score(clips, sample_rate, texts)


def save_tiny_clap(folder: str | Path, seed: int = 0) -> Path:
    """Write a randomly initialised CLAP of toy size (fused HTSAT audio tower, one-layer RoBERTa text tower with a
    byte-level tokenizer, 16-wide projections) as a checkpoint folder: offline stand-in for tests and dry runs. Its
    similarities mean nothing; every code path it runs is the real one."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, RobertaTokenizer

    folder = Path(folder)
    vocab = {token: i for i, token in enumerate(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])}
    for symbol in sorted(ByteLevel.alphabet()):
        vocab[symbol] = len(vocab)
    config = ClapConfig(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=37,
            max_position_embeddings=80,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
        ),
        audio_config=dict(
            depths=[1, 1, 1, 1],
            num_attention_heads=[1, 1, 1, 1],
            patch_embeds_hidden_size=8,
            hidden_size=64,
            enable_fusion=True,
            fusion_type="aff_2d",
        ),
        projection_dim=16,
    )
    torch.manual_seed(seed)
    ClapModel(config).save_pretrained(folder)
    ClapProcessor(
        feature_extractor=ClapFeatureExtractor(), tokenizer=RobertaTokenizer(vocab=vocab, merges=[])
    ).save_pretrained(folder)
    return folder
