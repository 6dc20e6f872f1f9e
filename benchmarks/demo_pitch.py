"""Does a model keep the pitch of speech? pYIN on the input and on its round trip, frame by frame.

    .venv/bin/python -m benchmarks.demo_pitch WEIGHTS [WEIGHTS ...] [--files runs/corpus/val/speech]

For each model (a dac-jax folder, a training run's save_path: its best checkpoint, or
``RUN/checkpoints/STEP``)
the demo clip's sentence (``dac_jax/data/demo_input.wav``, its first 3.6 s, before the chord) and
every file of ``--files`` go through the codec's encode and decode at the model's rate; librosa's
pYIN (60-400 Hz, its default frames) then runs on the input and on the reconstruction at 16 kHz.
Reported per model: the input's voiced frames, the reconstruction's, those voiced in both, and of
those the share within 5 % of the input's pitch (a semitone is 5.9 %) and the median error in cents.
A hoarse, whispered reconstruction has few voiced frames; a right-sounding one has most of the
input's, at its pitch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import dac_jax

RATE = 16000
SENTENCE_SECONDS = 3.6  # the demo clip's sentence; the chord follows


def _read(path: Path, rate: int) -> np.ndarray:
    from dac_jax.audio import io, resample

    audio, sr = io.read_audio(path)
    mono = audio.mean(axis=0)
    return np.asarray(resample.resample_frac(mono, sr, rate)) if sr != rate else mono


def pitch(x: np.ndarray) -> np.ndarray:
    """pYIN's f0 per frame (NaN where unvoiced)."""
    import librosa

    f0, voiced, _ = librosa.pyin(x, fmin=60.0, fmax=400.0, sr=RATE)
    return np.where(voiced, f0, np.nan)


def compare(reference: np.ndarray, estimate: np.ndarray) -> dict[str, float]:
    n = min(len(reference), len(estimate))
    ref, est = reference[:n], estimate[:n]
    both = np.isfinite(ref) & np.isfinite(est)
    cents = 1200 * np.abs(np.log2(est[both] / ref[both]))
    return {"voiced_in": int(np.isfinite(ref).sum()), "voiced_out": int(np.isfinite(est).sum()),
            "both": int(both.sum()), "within_5pct": int((np.abs(est[both] / ref[both] - 1) < 0.05).sum()),
            "median_cents": float(np.median(cents)) if cents.size else float("nan")}


def round_trip(codec, x: np.ndarray) -> np.ndarray:
    from dac_jax.audio import resample

    sr = codec.sample_rate
    audio = np.asarray(resample.resample_frac(x, RATE, sr)) if sr != RATE else x
    recon = np.asarray(codec.decode(codec.encode(audio[None, None])))[0, 0]
    return np.asarray(resample.resample_frac(recon, sr, RATE)) if sr != RATE else recon


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", nargs="+", help="dac-jax folders, training runs (best checkpoint) or RUN/checkpoints/STEP")
    parser.add_argument("--files", default="runs/corpus/val/speech", help="a folder of speech files ('' for none)")
    args = parser.parse_args()

    root = Path(__file__).resolve().parents[1]
    clips = {"demo sentence": _read(root / "dac_jax" / "data" / "demo_input.wav", RATE)[: int(SENTENCE_SECONDS * RATE)]}
    if args.files:
        for f in sorted(Path(args.files).glob("*.wav")):
            clips[f.name] = _read(f, RATE)
    inputs = {name: pitch(x) for name, x in clips.items()}
    print("| weights | clips | voiced frames: input / reconstruction / both | within 5 % of the input's pitch "
          "| median error (cents) | demo sentence: both / within 5 % |")
    print("|---|---|---|---|---|---|")
    for spec in args.weights:
        codec = dac_jax.load_model(spec)
        rows = {name: compare(inputs[name], pitch(round_trip(codec, x))) for name, x in clips.items()}
        total = {k: sum(r[k] for r in rows.values()) for k in ("voiced_in", "voiced_out", "both", "within_5pct")}
        cents = np.nanmedian([r["median_cents"] for r in rows.values()])
        demo = rows["demo sentence"]
        share = 100 * total["within_5pct"] / max(total["both"], 1)
        print(f"| {spec} | {len(rows)} | {total['voiced_in']} / {total['voiced_out']} / {total['both']} | "
              f"{total['within_5pct']} ({share:.0f} % of both) | {cents:.0f} | {demo['both']} / {demo['within_5pct']} |",
              flush=True)


if __name__ == "__main__":
    main()
