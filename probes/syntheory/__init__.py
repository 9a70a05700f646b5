"""SynTheory concept audio, generated offline: MIDI (mido) -> fluidsynth + TimGM6mb.sf2 -> 32 kHz mono clips + labels.

Typical use (the probes pipeline):

    from probes.syntheory import load_concept
    data = load_concept("notes", instruments=[0, 79], octaves=[4, 5])   # 12 x 2 x 2 = 48 clips
    data.audio      # [48, 128000] float32, 4 s at 32 kHz, peak 1
    data.labels     # [48] int64 indices into data.classes ("C", "C#", ...); float32 BPM for "tempos"

Concepts (CONCEPTS): notes, intervals, scales, chords, progressions, tempos (regression), time_signatures, and our
instruments (the General MIDI family of the program playing a note: timbre).
"""

from studio.errors import SynTheoryError

from .concepts import CLIP_SECONDS, CONCEPTS, ConceptSpec, Sample, get_concept, list_samples
from .dataset import ConceptArrays, ConceptDataset, ConceptItem, load_concept
from .instruments import CLEAN_PROGRAMS, CLICK_SOUNDS, GM_PROGRAM_NAMES, TEN_FAMILIES, TONAL_PROGRAMS
from .published import PUBLISHED_DATASET, load_published
from .renderer import DEFAULT_SOUNDFONT, SAMPLE_RATE, RenderConfig, default_cache_dir, read_clip, render, render_clip

__all__ = [
    "CLEAN_PROGRAMS",
    "CLICK_SOUNDS",
    "CLIP_SECONDS",
    "CONCEPTS",
    "ConceptArrays",
    "ConceptDataset",
    "ConceptItem",
    "ConceptSpec",
    "DEFAULT_SOUNDFONT",
    "GM_PROGRAM_NAMES",
    "PUBLISHED_DATASET",
    "RenderConfig",
    "SAMPLE_RATE",
    "Sample",
    "SynTheoryError",
    "TEN_FAMILIES",
    "TONAL_PROGRAMS",
    "default_cache_dir",
    "get_concept",
    "list_samples",
    "load_concept",
    "load_published",
    "read_clip",
    "render",
    "render_clip",
]
