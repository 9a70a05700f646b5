"""Rendered clips of an evaluation, on disk and reused: a run that stops half way picks up where it was.

Each clip is ``<root>/<group>/<stem>-<key>.wav`` (32-bit float, so a reused clip measures exactly as a fresh one) plus
``.json`` beside it: the render record of studio.generate (the recipe as run, with its seed, the audio's facts and the
per-step readout), loadable back into the studio with ``launch.py generate --recipe``. The key hashes everything that
decides the audio: the model signature, the recipe and the directions of the banks its controls use. The JSON is
written after the WAV, so a clip counts as rendered only when both exist.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from probes.cluster import ModelSpec
from studio.errors import EvaluationError
from studio.files import write_json, write_wav
from studio.generate import generate
from studio.recipe import Recipe

log = logging.getLogger(__name__)


@dataclass
class StoredClip:
    """A clip and its render record; `reused` says whether it came from disk."""

    audio: np.ndarray
    sample_rate: int
    record: dict
    path: Path
    reused: bool

    def readout_window(self) -> np.ndarray:
        """[T, C] per-step window readout of the generation (EvaluationError when the recipe had no readout)."""
        readout = self.record.get("readout")
        if not readout:
            raise EvaluationError(f"{self.path} was rendered without a readout; give its recipe a readout")
        return np.array([step["window"] for step in readout["steps"]], dtype=np.float64)


def bank_digest(bank) -> str:
    """sha256 (16 hex) of what a bank contributes to steering: classes, directions and validation scores."""
    digest = hashlib.sha256(json.dumps(list(bank.classes)).encode())
    for tensor in (bank.directions, bank.val_score):
        digest.update(tensor.detach().cpu().float().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class ClipStore:
    """Render-or-reuse for one model under `root`. A recipe steers with the banks registered for its ``bank`` field:
    `banks` for `bank_field` (the run's --bank), and any others added by ``add_banks`` (the methods experiment's)."""

    def __init__(self, root: str | Path, loaded, banks: dict, bank_field: str | None = None):
        self.root = Path(root)
        self.loaded = loaded
        self._banks: dict[str | None, dict] = {}  # a recipe's bank field -> {concept: ConceptBank}
        self._digests: dict[str | None, dict[str, str]] = {}
        self.add_banks(bank_field, banks)
        self.rendered = 0
        self.reused = 0
        self.on_cluster = 0
        self._from_cluster: set[Path] = set()  # rendered on the cluster by this run, not yet read

    def add_banks(self, bank_field: str | None, banks: dict) -> None:
        """Steer the recipes whose ``bank`` field is `bank_field` with `banks` ({concept: ConceptBank})."""
        self._banks[bank_field] = banks
        self._digests[bank_field] = {concept: bank_digest(bank) for concept, bank in banks.items()}

    def bank_set(self, bank_field: str | None) -> dict | None:
        """{concept: bank} registered for `bank_field`, or None."""
        return self._banks.get(bank_field)

    def _digests_of(self, recipe: Recipe) -> dict[str, str]:
        """{concept: digest} of the banks `recipe` steers with."""
        if recipe.bank not in self._digests:
            raise EvaluationError(f"no banks were loaded for the recipe's bank {recipe.bank!r}")
        return self._digests[recipe.bank]

    def key(self, recipe: Recipe) -> str:
        """16 hex of sha256 over model signature, recipe (model field as loaded) and the used banks' digests."""
        as_run = {**recipe.to_dict(), "model": self.loaded.model_id}
        digests = self._digests_of(recipe)
        payload = {
            "model": self.loaded.signature.__dict__,
            "dtype": str(self.loaded.dtype),
            "recipe": as_run,
            "banks": {c: digests[c] for c in recipe.concepts() if c in digests},
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def path(self, recipe: Recipe, group: str, stem: str) -> Path:
        return self.root / group / f"{stem}-{self.key(recipe)}.wav"

    def get(self, recipe: Recipe, group: str, stem: str) -> StoredClip:
        """The clip of `recipe`: read from disk when rendered before, else generated and saved."""
        wav = self.path(recipe, group, stem)
        meta = wav.with_suffix(".json")
        if wav.is_file() and meta.is_file():
            try:
                audio, rate = sf.read(wav, dtype="float32")
                record = json.loads(meta.read_text(encoding="utf-8"))
            except (OSError, RuntimeError, json.JSONDecodeError) as error:
                raise EvaluationError(
                    f"cannot read the stored clip {wav} ({error}); delete it and its .json to render it again"
                ) from error
            fresh = wav in self._from_cluster  # rendered by this run, on the cluster
            self._from_cluster.discard(wav)
            self.rendered, self.reused = self.rendered + fresh, self.reused + (not fresh)
            return StoredClip(audio, rate, record, wav, not fresh)
        audio, rate, record = render_recipe(self.loaded, (recipe, wav.name), self._banks)
        self._save(wav, audio, rate, record)
        self.rendered += 1
        return StoredClip(audio, rate, record, wav, False)

    def render_missing(self, jobs, cluster) -> None:
        """Render the clips of `jobs` (runner.Job) not on disk yet as tasks on `cluster` (probes.cluster.Cluster),
        each saved as it comes back; `get` then reads them, counting them as rendered by this run."""
        todo: dict[Path, Recipe] = {}
        for job in jobs:
            wav = self.path(job.recipe, job.group, job.stem)
            if not (wav.is_file() and wav.with_suffix(".json").is_file()):
                todo[wav] = job.recipe
        paths = list(todo)

        def save(i: int, rendered: tuple) -> None:
            self._save(paths[i], *rendered)
            self._from_cluster.add(paths[i])
            self.on_cluster += 1

        cluster.map(
            render_recipe,
            paths,
            desc="clips",
            describe=lambda wav: f"{wav.relative_to(self.root)} (recipe {json.dumps(todo[wav].to_dict())})",
            payload=lambda wav: (todo[wav], wav.name),
            model=ModelSpec.of(self.loaded),
            shared=self._banks,
            on_result=save,
        )

    @staticmethod
    def _save(wav: Path, audio: np.ndarray, rate: int, record: dict) -> None:
        wav.parent.mkdir(parents=True, exist_ok=True)
        write_wav(wav, audio, rate, subtype="FLOAT")
        write_json(wav.with_suffix(".json"), record)  # last: a clip counts as stored once its record exists


def render_recipe(loaded, item: tuple[Recipe, str], bank_sets: dict) -> tuple[np.ndarray, int, dict]:
    """Generate (recipe, file name) with the banks `bank_sets` holds for the recipe's bank field: the audio, its rate
    and its render record. Also a cluster task."""
    recipe, name = item
    banks = bank_sets[recipe.bank]
    result = generate(loaded, recipe, banks={c: banks[c] for c in recipe.concepts()})
    return result.audio, result.sample_rate, result.record(audio_file=name)
