"""A generated training corpus for CPU experiments: speech from espeak-ng in several voices, tones,
chords and noise bursts, written as WAV files in ``train/`` and ``val/`` folders by kind. Every
tenth file is a validation file; with 40 sentences, the validation files' sentences are never spoken
in ``train/``.

    python -m benchmarks.make_corpus runs/corpus --sample_rate 16000 --minutes 10

Without espeak-ng on the PATH the speech is dac_jax's synthetic formant voice (said in the output).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from dac_jax.audio import synth
from dac_jax.audio.resample import resample_long

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A neural audio codec turns sound into a short sequence of numbers.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "Six spoons of fresh snow peas, five thick slabs of blue cheese.",
    "We also need a small plastic snake and a big toy frog for the kids.",
    "She can scoop these things into three red bags, and we will go meet her Wednesday.",
    "Compression at eight kilobits per second keeps most of the detail of speech and music.",
    "How much wood would a woodchuck chuck if a woodchuck could chuck wood?",
    "The rain in Spain stays mainly in the plain.",
    "Numbers like forty two and nineteen eighty four are easy to say.",
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
    "Open the window and let the cold air in before the meeting starts at nine.",
    "My grandmother kept a garden full of tomatoes, beans and tall yellow sunflowers.",
    "Turn left at the second traffic light, then park behind the old library.",
    "The weather report says heavy rain tonight and bright sunshine tomorrow morning.",
    "Every evening the train from the city arrives seven minutes late.",
    "He played the violin for an hour while the children listened quietly.",
    "Bring a warm coat, a flashlight and something to eat on the long walk.",
    "Our team finished the project two weeks ahead of the schedule.",
    "Water boils at one hundred degrees at the level of the sea.",
    "Thank you for calling, please leave a message after the tone.",
]
VOICES = ["en-us", "en-gb", "en-us+f3", "en-gb+m3", "en-us+f5", "en+m7", "de", "fr", "es", "it"]
CHORDS = [(261.63, 329.63, 392.0), (220.0, 277.18, 329.63), (196.0, 246.94, 293.66), (174.61, 220.0, 261.63)]


def espeak(text: str, voice: str, speed: int, pitch: int, sample_rate: int) -> np.ndarray | None:
    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.wav"
        subprocess.run([exe, "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path), text],
                       check=True, capture_output=True)
        audio, rate = sf.read(path, dtype="float32")
    if rate != sample_rate:
        audio = resample_long(audio[None, None], rate, sample_rate)[0, 0]
    return np.asarray(audio, np.float32)


def tones(rng: np.random.Generator, duration: float, sr: int) -> np.ndarray:
    t = np.arange(int(duration * sr)) / sr
    out = np.zeros_like(t)
    for _ in range(rng.integers(1, 4)):
        f = rng.uniform(80, 0.4 * sr)
        out += rng.uniform(0.05, 0.3) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    return out.astype(np.float32)


def chord(rng: np.random.Generator, duration: float, sr: int) -> np.ndarray:
    t = np.arange(int(duration * sr)) / sr
    notes = CHORDS[rng.integers(len(CHORDS))]
    env = np.exp(-t * rng.uniform(0.3, 2.0))
    x = sum(0.15 * env * sum(np.sin(2 * np.pi * k * f * t) / k for k in range(1, 6)) for f in notes)
    return x.astype(np.float32)


def noise_bursts(rng: np.random.Generator, duration: float, sr: int) -> np.ndarray:
    n = int(duration * sr)
    x = np.zeros(n, np.float32)
    for _ in range(rng.integers(2, 6)):
        start, length = rng.integers(0, n), int(rng.uniform(0.05, 0.4) * sr)
        burst = rng.standard_normal(min(length, n - start)) * rng.uniform(0.02, 0.3)
        x[start : start + len(burst)] += (burst * np.hanning(len(burst))).astype(np.float32)
    return x


def make_corpus(root: str | Path, sample_rate: int = 16000, minutes: float = 10.0, seed: int = 0,
                val_fraction: float = 0.1) -> dict[str, int]:
    root = Path(root)
    rng = np.random.default_rng(seed)
    counts: dict[str, int] = {}
    budget = minutes * 60 / 4  # seconds per kind
    have_espeak = shutil.which("espeak-ng") is not None
    for kind in ("speech", "tones", "chords", "noise"):
        total, i = 0.0, 0
        while total < budget:
            split = "val" if i % round(1 / val_fraction) == round(1 / val_fraction) - 1 else "train"
            if kind == "speech":
                text = SENTENCES[i % len(SENTENCES)]
                audio = espeak(text, VOICES[rng.integers(len(VOICES))], int(rng.integers(130, 190)),
                               int(rng.integers(30, 70)), sample_rate) if have_espeak else None
                if audio is None:
                    audio = synth.speech_like(rng.uniform(2, 5), sample_rate, seed=seed * 1000 + i)
            else:
                duration = rng.uniform(2, 5)
                audio = {"tones": tones, "chords": chord, "noise": noise_bursts}[kind](rng, duration, sample_rate)
            audio = audio / max(1e-6, float(np.abs(audio).max())) * rng.uniform(0.3, 0.9)
            folder = root / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            sf.write(folder / f"{kind}_{i:04d}.wav", audio, sample_rate, subtype="PCM_16")
            total += len(audio) / sample_rate
            i += 1
        counts[kind] = i
    counts["espeak"] = int(have_espeak)
    return counts


DEMO_SENTENCE = SENTENCES[39]  # a validation sentence: never in train/, so never heard in training


def demo_input(path: str | Path, sample_rate: int = 16000) -> Path:
    """The demo's input clip (``dac_jax/data/demo_input.wav``): a held-out sentence from espeak-ng,
    then a plucked C major chord; PCM 16 mono."""
    speech = espeak(DEMO_SENTENCE, "en-us", 160, 50, sample_rate)
    if speech is None:
        raise SystemExit("the demo input needs espeak-ng (apt install espeak-ng)")
    t = np.arange(int(1.5 * sample_rate)) / sample_rate
    plucked = sum(0.12 * np.exp(-2 * t) * sum(np.sin(2 * np.pi * k * f * t) / k for k in range(1, 6)) for f in CHORDS[0])
    audio = np.concatenate([speech / np.abs(speech).max() * 0.7, np.zeros(sample_rate // 4), plucked])
    sf.write(path, audio.astype(np.float32), sample_rate, subtype="PCM_16")
    return Path(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root")
    p.add_argument("--sample_rate", type=int, default=16000)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--demo_input", action="store_true", help="write only the demo's input clip, to ROOT (a .wav path)")
    a = p.parse_args()
    if a.demo_input:
        print(f"wrote {demo_input(a.root, a.sample_rate)}")
        return
    counts = make_corpus(a.root, a.sample_rate, a.minutes, a.seed)
    voice = "espeak-ng voices" if counts.pop("espeak") else "the synthetic formant voice (espeak-ng not found)"
    print(f"wrote {sum(counts.values())} files to {a.root} ({counts}); speech from {voice}")


if __name__ == "__main__":
    main()
