"""The original DAC's evaluation metrics (``scripts/evaluate.py``), computed without torch.

Per pair of signals (a reference and an estimate, each at its own rate, ``[channels, samples]``)
and per evaluation rate ``sr`` in :data:`RATES` (22050 and 44100 Hz, keyed ``22k`` / ``44k``), both
are resampled to ``sr`` with julius' algorithm (:func:`dac_jax.audio.resample.resample_long`, as
``AudioSignal.resample``) and compared:

==================  ==========================================================================
``mel-{k}``         ``MelSpectrogramLoss()`` with the CLASS defaults, as evaluate.py builds it:
                    windows 2048 / 512 (hop w/4), 150 / 80 Slaney mels, pow 2, mag + log L1
                    (:data:`MEL`; lower is better). Not the training recipe's 7-scale loss.
``stft-{k}``        ``MultiScaleSTFTLoss()`` class defaults (:data:`STFT`; lower is better)
``waveform-{k}``    ``L1Loss()``: mean absolute sample difference (lower is better)
``sisdr-{k}``       scale-invariant SDR in dB, HIGHER is better. The original's evaluate.py writes
                    ``SISDRLoss()``'s value, which is the NEGATIVE SI-SDR: ours is ``-`` that
                    (the sign of the published 10.75 dB). Channels are concatenated per file.
``visqol-audio-{k}``  ViSQOL v3 audio mode (48 kHz, SVR model), MOS-LQO 1..5, higher is better
``visqol-speech-{k}`` ViSQOL speech mode (16 kHz), MOS-LQO
``pesq-{k}``        wide-band PESQ at 16 kHz (as ``audiotools.metrics.quality.pesq``); not in
                    the original's script, an addition for speech
``stoi-{k}``        STOI (``pystoi``) at 16 kHz; an addition for speech
==================  ==========================================================================

The four distances are computed here in numpy (float64; the settings are
:mod:`dac_jax.train.losses`' configs, the window and mel filters :mod:`dac_jax.audio.spectral`'s)
and equal ``dac.nn.loss``'s within 1e-4 relative (tests/evaluate); the quality scores (ViSQOL, PESQ, STOI) come from optional
packages (``pip install dac-jax[eval]``: ``visqol-python``, ``pesq``, ``pystoi``), run on float64
mono copies (``to_mono`` = the channel mean, then resampled to 48 / 16 kHz, as audiotools does),
and are omitted with a one-line notice where their package is missing (:func:`missing_quality`).

Two deliberate differences from the original script: ViSQOL is given the reference as the
reference (the script passes ``visqol(x, y)`` with ``x`` the input, which audiotools reads as the
*estimate*, so it scores the input against the reconstruction); and signals whose lengths differ
(two folders of files) are compared over the shorter length (the original fails on them).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import warnings
from typing import Iterable, Optional

import numpy as np

from dac_jax.audio.resample import resample_long
from dac_jax.audio.spectral import get_window, mel_filters
from dac_jax.errors import AudioError, UsageError
from dac_jax.train.losses import MelLossConfig, STFTLossConfig

#: evaluation rates of the original's script, with their column suffixes
RATES: dict[int, str] = {22050: "22k", 44100: "44k"}
#: ``MelSpectrogramLoss()`` / ``MultiScaleSTFTLoss()`` as the script constructs them (class defaults)
MEL = MelLossConfig()
STFT = STFTLossConfig()
#: the rates the quality metrics run at (audiotools' ``visqol`` audio / speech modes, ``pesq``)
AUDIO_RATE, SPEECH_RATE = 48000, 16000

#: every metric group, in column order; ``DISTANCES`` are computed here, the rest in :func:`quality`
DISTANCES = ("mel", "stft", "waveform", "sisdr")
QUALITY = ("visqol-audio", "visqol-speech", "pesq", "stoi")
GROUPS = DISTANCES + QUALITY
#: the package each quality metric needs (its import name, its pip name)
PACKAGES = {"visqol-audio": ("visqol", "visqol-python"), "visqol-speech": ("visqol", "visqol-python"),
            "pesq": ("pesq", "pesq"), "stoi": ("pystoi", "pystoi")}
#: which way each metric is better (for the reports)
HIGHER_IS_BETTER = {"mel": False, "stft": False, "waveform": False, "sisdr": True, "visqol-audio": True,
                    "visqol-speech": True, "pesq": True, "stoi": True}


def parse_groups(text: str) -> tuple[str, ...]:
    """``--metrics``: comma-separated groups of :data:`GROUPS`, or ``all``; in column order."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if names == ["all"]:
        return GROUPS
    unknown = [n for n in names if n not in GROUPS]
    if unknown or not names:
        raise UsageError(f"metrics must be 'all' or a comma-separated list of {', '.join(GROUPS)}; "
                         f"got {text!r}")
    return tuple(g for g in GROUPS if g in names)


def missing_quality(groups: Iterable[str]) -> dict[str, str]:
    """The quality metrics among ``groups`` whose package is not installed: ``{metric: notice}``."""
    missing = {}
    for group in groups:
        if group in PACKAGES and importlib.util.find_spec(PACKAGES[group][0]) is None:
            missing[group] = (f"{group} omitted: its package is not installed "
                              f"(pip install {PACKAGES[group][1]}, or dac-jax[eval])")
    return missing


def quality_notices(groups: Iterable[str]) -> list[str]:
    """What the reader of the scores should know about the installed quality packages."""
    if "visqol-speech" in groups and importlib.util.find_spec("visqol") and not importlib.util.find_spec("ai_edge_litert"):
        # visqol-python's own warning, said once here instead of once per worker process
        return ["visqol-speech uses visqol-python's polynomial MOS mapping (its lattice model needs "
                "ai-edge-litert: pip install visqol-python[lattice]); it may read higher than the C++ ViSQOL"]
    return []


def columns(groups: Iterable[str]) -> list[str]:
    """The metric columns of ``groups``: ``{group}-{rate key}``, rate by rate as the original's."""
    groups = tuple(groups)
    return [f"{g}-{k}" for k in RATES.values() for g in GROUPS if g in groups]


@dataclasses.dataclass
class QualityJob:
    """What the quality metrics of one pair need, at one evaluation rate: float64 mono signals at
    48 and 16 kHz (plain numpy, cheap to send to a worker process)."""

    key: str  # the rate's column suffix, "22k" / "44k"
    groups: tuple[str, ...]
    reference_48k: Optional[np.ndarray] = None
    estimate_48k: Optional[np.ndarray] = None
    reference_16k: Optional[np.ndarray] = None
    estimate_16k: Optional[np.ndarray] = None


def _as_signal(x: np.ndarray, where: str) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[-1] == 0:
        raise AudioError(f"{where}: expected audio [channels, samples] with samples > 0; got shape {x.shape}")
    if not np.isfinite(x).all():
        raise AudioError(f"{where}: audio contains NaN or Inf samples")
    return x


# -- the distances, in numpy ---------------------------------------------------------------------
#
# dac_jax.train.losses computes the same four numbers in JAX, but every new signal length is a new
# shape and, on the CPU, ~5 s of compilation per metric: a test set has as many lengths as files.
# Numpy compiles nothing; the window and the mel filters are dac-jax's (dac_jax.audio.spectral),
# the sums float64, frames taken in blocks so that an hour of audio needs no hour-sized spectrogram.

_FRAMES_PER_BLOCK = 2048


def _spectral_sums(x: np.ndarray, y: np.ndarray, window: int, log_weight: float, mag_weight: float,
                   clamp_eps: float, pow: float, basis: Optional[np.ndarray]) -> float:
    """One scale of ``MultiScaleSTFTLoss`` (``basis`` None) or ``MelSpectrogramLoss`` (``basis
    [n_mels, bins]``): ``log_weight * mean|log10(clamp(Mx)^pow) - log10(clamp(My)^pow)| +
    mag_weight * mean|Mx - My|``, ``M`` the magnitude STFT (periodic hann, hop ``w // 4``, centred,
    reflect-padded: ``torch.stft(center=True)`` as ``AudioSignal.stft`` calls it), or its mel projection."""
    hop, half = window // 4, window // 2
    if x.shape[-1] <= half:
        raise AudioError(f"the signal is too short for a {window}-sample window: it needs more than {half} samples")
    w = get_window("hann", window).astype(np.float64)
    xp = np.pad(x.astype(np.float64), ((0, 0), (half, half)), mode="reflect")
    yp = np.pad(y.astype(np.float64), ((0, 0), (half, half)), mode="reflect")
    n_frames = 1 + (xp.shape[-1] - window) // hop
    log_sum = mag_sum = 0.0
    for f0 in range(0, n_frames, _FRAMES_PER_BLOCK):
        f1 = min(n_frames, f0 + _FRAMES_PER_BLOCK)
        span = slice(f0 * hop, (f1 - 1) * hop + window)
        mags = []
        for sig in (xp, yp):
            frames = np.lib.stride_tricks.sliding_window_view(sig[:, span], window, axis=-1)[:, ::hop]
            m = np.abs(np.fft.rfft(frames * w, axis=-1))  # [C, frames, bins]
            mags.append(m @ basis.T if basis is not None else m)
        mx, my = mags
        if log_weight:
            lx = np.log10(np.maximum(mx, clamp_eps) ** pow)
            ly = np.log10(np.maximum(my, clamp_eps) ** pow)
            log_sum += float(np.abs(lx - ly).sum())
        if mag_weight:
            mag_sum += float(np.abs(mx - my).sum())
    count = x.shape[0] * n_frames * (basis.shape[0] if basis is not None else half + 1)
    return log_weight * log_sum / count + mag_weight * mag_sum / count


def mel_distance(reference: np.ndarray, estimate: np.ndarray, rate: int, config: MelLossConfig = MEL) -> float:
    """``MelSpectrogramLoss(**config)`` of two ``[channels, samples]`` signals (scales summed)."""
    return sum(_spectral_sums(estimate, reference, w, config.log_weight, config.mag_weight, config.clamp_eps,
                              config.pow, mel_filters(rate, w, n_mels, fmin, fmax).astype(np.float64))
               for n_mels, w, fmin, fmax in config.scales)


def stft_distance(reference: np.ndarray, estimate: np.ndarray, config: STFTLossConfig = STFT) -> float:
    """``MultiScaleSTFTLoss(**config)`` of two ``[channels, samples]`` signals (scales summed)."""
    return sum(_spectral_sums(estimate, reference, w, config.log_weight, config.mag_weight, config.clamp_eps,
                              config.pow, None) for w in config.window_lengths)


def waveform_distance(reference: np.ndarray, estimate: np.ndarray) -> float:
    """``L1Loss()``: the mean absolute sample difference."""
    return float(np.mean(np.abs(estimate.astype(np.float64) - reference.astype(np.float64))))


def sisdr(reference: np.ndarray, estimate: np.ndarray, eps: float = 1e-8) -> float:
    """SI-SDR in dB (higher is better): ``-SISDRLoss()(reference, estimate)``, all channels as one
    signal, zero-mean, the original's ``eps`` in the projection and the ratio."""
    r = reference.astype(np.float64).reshape(-1)
    e = estimate.astype(np.float64).reshape(-1)
    r, e = r - r.mean(), e - e.mean()
    scale = (np.dot(e, r) + eps) / (np.dot(r, r) + eps)
    target = scale * r
    residual = e - target
    with np.errstate(divide="ignore"):  # identical signals: +inf dB, as the original's -inf loss
        return float(10 * np.log10(np.dot(target, target) / np.dot(residual, residual) + eps))


def distances(reference: np.ndarray, estimate: np.ndarray, rate: int, groups: Iterable[str] = DISTANCES) -> dict[str, float]:
    """The distance metrics of two signals ``[channels, samples]`` at one ``rate`` (already
    resampled, equal shapes): ``{"mel": ..., "stft": ..., "waveform": ..., "sisdr": ...}``."""
    groups = tuple(groups)
    out = {}
    if "mel" in groups:
        out["mel"] = mel_distance(reference, estimate, rate)
    if "stft" in groups:
        out["stft"] = stft_distance(reference, estimate)
    if "waveform" in groups:
        out["waveform"] = waveform_distance(reference, estimate)
    if "sisdr" in groups:
        out["sisdr"] = sisdr(reference, estimate)
    return out


def _mono_at(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    """audiotools' ``to_mono().resample(target)``: the channel mean, resampled; float64 1-D."""
    return resample_long(x.mean(axis=0, keepdims=True), rate, target)[0].astype(np.float64)


def pair_metrics(
    reference: np.ndarray, reference_rate: int, estimate: np.ndarray, estimate_rate: int,
    groups: Iterable[str] = GROUPS, where: str = "pair",
) -> tuple[dict[str, float], list[QualityJob], list[str]]:
    """The distances of one pair at every rate of :data:`RATES` (``{"mel-44k": ..., ...}``), the
    quality jobs left to run (:func:`quality`, e.g. in worker processes) and notes (lengths that
    differ). ``reference`` / ``estimate`` are ``[channels, samples]`` (or ``[samples]``) at their rates."""
    groups = tuple(groups)
    reference = _as_signal(reference, where)
    estimate = _as_signal(estimate, where)
    if reference.shape[0] != estimate.shape[0]:
        raise AudioError(f"{where}: the reference has {reference.shape[0]} channel(s), the estimate "
                         f"{estimate.shape[0]}; cannot compare them")
    values, jobs, notes = {}, [], []
    wanted_quality = tuple(g for g in groups if g in QUALITY)
    for rate, key in RATES.items():
        x = resample_long(reference, reference_rate, rate)
        y = resample_long(estimate, estimate_rate, rate)
        if x.shape[-1] != y.shape[-1]:
            if not notes:
                notes.append(f"lengths differ at {rate} Hz ({x.shape[-1]} vs {y.shape[-1]} samples): "
                             "compared over the shorter")
            n = min(x.shape[-1], y.shape[-1])
            x, y = x[:, :n], y[:, :n]
        values.update({f"{g}-{key}": v for g, v in distances(x, y, rate, groups).items()})
        if wanted_quality:
            job = QualityJob(key, wanted_quality)
            if "visqol-audio" in wanted_quality:
                job.reference_48k, job.estimate_48k = _mono_at(x, rate, AUDIO_RATE), _mono_at(y, rate, AUDIO_RATE)
            if any(g in wanted_quality for g in ("visqol-speech", "pesq", "stoi")):
                job.reference_16k, job.estimate_16k = _mono_at(x, rate, SPEECH_RATE), _mono_at(y, rate, SPEECH_RATE)
            jobs.append(job)
    return values, jobs, notes


# -- the quality metrics: plain numpy and their own packages, so that worker processes stay light --

_VISQOL: dict[str, object] = {}  # one ViSQOL per mode and process (creating one loads its model)


def _visqol(mode: str):
    if mode not in _VISQOL:
        from visqol import VisqolApi  # an optional dependency: imported where it is used

        api = VisqolApi()
        logging.getLogger("visqol").setLevel(logging.ERROR)  # its fallback warning: quality_notices says it
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            api.create(mode=mode)
        _VISQOL[mode] = api
    return _VISQOL[mode]


def quality(job: QualityJob) -> tuple[dict[str, float], list[str]]:
    """The quality metrics of one :class:`QualityJob`: ``({"visqol-audio-44k": ..., ...}, notes)``.
    A metric that fails on this pair (ViSQOL on a signal shorter than its patches, PESQ finding no
    utterance) is NaN, with a note saying why."""
    out, notes = {}, []
    for group in job.groups:
        name = f"{group}-{job.key}"
        try:
            if group == "visqol-audio":
                value = _visqol("audio").measure_from_arrays(job.reference_48k, job.estimate_48k, AUDIO_RATE).moslqo
            elif group == "visqol-speech":
                value = _visqol("speech").measure_from_arrays(job.reference_16k, job.estimate_16k, SPEECH_RATE).moslqo
            elif group == "pesq":
                from pesq import pesq

                value = pesq(SPEECH_RATE, job.reference_16k, job.estimate_16k, "wb")
            else:
                from pystoi import stoi

                value = stoi(job.reference_16k, job.estimate_16k, SPEECH_RATE, extended=False)
        except ImportError:
            continue  # reported once, up front (missing_quality)
        except Exception as e:  # noqa: BLE001 - a score that cannot be computed for this pair is missing, not fatal
            value = float("nan")
            notes.append(f"{name}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
        out[name] = float(value)
    return out, notes


__all__ = ["AUDIO_RATE", "DISTANCES", "GROUPS", "HIGHER_IS_BETTER", "MEL", "QUALITY", "QualityJob", "RATES",
           "SPEECH_RATE", "STFT", "columns", "distances", "mel_distance", "missing_quality", "pair_metrics", "parse_groups", "quality",
           "quality_notices", "sisdr", "stft_distance", "waveform_distance"]
