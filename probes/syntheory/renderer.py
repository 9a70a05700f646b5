"""MIDI -> audio with the fluidsynth command line and a General MIDI soundfont, cached on disk.

A clip is rendered by `fluidsynth` in fast-render mode (32-bit float WAV), mixed to mono, resampled to the target
rate when fluidsynth ran at another, trimmed to the MIDI's length (fluidsynth keeps rendering the release and reverb
tail after the last note-off) and peak-normalised to [-1, 1]. Clips whose raw peak is below the silence threshold
(some programs have no sample in their lowest octaves) are stored as zeros.

The cache holds one float WAV per clip at `<cache_dir>/<concept>/<key>.wav`, the key a hash of everything that
determines the audio: concept, parameters, the MIDI bytes, soundfont path and size, rates, gain and RENDERER_VERSION.
Files appear atomically (written under a temporary name, then renamed), so a failed run never leaves a partial clip.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly
from tqdm import tqdm

from studio.errors import SynTheoryError
from studio.files import write_wav

from .concepts import Sample
from .midi import midi_bytes

logger = logging.getLogger(__name__)

INSTALL_HINT = "install it with: apt-get install fluidsynth timgm6mb-soundfont"

DEFAULT_SOUNDFONT = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
SAMPLE_RATE = 32000
# Bump when rendering or post-processing changes what a cached clip holds; old entries are then simply not found.
RENDERER_VERSION = 1
# Raw peak per unit of fluidsynth gain below which a clip counts as silent (audible notes peak near 0.02-0.15).
SILENCE_PEAK_PER_GAIN = 2e-5
_FLUIDSYNTH_TIMEOUT_S = 120


@dataclass(frozen=True)
class RenderConfig:
    """How clips are rendered. `synth_rate` is fluidsynth's own rate (None: render directly at `sample_rate`)."""

    soundfont: Path = DEFAULT_SOUNDFONT
    sample_rate: int = SAMPLE_RATE
    synth_rate: int | None = None
    gain: float = 0.5
    fluidsynth: str = "fluidsynth"

    @property
    def render_rate(self) -> int:
        return self.synth_rate or self.sample_rate


def default_cache_dir() -> Path:
    """$SYNTHEORY_CACHE if set, else `.cache/syntheory` in the repository root (ignored by git)."""
    if os.environ.get("SYNTHEORY_CACHE"):
        return Path(os.environ["SYNTHEORY_CACHE"])
    return Path(__file__).resolve().parents[2] / ".cache" / "syntheory"


def check_renderer(config: RenderConfig) -> str:
    """The fluidsynth executable's path, after checking that it and a readable SoundFont file exist."""
    binary = shutil.which(config.fluidsynth)
    if binary is None:
        raise SynTheoryError(f"the fluidsynth program ({config.fluidsynth!r}) was not found on PATH; {INSTALL_HINT}")
    soundfont = Path(config.soundfont)
    if not soundfont.is_file():
        raise SynTheoryError(
            f"the SoundFont {soundfont} does not exist; {INSTALL_HINT} (or pass another General MIDI .sf2 file)"
        )
    try:
        with open(soundfont, "rb") as handle:
            header = handle.read(12)
    except OSError as error:
        raise SynTheoryError(f"the SoundFont {soundfont} cannot be read ({error}); check its permissions") from error
    if header[:4] != b"RIFF" or header[8:12] != b"sfbk":
        raise SynTheoryError(f"{soundfont} is not a SoundFont 2 file; reinstall it ({INSTALL_HINT})")
    return binary


def run_fluidsynth(binary: str, soundfont: Path, midi_path: Path, wav_path: Path, rate: int, gain: float) -> None:
    """Render `midi_path` to a stereo 32-bit float WAV at `rate` Hz (reverb and chorus at fluidsynth's defaults)."""
    # Loading only the samples a clip uses and not locking memory halve fluidsynth's start-up CPU time.
    command = [
        binary,
        "-n",
        "-i",
        "-q",
        "-g",
        str(gain),
        "-r",
        str(rate),
        "-O",
        "float",
        "-T",
        "wav",
        "-o",
        "synth.dynamic-sample-loading=1",
        "-o",
        "synth.lock-memory=0",
        "-F",
        str(wav_path),
        str(soundfont),
        str(midi_path),
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=_FLUIDSYNTH_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise SynTheoryError(f"fluidsynth could not render {midi_path.name}: {error}") from error
    # fluidsynth exits 0 even when it rejects a file argument, so read its complaints as well.
    rejected = "not a SoundFont or MIDI file" in result.stderr
    if result.returncode != 0 or rejected or not wav_path.is_file():
        detail = result.stderr.strip().splitlines()[-3:]
        raise SynTheoryError(f"fluidsynth failed on {midi_path.name} (exit {result.returncode}): {' | '.join(detail)}")


def postprocess(raw: np.ndarray, raw_rate: int, sample_rate: int, n_samples: int, silence_peak: float) -> np.ndarray:
    """Raw synth output [n] or [n, channels] -> mono float32 [n_samples] at `sample_rate`, peak 1 (or all zeros).

    Channels are averaged; the signal is resampled by the exact rational factor when the rates differ, then cut
    or zero-padded to `n_samples`. A signal whose peak (after trimming) is below `silence_peak` becomes zeros.
    """
    mono = np.asarray(raw, dtype=np.float64)
    if mono.ndim == 2:
        mono = mono.mean(axis=1)
    if raw_rate != sample_rate:
        divisor = gcd(raw_rate, sample_rate)
        mono = resample_poly(mono, sample_rate // divisor, raw_rate // divisor)
    clip = np.zeros(n_samples, dtype=np.float64)
    clip[: min(n_samples, len(mono))] = mono[:n_samples]
    peak = float(np.abs(clip).max()) if n_samples else 0.0
    if peak < silence_peak:
        return np.zeros(n_samples, dtype=np.float32)
    return (clip / peak).astype(np.float32)


def render_clip(sample: Sample, config: RenderConfig | None = None) -> np.ndarray:
    """Render one clip to mono float32 audio [n] at `config.sample_rate`, without the cache."""
    config = config or RenderConfig()
    binary = check_renderer(config)
    return _render_with(binary, sample, config)


def _render_with(binary: str, sample: Sample, config: RenderConfig) -> np.ndarray:
    midi = sample.midi
    with tempfile.TemporaryDirectory(prefix="syntheory-") as scratch:
        midi_path, wav_path = Path(scratch) / "clip.mid", Path(scratch) / "clip.wav"
        midi.save(midi_path)
        run_fluidsynth(binary, Path(config.soundfont), midi_path, wav_path, config.render_rate, config.gain)
        raw, raw_rate = sf.read(wav_path, dtype="float32", always_2d=True)
    n_samples = int(round(midi.length * config.sample_rate))
    return postprocess(raw, raw_rate, config.sample_rate, n_samples, SILENCE_PEAK_PER_GAIN * config.gain)


def _renderer_identity(config: RenderConfig) -> dict:
    soundfont = Path(config.soundfont).resolve()
    return {
        "renderer": RENDERER_VERSION,
        "soundfont": str(soundfont),
        "soundfont_size": soundfont.stat().st_size,
        "sample_rate": config.sample_rate,
        "render_rate": config.render_rate,
        "gain": config.gain,
    }


def _key(sample: Sample, identity: dict) -> str:
    payload = {
        **identity,
        "concept": sample.concept,
        "params": sample.params,
        "midi_sha256": hashlib.sha256(midi_bytes(sample.midi)).hexdigest(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def _write_clip_atomically(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(path, audio, sample_rate, subtype="FLOAT")


def render(
    samples: Sequence[Sample],
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    progress: bool = True,
    config: RenderConfig | None = None,
    on_done: Callable[[int], None] | None = None,
    cluster=None,
) -> list[Path]:
    """Render every sample not yet in the cache, in parallel, and return each sample's cached WAV path (in order).

    workers: fluidsynth processes at once (default: twice the CPU count). Checks fluidsynth and the soundfont before
    anything is written; on a failure, clips finished so far stay cached and nothing partial is left behind.
    on_done: called with 1 as each clip is rendered (a progress bar outside this function; cached clips are not).
    cluster (probes.cluster.Cluster): each clip is rendered by a Ray task and written here as it comes back.
    """
    config = config or RenderConfig()
    binary = check_renderer(config)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    paths = cache_paths(samples, root, config)
    pending = {path: sample for path, sample in zip(paths, samples) if not path.is_file()}
    logger.info("SynTheory: %d clips cached, %d to render in %s", len(paths) - len(pending), len(pending), root)
    if pending and cluster is not None:
        targets, todo = list(pending), list(pending.values())

        def keep(i: int, audio: np.ndarray) -> None:
            _write_clip_atomically(targets[i], audio, config.sample_rate)
            if on_done is not None:
                on_done(1)

        cluster.map(
            render_clip,
            todo,
            desc=f"render {todo[0].concept}",
            describe=lambda sample: f"the {sample.concept} clip {sample.params}",
            shared=config,
            cpus=1,  # a fluidsynth process
            on_result=keep,
        )
    elif pending:
        # fluidsynth idles about half of its short life (start-up, exit), so twice the cores keeps them busy.
        workers = max(1, min(workers or 2 * (os.cpu_count() or 1), len(pending)))
        concept = next(iter(pending.values())).concept
        with (
            ThreadPoolExecutor(max_workers=workers) as pool,
            tqdm(total=len(pending), desc=f"render {concept}", unit="clip", disable=not progress) as bar,
        ):
            futures = [pool.submit(_render_to_cache, binary, sample, path, config) for path, sample in pending.items()]
            try:
                for future in as_completed(futures):
                    future.result()
                    bar.update(1)
                    if on_done is not None:
                        on_done(1)
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    return paths


def cache_paths(
    samples: Sequence[Sample], cache_dir: str | Path | None = None, config: RenderConfig | None = None
) -> list[Path]:
    """Where each sample's clip is cached (whether or not it is rendered yet)."""
    config = config or RenderConfig()
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    identity = _renderer_identity(config)
    return [root / sample.concept / f"{_key(sample, identity)}.wav" for sample in samples]


def _render_to_cache(binary: str, sample: Sample, path: Path, config: RenderConfig) -> None:
    _write_clip_atomically(path, _render_with(binary, sample, config), config.sample_rate)


def read_clip(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A cached clip as mono float32 [n]; SynTheoryError when it is not a mono WAV at `sample_rate`."""
    try:
        audio, rate = sf.read(path, dtype="float32")
    except (OSError, RuntimeError) as error:  # libsndfile errors are RuntimeErrors
        raise SynTheoryError(f"cannot read cached clip {path} ({error}); delete it and render again") from error
    if rate != sample_rate or audio.ndim != 1:
        raise SynTheoryError(
            f"cached clip {path} is {rate} Hz with shape {audio.shape}, expected mono "
            f"{sample_rate} Hz; delete it and render again"
        )
    return audio
