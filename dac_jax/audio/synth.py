"""Deterministic test and demo signals: noise, a sine sweep, and a speech-like formant signal.

Plain numpy, float32, in [-1, 1]. The speech-like signal is a glottal harmonic series with a
wandering pitch, shaped by moving vowel formants, cut into syllables, with fricative noise bursts
between them: enough of speech's structure (harmonics, formants, onsets, silence) to exercise a codec
without shipping a recording.
"""

from __future__ import annotations

import numpy as np

# (F1, F2, F3) in Hz of a few vowels, and their bandwidths
_VOWELS = np.array([[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240], [530, 1840, 2480], [570, 840, 2410]])
_BANDWIDTHS = np.array([90.0, 110.0, 170.0])
_GRID = 16  # samples between evaluations of the slowly moving harmonic weights
_TOP_HARMONIC_HZ = 8000.0


def noise(duration: float, sample_rate: int, seed: int = 0, level: float = 0.1) -> np.ndarray:
    """White Gaussian noise at RMS ``level``."""
    rng = np.random.default_rng(seed)
    return (level * rng.standard_normal(int(duration * sample_rate))).astype(np.float32)


def sine_sweep(duration: float, sample_rate: int, f0: float = 40.0, f1: float | None = None, level: float = 0.5) -> np.ndarray:
    """Exponential sine sweep from ``f0`` to ``f1`` (default: 0.45 of the sample rate)."""
    f1 = 0.45 * sample_rate if f1 is None else f1
    t = np.arange(int(duration * sample_rate)) / sample_rate
    k = np.log(f1 / f0) / duration
    phase = 2 * np.pi * f0 * (np.exp(k * t) - 1) / k
    return (level * np.sin(phase)).astype(np.float32)


def speech_like(duration: float, sample_rate: int, seed: int = 0, level: float = 0.3) -> np.ndarray:
    """A synthetic voice: harmonics of a gliding pitch through moving formants, in syllables."""
    rng = np.random.default_rng(seed)
    n = int(duration * sample_rate)
    t = np.arange(n) / sample_rate
    # pitch: a slow glide plus vibrato, 90-220 Hz
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 2 * np.pi)) + 4 * np.sin(2 * np.pi * 5.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    # formants move between random vowels, one per syllable (~4 per second)
    syllable = 0.25
    n_syl = int(np.ceil(duration / syllable)) + 1
    vowels = _VOWELS[rng.integers(0, len(_VOWELS), n_syl)]
    pos = t / syllable
    i = np.minimum(pos.astype(int), n_syl - 2)
    frac = (pos - i)[:, None]
    formants = (1 - frac) * vowels[i] + frac * vowels[i + 1]  # [n, 3]
    voiced = _harmonics(f0, phase, formants, sample_rate)
    # syllable envelope: voiced nucleus, short gaps
    env = np.clip(np.sin(np.pi * (pos % 1.0)) * 1.6 - 0.3, 0, 1) ** 0.8
    # fricatives in the gaps: high-passed noise
    fric = np.diff(rng.standard_normal(n + 1)) * 0.15 * (env < 0.05)
    x = voiced * env + fric
    x = x / (np.max(np.abs(x)) + 1e-9) * level
    return x.astype(np.float32)


def _harmonics(f0: np.ndarray, phase: np.ndarray, formants: np.ndarray, sample_rate: int) -> np.ndarray:
    """Sum of the harmonics of ``f0`` below ``min(Nyquist, 8 kHz)``, each weighted by the formants'
    resonance at its frequency and a -12 dB/octave glottal roll-off (above 8 kHz they would be
    ~90 dB down).

    The weights move slowly (pitch and formants glide), so they are computed every ``_GRID``
    samples and interpolated linearly; ``exp(i h phase)`` comes from ``exp(i phase)`` by repeated
    multiplication. A 10 s clip at 44.1 kHz takes about a second.
    """
    n = len(f0)
    blocks = -(-n // _GRID)
    knots = np.arange(blocks + 1) * _GRID  # weights at these samples (the last one past the end)
    frac = (np.arange(_GRID) / _GRID)[None, :]
    f0_k = np.interp(knots, np.arange(n), f0)
    formants_k = np.stack([np.interp(knots, np.arange(n), f) for f in formants.T], axis=1)
    top = min(0.5 * sample_rate, _TOP_HARMONIC_HZ)
    lowest, highest = f0.min(), f0.max()
    rotor = np.exp(1j * phase)
    partial = np.ones(n, np.complex128)
    weighted = np.zeros(n, np.complex128)
    for h in range(1, int(top / lowest) + 1):
        partial *= rotor
        fh = h * f0_k
        gain = np.sum(1.0 / (1.0 + ((fh[:, None] - formants_k) / _BANDWIDTHS) ** 2), axis=1) / h
        gain = ((1 - frac) * gain[:-1, None] + frac * gain[1:, None]).reshape(-1)[:n]
        if h * highest >= top:
            gain[h * f0 >= top] = 0.0
        weighted += gain * partial
    return weighted.imag


def example_clip(duration: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """Speech-like voice over a soft chord: the demo's example clip."""
    t = np.arange(int(duration * sample_rate)) / sample_rate
    chord = sum(0.04 * np.sin(2 * np.pi * f * t) for f in (220.0, 277.18, 329.63))
    return (speech_like(duration, sample_rate, seed) + chord).astype(np.float32)
