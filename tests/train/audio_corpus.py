"""Real files written with soundfile for the input pipeline's tests, and helpers to read streams.

The corpus' content says where an item came from: three groups of tones told apart by frequency
(:data:`GROUP_FREQS`), files within a group by amplitude; then one file per kind for the comparison
with audiotools, a loud island in silence, silence, and broken files. Everything is seeded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from dac_jax.audio import synth
from dac_jax.train.excerpts import DataConfig

SR = 16000
GROUP_FREQS = (440.0, 1000.0, 2500.0)  # the round-robin groups' tones: multiples of 10 Hz


def tone(freq: float, seconds: float, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_corpus(root: Path) -> dict[str, str]:
    """Folders of real files under ``root``: name -> folder path."""
    dirs = {}

    def folder(name):
        dirs[name] = root / name
        dirs[name].mkdir(parents=True)
        return dirs[name]

    # three groups of tones, told apart by frequency; files within a group by amplitude
    low = folder("low")
    for k, amp in enumerate((0.2, 0.4, 0.6)):
        sf.write(low / f"{k}.wav", tone(440, 1.0, amp=amp), SR, "PCM_16")
    mid = folder("mid")
    sf.write(mid / "a.wav", tone(1000, 1.0), SR, "PCM_16")
    high = folder("high")
    (high / "sub" / "deeper").mkdir(parents=True)  # walked recursively
    sf.write(high / "sub" / "x.flac", tone(2500, 1.0, amp=0.3), SR)
    sf.write(high / "sub" / "deeper" / "y.FLAC", tone(2500, 1.0, amp=0.5), SR)

    # one file per kind, for the comparison with audiotools
    speech = synth.speech_like(1.0, SR, seed=1)
    sf.write(folder("wav16") / "a.wav", speech, SR, "PCM_16")
    sf.write(folder("flac") / "a.flac", synth.speech_like(1.0, SR, seed=2), SR)
    stereo = np.stack([speech, synth.noise(1.0, SR, seed=3, level=0.2)], axis=1)
    sf.write(folder("stereo") / "a.wav", stereo, SR, "FLOAT")
    sf.write(folder("44k") / "a.wav", synth.sine_sweep(1.0, 44100, f0=100.0, f1=7000.0), 44100, "PCM_16")
    sf.write(folder("short") / "a.wav", synth.speech_like(0.05, SR, seed=4), SR, "PCM_16")

    # 2 s of silence with one loud region, [0.8, 1.2) s
    island = np.zeros(2 * SR, np.float32)
    island[int(0.8 * SR):int(1.2 * SR)] = tone(1000, 0.4)
    sf.write(folder("island") / "a.wav", island, SR, "PCM_16")

    sf.write(folder("silence") / "z.wav", np.zeros(SR, np.float32), SR, "PCM_16")

    bad = folder("bad")
    sf.write(bad / "good.wav", tone(440, 1.0), SR, "PCM_16")
    noise_bytes = np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    (bad / "corrupt.wav").write_bytes(noise_bytes)
    (bad / "empty.flac").write_bytes(b"")
    (bad / "notes.txt").write_text("not audio, and not listed: wrong suffix")

    allbad = folder("allbad")
    (allbad / "corrupt.wav").write_bytes(b"RIFF" + bytes(100))
    (allbad / "empty.wav").write_bytes(b"")

    (folder("emptydir") / "readme.txt").write_text("no audio here")

    nan = folder("nan")  # a header that reads fine, samples that do not
    sf.write(nan / "good.wav", tone(440, 1.0), SR, "PCM_16")
    sf.write(nan / "nan.wav", np.full(SR, np.nan, np.float32), SR, "FLOAT")
    return {k: str(v) for k, v in dirs.items()}


def config(groups, **kw) -> DataConfig:
    """A :class:`DataConfig` at :data:`SR` of 0.1 s excerpts, batches of 4, unless ``kw`` says."""
    kw.setdefault("sample_rate", SR)
    kw.setdefault("duration", 0.1)
    kw.setdefault("batch_size", 4)
    return DataConfig(groups=tuple(tuple(g) for g in groups), **kw)


def take(ds, n: int) -> list[np.ndarray]:
    """The first ``n`` batches' audio of a tf.data dataset."""
    it = ds.as_numpy_iterator()
    out = [next(it)["audio"] for _ in range(n)]
    del it  # release the workers now rather than at garbage collection
    return out


def dominant_hz(x: np.ndarray, sr: int = SR) -> float:
    spectrum = np.abs(np.fft.rfft(x.reshape(-1)))
    return float(np.argmax(spectrum) * sr / x.size)
