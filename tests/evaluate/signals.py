"""Test signals for the evaluator: a chord, a voice, and noise-degraded copies, written with soundfile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from dac_jax.audio import synth


def chord(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    """``[samples, channels]`` float32: an A-minor chord with a slow tremolo (the second channel a
    fifth lower and quieter)."""
    t = np.arange(int(seconds * rate)) / rate
    x = sum(0.2 * np.sin(2 * np.pi * f * t) for f in (220.0, 261.63, 329.63)) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))
    cols = [x, 0.6 * np.roll(x, rate // 100)][:channels]
    return np.stack(cols, axis=1).astype(np.float32)


def voice(seconds: float, rate: int) -> np.ndarray:
    return synth.speech_like(seconds, rate, seed=3).astype(np.float32)[:, None]


def degrade(x: np.ndarray, level: float, seed: int = 0) -> np.ndarray:
    """``x`` plus white noise at ``level`` times its RMS."""
    rng = np.random.default_rng(seed)
    rms = float(np.sqrt(np.mean(x**2)))
    return (x + level * rms * rng.standard_normal(x.shape)).astype(np.float32)


def write(path: Path, x: np.ndarray, rate: int, subtype: str = "FLOAT") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, rate, subtype=subtype)
    return path
