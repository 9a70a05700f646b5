"""A melody for MusicGen's melody checkpoints: a clip's chromagram, one pitch class per frame, as transformers'
MusicgenMelodyFeatureExtractor computes it (that class needs torchaudio, which is not a dependency here; this is the
same arithmetic in torch).

    32 kHz mono -> power spectrogram (Hann window of 16384 samples, hop 4096, centred, reflect-padded)
    -> 12 chroma bins (transformers' chroma filter bank, C first) -> the loudest bin of each frame, one-hot

So a frame is 128 ms, 30 s make the 235 frames a melody checkpoint reads, and silence reads as C (every bin is zero,
the first wins). studio/decode.py turns the frames into the decoder's conditioning prefix.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from transformers.audio_utils import chroma_filter_bank

from studio.files import read_audio

N_FFT = 16384
HOP = 4096
BINS = 12
SAMPLE_RATE = 32000


@functools.cache
def _filters() -> torch.Tensor:
    bank = chroma_filter_bank(num_frequency_bins=N_FFT, num_chroma=BINS, sampling_rate=SAMPLE_RATE, tuning=0)
    return torch.from_numpy(bank).float()  # [12, N_FFT // 2 + 1]


def chroma(audio: np.ndarray, max_seconds: float = 30.0) -> torch.Tensor:
    """Mono audio at 32 kHz -> one-hot chroma [frames, 12], frames = 1 + samples // 4096 (the first `max_seconds`
    only; a clip shorter than one window is zero-padded to it)."""
    wave = torch.as_tensor(np.asarray(audio, dtype=np.float32)[: int(max_seconds * SAMPLE_RATE)])
    if len(wave) < N_FFT:
        short = N_FFT - len(wave)
        wave = torch.nn.functional.pad(wave, (short // 2, short - short // 2))
    window = torch.hann_window(N_FFT)
    spectrum = torch.stft(wave, N_FFT, HOP, window=window, center=True, pad_mode="reflect", return_complex=True)
    power = spectrum.abs().pow(2) / window.pow(2).sum()  # [bins, frames]
    energy = _filters() @ power  # [12, frames]
    return torch.nn.functional.one_hot(energy.argmax(dim=0), BINS).float()


def read_melody(path: str | Path | None) -> torch.Tensor | None:
    """The chroma [frames, 12] of a melody clip (any rate and channel count: mixed to mono, resampled), None without
    one; InputError naming ``melody`` when the clip cannot be read or is silent."""
    return None if path is None else chroma(read_audio(path, SAMPLE_RATE, "melody"))
