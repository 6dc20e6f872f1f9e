"""The evaluator's metrics against the original's (``dac.nn.loss`` on ``audiotools.AudioSignal``,
as ``scripts/evaluate.py`` computes them), and the quality scores' ordering on known degradations."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest

from dac_jax.audio.io import read_audio
from dac_jax.errors import AudioError, UsageError
from dac_jax.evaluate import metrics, report
from tests.evaluate.signals import chord, degrade, voice, write
from tests.requires import require_reference

# (name, reference (signal, rate), estimate (level of noise, rate)): mono and stereo, rates that
# need resampling both ways, and pairs whose two files are at different rates
PAIRS = [
    ("chord-44k-mild", chord(1.5, 44100), 44100, 0.05, 44100),
    ("chord-44k-noisy", chord(1.5, 44100), 44100, 0.5, 44100),
    ("stereo-16k", chord(1.2, 16000, channels=2), 16000, 0.2, 16000),
    ("voice-48k-vs-24k", voice(1.3, 48000), 48000, 0.1, 24000),
]


def original_metrics(ref_path, est_path) -> dict[str, float]:
    """``scripts/evaluate.py``'s ``get_metrics`` without ViSQOL: the loss classes with their
    defaults, on both files resampled to 22.05 and 44.1 kHz. SI-SDR negated (see metrics)."""
    require_reference("torch")
    audiotools = require_reference("audiotools")
    loss = require_reference("dac.nn.loss")
    signal, recons = audiotools.AudioSignal(str(ref_path)), audiotools.AudioSignal(str(est_path))
    out = {}
    for sr, k in metrics.RATES.items():
        x, y = signal.clone().resample(sr), recons.clone().resample(sr)
        out[f"mel-{k}"] = loss.MelSpectrogramLoss()(x, y).item()
        out[f"stft-{k}"] = loss.MultiScaleSTFTLoss()(x, y).item()
        out[f"waveform-{k}"] = loss.L1Loss()(x, y).item()
        out[f"sisdr-{k}"] = -loss.SISDRLoss()(x, y).item()
    return out


MAX_REL: dict[str, float] = {}


@pytest.mark.parametrize("name, x, rate, level, est_rate", PAIRS, ids=[p[0] for p in PAIRS])
def test_distances_equal_the_original(tmp_path, name, x, rate, level, est_rate):
    from dac_jax.audio.resample import resample_long

    y = degrade(x, level, seed=1)
    if est_rate != rate:  # the estimate stored at another rate, as a codec's output might be
        y = resample_long(y.T, rate, est_rate).T
    ref_path = write(tmp_path / "ref.wav", x, rate)
    est_path = write(tmp_path / "est.flac", y, est_rate, subtype="PCM_24")
    expected = original_metrics(ref_path, est_path)
    (a, ra), (b, rb) = read_audio(ref_path), read_audio(est_path)
    values, jobs, notes = metrics.pair_metrics(a, ra, b, rb, metrics.DISTANCES)
    assert jobs == [] and sorted(values) == sorted(expected)
    for key, want in expected.items():
        rel = abs(values[key] - want) / abs(want)
        group = key.rsplit("-", 1)[0]
        MAX_REL[group] = max(MAX_REL.get(group, 0.0), rel)
        assert rel < 1e-4, (key, values[key], want)
    print(f"\n{name}: max rel. difference so far per metric: "
          + ", ".join(f"{g} {v:.1e}" for g, v in sorted(MAX_REL.items())))


def test_sisdr_sign_and_lengths():
    x = chord(1.0, 44100)[:, 0]
    values, _, notes = metrics.pair_metrics(x, 44100, degrade(x[:, None], 0.1)[:, 0], 44100, ("sisdr",))
    assert 15 < values["sisdr-44k"] < 25 and notes == []  # 10 % noise: ~20 dB, positive
    values, _, notes = metrics.pair_metrics(x, 44100, x[:-300], 44100, ("waveform",))
    assert values["waveform-44k"] == 0.0 and "lengths differ" in notes[0]
    with pytest.raises(AudioError, match="channel"):
        metrics.pair_metrics(chord(0.5, 16000, 2).T, 16000, x[None], 44100, ("mel",))


def test_parse_groups_and_columns():
    assert metrics.parse_groups("all") == metrics.GROUPS
    assert metrics.parse_groups("sisdr, mel") == ("mel", "sisdr")
    assert metrics.columns(("mel", "pesq")) == ["mel-22k", "pesq-22k", "mel-44k", "pesq-44k"]
    for bad in ("", "mel,loudness"):
        with pytest.raises(UsageError, match="metrics must be"):
            metrics.parse_groups(bad)


@pytest.mark.parametrize("group, package", [("pesq", "pesq"), ("stoi", "pystoi"), ("visqol-speech", "visqol"),
                                            ("visqol-audio", "visqol")])
def test_quality_orders_known_degradations(group, package):
    """No reference implementation is installed: the scores must order clean > noisy > noisier, at
    both evaluation rates. (A voice: on a pure chord, ViSQOL's audio mode scores white noise in the
    chord's empty upper bands ~1.4 whatever its level at 44.1 kHz.)"""
    importlib.import_module(package)  # installed by the dev extra: missing is a failure, not a skip
    x = voice(3.0, 44100)
    scores = {key: [] for key in metrics.RATES.values()}
    for level in (0.01, 0.1, 0.5):
        _, jobs, _ = metrics.pair_metrics(x.T, 44100, degrade(x, level, seed=2).T, 44100, (group,))
        for job in jobs:
            values, notes = metrics.quality(job)
            assert notes == [], notes
            scores[job.key].append(values[f"{group}-{job.key}"])
    print(f"\n{group} at noise 1 %, 10 %, 50 % of the RMS: {scores}")
    for s in scores.values():
        assert s[0] > s[1] > s[2], scores


def test_quality_failure_is_nan_with_a_note():
    importlib.import_module("visqol")
    x = chord(0.3, 44100)  # shorter than ViSQOL's patches
    _, jobs, _ = metrics.pair_metrics(x.T, 44100, degrade(x, 0.1).T, 44100, ("visqol-audio",))
    values, notes = metrics.quality(jobs[0])
    assert math.isnan(values["visqol-audio-22k"]) and notes[0].startswith("visqol-audio-22k: ")


def test_statistics():
    scipy_stats = importlib.import_module("scipy.stats")
    for df in (1, 2, 3, 4, 5, 7, 10, 30, 200):
        assert report.t975(df) == pytest.approx(scipy_stats.t.ppf(0.975, df), rel=1e-3), df
    x = [1.0, 2.0, 4.0, float("nan"), 7.0]
    s = report.statistics(x)
    finite = np.array([1.0, 2.0, 4.0, 7.0])
    half = scipy_stats.t.ppf(0.975, 3) * finite.std(ddof=1) / 2
    assert s["n"] == 4 and s["mean"] == pytest.approx(3.5) and s["std"] == pytest.approx(finite.std(ddof=1))
    assert s["ci95"] == pytest.approx([3.5 - half, 3.5 + half], rel=1e-4)
    assert report.statistics([2.0]) == {"n": 1, "mean": 2.0, "std": None, "ci95": None}
    assert report.statistics([]) == {"n": 0, "mean": None, "std": None, "ci95": None}
