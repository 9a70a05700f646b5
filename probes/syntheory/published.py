"""The published SynTheory audio (Hugging Face dataset meganwei/syntheory), when it is reachable or cached.

Needs the optional `datasets` package (not a project requirement). The published clips are 44.1 kHz stereo; they
are converted exactly as generated clips are (mono, 32 kHz, 4 s, peak-normalised) and labelled with our class names.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from studio.errors import SynTheoryError

from .concepts import CLIP_SECONDS, PROGRESSIONS, TIME_SIGNATURES, cap_per_class, get_concept
from .dataset import ConceptArrays, labels_array
from .renderer import SAMPLE_RATE, postprocess
from .theory import INTERVAL_NAMES, MODES, PITCH_CLASS_NAMES

PUBLISHED_DATASET = "meganwei/syntheory"
_CHORD_TYPES = {
    "major": "major",
    "minor": "minor",
    "aug": "augmented",
    "dim": "diminished",
    "augmented": "augmented",
    "diminished": "diminished",
}
_SILENCE_PEAK = 1e-6


def _first(row: Mapping[str, Any], *columns: str) -> Any:
    for column in columns:
        if column in row and row[column] is not None:
            return row[column]
    raise SynTheoryError(f"published row has none of the columns {columns}; its columns are {sorted(row)}")


def _integers(value: Any) -> list[int]:
    return [int(number) for number in re.findall(r"\d+", str(value))]


def published_label(concept: str, row: Mapping[str, Any]) -> tuple[str | float, int]:
    """(label, class_index) in our classes for one row of the published table's metadata columns."""
    spec = get_concept(concept)
    if concept == "notes":
        pitch_class = int(_first(row, "root_note_pitch_class")) % 12
        return PITCH_CLASS_NAMES[pitch_class], pitch_class
    if concept == "intervals":
        semitones = int(_first(row, "interval"))
        return INTERVAL_NAMES[semitones - 1], semitones - 1
    if concept == "scales":
        mode = str(_first(row, "mode"))
        return mode, list(MODES).index(mode)
    if concept == "chords":
        quality = _CHORD_TYPES[str(_first(row, "chord_type"))]
        return quality, spec.classes.index(quality)
    if concept == "progressions":
        text = str(_first(row, "chord_progression", "progression"))
        mode = next(name for name in ("ionian", "aeolian") if name in text)
        index = PROGRESSIONS.index((mode, tuple(_integers(text))))
        return spec.classes[index], index
    if concept == "tempos":
        return float(_first(row, "bpm")), 0
    # time_signatures: stored as "(4, 4)", [4, 4] or split into beats and subdivision
    if "time_signature" in row and row["time_signature"] is not None:
        signature = tuple(_integers(row["time_signature"]))
    else:
        signature = (int(_first(row, "time_signature_beats")), int(_first(row, "time_signature_subdivision")))
    index = TIME_SIGNATURES.index(signature)  # type: ignore[arg-type]
    return spec.classes[index], index


def decode_published_audio(audio: Mapping[str, Any], sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A published clip ({"bytes": ...} or {"path": ...}) -> mono float32 [4 s at sample_rate], peak-normalised."""
    source = io.BytesIO(audio["bytes"]) if audio.get("bytes") else audio.get("path")
    if source is None:
        raise SynTheoryError("published audio entry has neither bytes nor a path")
    raw, rate = sf.read(source, dtype="float32", always_2d=True)
    return postprocess(raw, rate, sample_rate, int(round(CLIP_SECONDS * sample_rate)), _SILENCE_PEAK)


def convert_published_rows(
    concept: str, rows: Iterable[Mapping[str, Any]], sample_rate: int = SAMPLE_RATE, description: dict | None = None
) -> ConceptArrays:
    """Rows of the published table (an "audio" entry plus metadata columns) -> ConceptArrays; silent clips dropped."""
    spec = get_concept(concept)
    clips, values, indices = [], [], []
    for row in rows:
        clip = decode_published_audio(row["audio"], sample_rate)
        if not np.any(clip):
            continue
        label, class_index = published_label(concept, row)
        clips.append(clip)
        values.append(label)
        indices.append(class_index)
    audio = np.stack(clips) if clips else np.zeros((0, int(round(CLIP_SECONDS * sample_rate))), np.float32)
    info = {
        "source": PUBLISHED_DATASET,
        "concept": concept,
        "n_clips": len(clips),
        "sample_rate": sample_rate,
        **(description or {}),
    }
    return ConceptArrays(
        concept,
        audio,
        labels_array(values, indices, spec.is_regression),
        list(spec.classes),
        spec.is_regression,
        sample_rate,
        info,
        [],
    )


def load_published(
    concept: str,
    *,
    split: str = "train",
    cache_dir: str | Path | None = None,
    max_per_class: int | None = None,
    seed: int = 0,
    sample_rate: int = SAMPLE_RATE,
) -> ConceptArrays:
    """The published clips of `concept` from the Hugging Face cache (or the hub when online).

    Raises SynTheoryError when `datasets` is not installed or the dataset is neither reachable nor cached;
    `load_concept` generates the same concepts offline. max_per_class subsamples with `seed` before decoding.
    """
    spec = get_concept(concept)
    if spec.published_config is None:
        raise SynTheoryError(
            f"{concept!r} is not in the published {PUBLISHED_DATASET}; generate it offline with load_concept()"
        )
    try:
        import datasets  # optional: heavy, and only useful with a network or a filled cache
    except ImportError as error:
        raise SynTheoryError(
            f"loading the published {PUBLISHED_DATASET} needs the 'datasets' package (pip install datasets); "
            "without it, generate the concept offline with load_concept()"
        ) from error
    try:
        table = datasets.load_dataset(
            PUBLISHED_DATASET, spec.published_config, split=split, cache_dir=str(cache_dir) if cache_dir else None
        )
    except Exception as error:  # datasets raises many types for "offline", "not found" and "not cached"
        raise SynTheoryError(
            f"the published dataset {PUBLISHED_DATASET} ({spec.published_config}, {split}) is neither reachable nor "
            f"cached here ({type(error).__name__}: {error}); download it once online, or generate the concept "
            "offline with load_concept()"
        ) from error
    table = table.cast_column("audio", datasets.Audio(decode=False))
    if max_per_class is not None:
        metadata = table.remove_columns(["audio"])
        indices = [published_label(concept, row)[1] for row in metadata]
        table = table.select(cap_per_class(indices, max_per_class, seed))
    return convert_published_rows(
        concept, table, sample_rate, {"split": split, "max_per_class": max_per_class, "seed": seed}
    )
