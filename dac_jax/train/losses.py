"""DAC's training losses as pure JAX functions, equal to the original ``dac.nn.loss`` classes.

Every function is jittable (configs are frozen, hashable dataclasses: pass them as static
arguments or close over them; sample rates are Python ints) and differentiable. Audio is
channels-first ``[B, C, T]`` float32, as the original's ``AudioSignal.audio_data``; any leading
shape works for the spectral losses and ``l1_loss``. Argument order follows the original's
``forward(x, y)``: for the spectral and waveform losses ``x`` is the estimate (reconstruction) and
``y`` the reference; for :func:`sisdr_loss` the FIRST argument is the reference (see there).

What matches what (descript-audio-codec 1.0.0, ``dac/nn/loss.py``; audiotools 0.7.2), each within
1e-4 relative on the test signals (tests/train/test_losses.py):

=======================  ===================================================================
``mel_loss``             ``MelSpectrogramLoss(...)(AudioSignal(x, sr), AudioSignal(y, sr))``
``stft_loss``            ``MultiScaleSTFTLoss(...)(AudioSignal(x, sr), AudioSignal(y, sr))``
``l1_loss``              ``L1Loss()(AudioSignal(x, sr), AudioSignal(y, sr))``
``sisdr_loss``           ``SISDRLoss(...)(AudioSignal(ref, sr), AudioSignal(est, sr))``
``discriminator_loss``   ``GANLoss.discriminator_loss`` given the discriminator's outputs
``generator_loss``       ``GANLoss.generator_loss`` given the discriminator's outputs
=======================  ===================================================================

The gradient of ``mel_loss`` with respect to the estimate equals torch's autograd through the
original within 1e-3 relative (measured <= 5e-5): the log-mel gradient carries ``1 / mel`` per bin
and so magnifies float32 rounding in the quietest bins, in both frameworks.

One term is dac-jax's own and has no counterpart: :func:`periodicity_loss` (``periodicity/loss``,
weight 0 unless a config sets it), an autocorrelation distance that makes a near pitch cost less
than noise.

DAC's final recipe (``conf/final/44khz.yml``) weighs them: mel 15, feature matching 2, adversarial
1 (plus VQ commitment 0.25 and codebook 1); the STFT and waveform losses are computed and logged
with weight 0. Its mel loss is :data:`DAC_MEL_LOSS` (7 scales, ``mag_weight=0``, ``pow=1``); its
STFT loss is :data:`DAC_STFT_LOSS` (the class defaults).

Quirks of the original kept on purpose:

* ``MelSpectrogramLoss`` and ``MultiScaleSTFTLoss`` accept ``match_stride`` but never pass it to
  ``AudioSignal.stft``/``mel_spectrogram`` (they pass window length, hop and window type only), so
  it has no effect: the losses always use ``match_stride=False``. It is therefore not a field here.
  Their ``window_type=None`` means the AudioSignal default, ``"hann"``.
* The mel loss compares ``log10(clamp(mel, eps) ** pow)`` (magnitude, not power, mel spectrograms;
  ``pow`` applies after the clamp) with an L1 mean per scale, and the scales are SUMMED (not
  averaged). ``mel_fmax=None`` is ``sr / 2``.
* ``SISDRLoss`` returns the NEGATIVE SI-SDR in dB (lower is better), with ``eps = 1e-8`` added to
  both the reference energy and the reference-estimate dot product, and ``sdr = -10 log10(signal /
  noise + eps)``; channels are concatenated into one signal per item before it is computed.
  Identical inputs give a huge negative value (or ``-inf`` when the residual is exactly 0), as the
  original's does. ``reduction="none"`` gives ``[B, 1]``, as the original's.
* Gradients follow torch's subgradients: ``|d|`` has gradient ``sign(d)``, 0 where estimate and
  reference agree (``jnp.abs`` alone has 1 there), and the clamp passes the gradient where
  ``m >= eps``. Under ``jit``, though, XLA may round two computations on equal inputs an ulp
  apart, so equal audio does not guarantee equal log-mel spectrograms.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from dac_jax.audio import spectral
from dac_jax.errors import UsageError

__all__ = [
    "MelLossConfig",
    "STFTLossConfig",
    "SISDRConfig",
    "DAC_MEL_LOSS",
    "DAC_STFT_LOSS",
    "DAC_LOSS_WEIGHTS",
    "spectral_distance",
    "mel_loss",
    "stft_loss",
    "l1_loss",
    "PeriodicityLossConfig",
    "periodicity_loss",
    "lag_profile",
    "log_lag_smoothing",
    "sisdr_loss",
    "discriminator_loss",
    "generator_loss",
    "KLSchedule",
    "kl_weight",
]


def _mean_abs(a: jax.Array, b: jax.Array) -> jax.Array:
    """``torch.nn.L1Loss()`` / ``F.l1_loss``: mean over every element of ``|a - b|``.

    Written ``d * sign(d)`` (the same value) so that the gradient is torch's ``sign(d)``, 0 where
    ``a == b``: ``jnp.abs`` has gradient 1 at 0, which would give e.g. ``mel_loss(y, y)`` a
    non-zero gradient where the original's is exactly 0."""
    d = a - b
    return jnp.mean(d * jax.lax.stop_gradient(jnp.sign(d)))


def _log_mag(m: jax.Array, eps: float, pow: float) -> jax.Array:
    """``m.clamp(eps).pow(pow).log10()`` in the original's order. The clamp passes the gradient
    where ``m >= eps``, as torch's does (``jnp.maximum`` would halve it at ``m == eps``)."""
    return jnp.log10(jnp.where(m >= eps, m, eps) ** pow)


def spectral_distance(
    mx: jax.Array,
    my: jax.Array,
    clamp_eps: float = 1e-5,
    pow: float = 2.0,
    log_weight: float = 1.0,
    mag_weight: float = 1.0,
) -> jax.Array:
    """One scale's term of both spectral losses, for magnitude (or mel magnitude) spectrograms
    ``mx`` (estimate) and ``my`` (reference) of any equal shape::

        log_weight * mean|log10(clamp(mx, eps)^pow) - log10(clamp(my, eps)^pow)| + mag_weight * mean|mx - my|

    as ``MelSpectrogramLoss`` / ``MultiScaleSTFTLoss`` compute it per scale. A term whose weight
    is 0 is not computed (the original multiplies it by 0)."""
    loss = jnp.zeros((), jnp.float32)
    if log_weight != 0:
        loss = loss + log_weight * _mean_abs(_log_mag(mx, clamp_eps, pow), _log_mag(my, clamp_eps, pow))
    if mag_weight != 0:
        loss = loss + mag_weight * _mean_abs(mx, my)
    return loss


# ---------------------------------------------------------------------------------------------
# mel


@dataclasses.dataclass(frozen=True)
class MelLossConfig:
    """Parameters of ``dac.nn.loss.MelSpectrogramLoss``; the defaults are the CLASS defaults
    (2 scales, ``pow=2``, ``mag_weight=1``). DAC's recipe is :data:`DAC_MEL_LOSS`.

    One scale per entry of ``window_lengths`` (hop ``w // 4``, periodic hann, center, reflect),
    with ``n_mels[i]`` Slaney mels between ``mel_fmin[i]`` and ``mel_fmax[i]`` (None: ``sr / 2``).
    """

    n_mels: tuple[int, ...] = (150, 80)
    window_lengths: tuple[int, ...] = (2048, 512)
    clamp_eps: float = 1e-5
    mag_weight: float = 1.0
    log_weight: float = 1.0
    pow: float = 2.0
    mel_fmin: tuple[float, ...] = (0.0, 0.0)
    mel_fmax: tuple[float | None, ...] = (None, None)
    window: str = "hann"

    def __post_init__(self):
        for name in ("n_mels", "window_lengths", "mel_fmin", "mel_fmax"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        # the original zips the four lists: the shortest decides the number of scales
        n = min(len(self.n_mels), len(self.window_lengths), len(self.mel_fmin), len(self.mel_fmax))
        if n == 0:
            raise UsageError("MelLossConfig needs at least one scale")

    @property
    def scales(self) -> tuple[tuple[int, int, float, float | None], ...]:
        """``(n_mels, window_length, fmin, fmax)`` per scale, zipped as the original zips them."""
        return tuple(zip(self.n_mels, self.window_lengths, self.mel_fmin, self.mel_fmax))


DAC_MEL_LOSS = MelLossConfig(
    n_mels=(5, 10, 20, 40, 80, 160, 320),
    window_lengths=(32, 64, 128, 256, 512, 1024, 2048),
    clamp_eps=1e-5,
    mag_weight=0.0,
    log_weight=1.0,
    pow=1.0,
    mel_fmin=(0.0,) * 7,
    mel_fmax=(None,) * 7,
)
"""``MelSpectrogramLoss`` as DAC's ``conf/final/44khz.yml`` (and 24khz/16khz) configures it."""


def mel_loss(x: jax.Array, y: jax.Array, sample_rate: int, config: MelLossConfig = DAC_MEL_LOSS) -> jax.Array:
    """Multi-scale log-mel L1 distance, a scalar; ``x`` the estimate, ``y`` the reference,
    ``[B, C, T]`` (or any ``[..., T]``) at ``sample_rate`` (a Python int).

    ``sum over scales of log_weight * mean|log10(clamp(Mx, eps)^pow) - log10(clamp(My, eps)^pow)|
    + mag_weight * mean|Mx - My|`` where ``M`` is :func:`dac_jax.audio.spectral.mel_spectrogram`.
    Equals ``MelSpectrogramLoss(**fields)(AudioSignal(x, sr), AudioSignal(y, sr))``; the default
    config is DAC's recipe (:data:`DAC_MEL_LOSS`), ``MelLossConfig()`` the class defaults. A term
    whose weight is 0 is not computed (the original multiplies it by 0). Needs ``T > w_max / 2``.
    """
    loss = jnp.zeros((), jnp.float32)
    for n_mels, w, fmin, fmax in config.scales:
        kw = dict(sample_rate=sample_rate, window_length=w, hop_length=w // 4, n_mels=n_mels, fmin=fmin, fmax=fmax, window=config.window)
        mx = spectral.mel_spectrogram(x, **kw)
        my = spectral.mel_spectrogram(y, **kw)
        loss = loss + spectral_distance(mx, my, config.clamp_eps, config.pow, config.log_weight, config.mag_weight)
    return loss


# ---------------------------------------------------------------------------------------------
# STFT


@dataclasses.dataclass(frozen=True)
class STFTLossConfig:
    """Parameters of ``dac.nn.loss.MultiScaleSTFTLoss``; the defaults are the class defaults, which
    DAC's recipe uses unchanged (:data:`DAC_STFT_LOSS`)."""

    window_lengths: tuple[int, ...] = (2048, 512)
    clamp_eps: float = 1e-5
    mag_weight: float = 1.0
    log_weight: float = 1.0
    pow: float = 2.0
    window: str = "hann"

    def __post_init__(self):
        object.__setattr__(self, "window_lengths", tuple(self.window_lengths))
        if not self.window_lengths:
            raise UsageError("STFTLossConfig needs at least one window length")


DAC_STFT_LOSS = STFTLossConfig()
"""``MultiScaleSTFTLoss`` as DAC's recipe uses it (the class defaults; logged, weight 0)."""


def stft_loss(x: jax.Array, y: jax.Array, config: STFTLossConfig = DAC_STFT_LOSS) -> jax.Array:
    """Multi-scale STFT magnitude distance, a scalar; ``x`` estimate, ``y`` reference, ``[..., T]``.

    ``sum over windows w (hop w // 4) of log_weight * mean|log10(clamp(|X|, eps)^pow) -
    log10(clamp(|Y|, eps)^pow)| + mag_weight * mean||X| - |Y||``. Equals
    ``MultiScaleSTFTLoss(**fields)(AudioSignal(x, sr), AudioSignal(y, sr))`` (independent of the
    sample rate)."""
    loss = jnp.zeros((), jnp.float32)
    for w in config.window_lengths:
        mx = spectral.magnitude(spectral.stft(x, w, w // 4, window=config.window))
        my = spectral.magnitude(spectral.stft(y, w, w // 4, window=config.window))
        loss = loss + spectral_distance(mx, my, config.clamp_eps, config.pow, config.log_weight, config.mag_weight)
    return loss


# ---------------------------------------------------------------------------------------------
# periodicity (dac-jax's own; not in the original)


@dataclasses.dataclass(frozen=True)
class PeriodicityLossConfig:
    """Parameters of :func:`periodicity_loss`: frames of ``window_seconds`` (rounded up to a power
    of two of samples, hop a quarter), the spectrum below ``cutoff`` Hz, lags of ``fmin``-``fmax`` Hz."""

    window_seconds: float = 0.064
    fmin: float = 50.0
    fmax: float = 500.0
    cutoff: float = 1000.0
    smoothing: float = 0.1  # the Gaussian's width on the log-lag axis (0.1: ~10 % of the lag); 0: none
    voicing: float = 1.0  # the weight of the voicing-strength part (periodicity_loss); 0: none
    eps: float = 1e-6

    def __post_init__(self):
        if not 0 < self.fmin < self.fmax <= self.cutoff:
            raise UsageError(f"periodicity loss needs 0 < fmin < fmax <= cutoff, got {self.fmin}, {self.fmax}, {self.cutoff}")
        if self.smoothing < 0:
            raise UsageError(f"periodicity loss: smoothing must be >= 0, got {self.smoothing}")
        if self.voicing < 0:
            raise UsageError(f"periodicity loss: voicing must be >= 0, got {self.voicing}")
        if self.window_seconds * self.fmin < 2:
            raise UsageError(f"periodicity loss: a {self.window_seconds} s frame holds fewer than 2 periods of {self.fmin} Hz")


DAC_JAX_PERIODICITY_LOSS = PeriodicityLossConfig()


def periodicity_frame_length(sample_rate: int, config: PeriodicityLossConfig = DAC_JAX_PERIODICITY_LOSS) -> int:
    return 1 << max(0, math.ceil(math.log2(config.window_seconds * sample_rate)))


def _frame_power(x: jax.Array, sample_rate: int, config: PeriodicityLossConfig) -> jax.Array:
    """``|rfft|^2 [..., frames, n + 1]`` of the Hann-windowed frames of ``x``, zero-padded to ``2n``."""
    n = periodicity_frame_length(sample_rate, config)
    if x.shape[-1] < n:
        raise UsageError(f"periodicity loss: {x.shape[-1]} samples is shorter than its {n}-sample frame")
    frames = spectral._frame(x, n, n // 4) * jnp.asarray(spectral.get_window("hann", n), x.dtype)
    spec = jnp.fft.rfft(frames, 2 * n)
    return jnp.real(spec) ** 2 + jnp.imag(spec) ** 2


def _normalised_lags(power: jax.Array, sample_rate: int, config: PeriodicityLossConfig, cutoff: float):
    """:func:`lag_profile` from :func:`_frame_power`'s output, low-passed at ``cutoff``."""
    n2 = 2 * (power.shape[-1] - 1)
    keep = np.fft.rfftfreq(n2, 1.0 / sample_rate) <= cutoff
    acf = jnp.fft.irfft(power * jnp.asarray(keep, power.dtype), n2)
    lo, hi = round(sample_rate / config.fmax), round(sample_rate / config.fmin)
    energy = acf[..., 0]
    return acf[..., lo : hi + 1] / (energy[..., None] + config.eps), energy


def lag_profile(x: jax.Array, sample_rate: int, config: PeriodicityLossConfig = DAC_JAX_PERIODICITY_LOSS):
    """``(normalised autocorrelation [..., frames, lags], frame energy [..., frames])`` of ``x
    [..., T]`` low-passed at ``config.cutoff``: per Hann-windowed frame, the autocorrelation
    (zero-padded, so not circular) at lags ``round(sr / fmax)``..``round(sr / fmin)`` divided by
    the frame's energy (its lag-0 value) plus ``eps``. Frames start every quarter frame from sample
    0; a signal shorter than one frame is refused."""
    return _normalised_lags(_frame_power(x, sample_rate, config), sample_rate, config, config.cutoff)


def log_lag_smoothing(sample_rate: int, config: PeriodicityLossConfig = DAC_JAX_PERIODICITY_LOSS) -> np.ndarray:
    """``[lags, centres]``: Gaussians on the log-lag axis of width ``config.smoothing``, centres
    every half width from the shortest lag to the longest, each column summing to 1. A pitch off by
    a ratio ``r`` moves every multiple of the period by the same ``log r`` on this axis, so after
    it a near pitch overlaps the right one at every multiple. ``smoothing=0``: the identity."""
    lo, hi = round(sample_rate / config.fmax), round(sample_rate / config.fmin)
    lags = np.log(np.arange(lo, hi + 1, dtype=np.float64))
    if config.smoothing == 0:
        return np.eye(len(lags), dtype=np.float32)
    centres = np.arange(lags[0], lags[-1] + 1e-9, config.smoothing / 2)
    m = np.exp(-0.5 * ((lags[:, None] - centres[None, :]) / config.smoothing) ** 2)
    return (m / m.sum(axis=0, keepdims=True)).astype(np.float32)


def _energy_weighted_l1(dx: jax.Array, dy: jax.Array, energy: jax.Array, eps: float) -> jax.Array:
    """``sum over frames of w * |dx - dy|`` (meaned over a trailing lag axis if there is one), ``w``
    the reference frames' share of the energy."""
    energy = lax.stop_gradient(energy)
    weight = energy / (jnp.sum(energy) + eps)
    d = dx - dy
    d = d * lax.stop_gradient(jnp.sign(d))
    return jnp.sum(weight * (jnp.mean(d, axis=-1) if d.ndim > weight.ndim else d))


def periodicity_loss(x: jax.Array, y: jax.Array, sample_rate: int,
                     config: PeriodicityLossConfig = DAC_JAX_PERIODICITY_LOSS) -> jax.Array:
    """How far the estimate's periodicity is from the reference's, a scalar; ``x`` estimate, ``y``
    reference, ``[..., T]``. dac-jax's own term (``lambdas["periodicity/loss"]``, weight 0 by
    default, and then not computed), the sum of two parts, each an L1 distance per frame with the
    frames weighted by the reference's energy:

    * the pitch profile: the mean over lags of ``|profile of x - that of y|``, a profile being the
      normalised autocorrelation low-passed at ``cutoff`` (:func:`lag_profile`) and smoothed on the
      log-lag axis (:func:`log_lag_smoothing`);
    * the voicing strength, times ``config.voicing``: ``|largest normalised autocorrelation of x at
      the lags - that of y|``, full band and unsmoothed (what pYIN's voicing decision keys on: a
      voiced frame has it near 1, noise near 0).

    Why: a model unsure of the pitch lowers the mel and STFT distances (L1 on fine spectra) most
    with an output averaged over the pitches it cannot tell apart, which has no period. Smoothed
    on the log-lag axis, the autocorrelation's peaks at the period's multiples are broad, so a near
    pitch scores nearly as well as the right one and noise about as badly as silence; but a broad,
    unpitched autocorrelation can match a smoothed profile too (the demo model did just that,
    benchmarks/RESULTS.md, tenth sitting), which the pitch-blind voicing part rules out.
    """
    smooth = jnp.asarray(log_lag_smoothing(sample_rate, config))
    power_x, power_y = _frame_power(x, sample_rate, config), _frame_power(y, sample_rate, config)
    px, _ = _normalised_lags(power_x, sample_rate, config, config.cutoff)
    py, energy = _normalised_lags(power_y, sample_rate, config, config.cutoff)
    loss = _energy_weighted_l1(px @ smooth, py @ smooth, energy, config.eps)
    if config.voicing:  # the same spectra, unfiltered
        fx, _ = _normalised_lags(power_x, sample_rate, config, sample_rate / 2)
        fy, full_energy = _normalised_lags(power_y, sample_rate, config, sample_rate / 2)
        loss = loss + config.voicing * _energy_weighted_l1(
            jnp.max(fx, axis=-1), jnp.max(fy, axis=-1), full_energy, config.eps)
    return loss


# ---------------------------------------------------------------------------------------------
# waveform


def l1_loss(x: jax.Array, y: jax.Array) -> jax.Array:
    """``mean|x - y|`` over every element: ``dac.nn.loss.L1Loss()`` on ``audio_data`` (DAC's
    "waveform/loss", logged with weight 0)."""
    return _mean_abs(jnp.asarray(x), jnp.asarray(y))


@dataclasses.dataclass(frozen=True)
class SISDRConfig:
    """Parameters of ``dac.nn.loss.SISDRLoss`` (the defaults are the class defaults).
    ``reduction``: "mean" or "sum" over the batch, anything else: per item, ``[B, 1]`` as the
    original returns it."""

    scaling: bool = True
    reduction: str = "mean"
    zero_mean: bool = True
    clip_min: float | None = None


def sisdr_loss(reference: jax.Array, estimate: jax.Array, config: SISDRConfig = SISDRConfig()) -> jax.Array:
    """NEGATIVE scale-invariant SDR in dB (a loss: lower is better), ``[B, ...]`` inputs.

    Equals ``SISDRLoss(**fields)(x, y)`` where the original treats its FIRST argument ``x`` as the
    reference and the second as the estimate (``references = x.audio_data; estimates =
    y.audio_data``), so call ``sisdr_loss(reference, estimate)``. Per item, all channels
    concatenated: zero-mean both (``zero_mean``), ``alpha = (<e, r> + eps) / (|r|^2 + eps)``
    (``scaling``; else 1), ``target = alpha r``, ``res = e - target``,
    ``sdr = -10 log10(|target|^2 / |res|^2 + eps)`` with ``eps = 1e-8``; clamped below at
    ``clip_min``; mean over the batch. The SI-SDR metric in dB is ``-sisdr_loss(ref, est)``.
    """
    eps = 1e-8
    r = jnp.asarray(reference)
    e = jnp.asarray(estimate)
    nb = r.shape[0]
    r = r.reshape(nb, -1)
    e = e.reshape(nb, -1)
    if config.zero_mean:
        r = r - jnp.mean(r, axis=1, keepdims=True)
        e = e - jnp.mean(e, axis=1, keepdims=True)
    proj = jnp.sum(r**2, axis=1, keepdims=True) + eps
    dot = jnp.sum(e * r, axis=1, keepdims=True) + eps
    scale = dot / proj if config.scaling else 1.0
    e_true = scale * r
    e_res = e - e_true
    signal = jnp.sum(e_true**2, axis=1)
    noise = jnp.sum(e_res**2, axis=1)
    sdr = -10 * jnp.log10(signal / noise + eps)
    if config.clip_min is not None:
        sdr = jnp.maximum(sdr, config.clip_min)
    if config.reduction == "mean":
        return jnp.mean(sdr)
    if config.reduction == "sum":
        return jnp.sum(sdr)
    return sdr[:, None]  # the original keeps its channel axis: [B, 1]


# ---------------------------------------------------------------------------------------------
# GAN (LSGAN) losses on the discriminator's outputs

FeatureMaps = Sequence[Sequence[jax.Array]]
"""The discriminator's output for one batch: one sequence per sub-discriminator (DAC: 5
multi-period then 3 multi-resolution), each the list of that sub-discriminator's feature maps in
order, the LAST being its logit map (DAC's ``Discriminator.forward`` returns exactly this, a list of
lists of tensors; any nesting of lists/tuples of arrays of any shapes works here)."""


def discriminator_loss(d_fake: FeatureMaps, d_real: FeatureMaps) -> jax.Array:
    """LSGAN discriminator loss: ``sum over sub-discriminators of mean(fake_logit^2) +
    mean((1 - real_logit)^2)``, a scalar.

    Equals ``GANLoss.discriminator_loss(fake, real)`` given ``d_fake = D(fake)``, ``d_real =
    D(real)``. The original detaches the fake AUDIO before running D; here the caller does that
    (``D(jax.lax.stop_gradient(fake))``, or simply differentiates only with respect to D's
    parameters)."""
    _check_pairs(d_fake, d_real)
    loss = jnp.zeros((), jnp.float32)
    for x_fake, x_real in zip(d_fake, d_real):
        loss = loss + jnp.mean(x_fake[-1] ** 2)
        loss = loss + jnp.mean((1 - x_real[-1]) ** 2)
    return loss


def generator_loss(d_fake: FeatureMaps, d_real: FeatureMaps) -> tuple[jax.Array, jax.Array]:
    """``(adversarial, feature_matching)``, two scalars, as ``GANLoss.generator_loss(fake, real)``.

    ``adversarial = sum over sub-discriminators of mean((1 - fake_logit)^2)``;
    ``feature_matching = sum over sub-discriminators and every NON-final map j of
    mean|fake_j - stop_gradient(real_j)|`` (``F.l1_loss`` per map, then summed). DAC weighs them 1
    and 2. ``d_real`` is only used through ``stop_gradient``, as the original detaches it."""
    _check_pairs(d_fake, d_real)
    adv = jnp.zeros((), jnp.float32)
    for x_fake in d_fake:
        adv = adv + jnp.mean((1 - x_fake[-1]) ** 2)
    fm = jnp.zeros((), jnp.float32)
    for x_fake, x_real in zip(d_fake, d_real):
        for j in range(len(x_fake) - 1):
            fm = fm + _mean_abs(x_fake[j], jax.lax.stop_gradient(x_real[j]))
    return adv, fm


def _check_pairs(d_fake: FeatureMaps, d_real: FeatureMaps) -> None:
    if len(d_fake) != len(d_real):
        raise UsageError(f"{len(d_fake)} sub-discriminator outputs for the fake audio, {len(d_real)} for the real")
    for i, (f, r) in enumerate(zip(d_fake, d_real)):
        if len(f) != len(r) or not len(f):
            raise UsageError(f"sub-discriminator {i}: {len(f)} fake feature maps, {len(r)} real")
        for j, (a, b) in enumerate(zip(f, r)):
            if a.shape != b.shape:
                raise UsageError(f"sub-discriminator {i}, map {j}: fake {a.shape} vs real {b.shape}")


DAC_LOSS_WEIGHTS = {
    "mel/loss": 15.0,
    "adv/feat_loss": 2.0,
    "adv/gen_loss": 1.0,
    "vq/commitment_loss": 0.25,
    "vq/codebook_loss": 1.0,
}
"""``lambdas`` of DAC's ``conf/final/44khz.yml`` (keys as the original logs them). The original's
total is ``sum(lambdas[k] * output[k] for k in lambdas)``: "stft/loss" and "waveform/loss" are
computed and logged but, absent from the dict, weigh nothing."""


@dataclasses.dataclass(frozen=True)
class KLSchedule:
    """DAC-VAE's KL weight over training (:func:`kl_weight`): ``start`` up to
    ``hold_steps``, then a half cosine to ``final`` at ``end_step``, ``final`` after.

    The original (primepake/dac_vae ``train.py``) starts from its ``lambdas["kl/loss"]`` and ends
    at a hard-coded 0.1, holding for ``hold_base_steps`` (200k) and ending at ``num_iters``
    (500k). Its ``configx2.yml`` sets ``kl/loss: 0.1``, so the recipe's weight is 0.1 throughout;
    ``start`` (``kl/loss``) and ``final`` are both configurable here to make the schedule usable.
    """

    start: float = 0.1  # lambdas["kl/loss"]
    final: float = 0.1
    hold_steps: int = 200_000
    end_step: int = 500_000

    def __post_init__(self):
        if self.end_step <= self.hold_steps:
            raise ValueError(f"the KL schedule must end (step {self.end_step}) after its hold ({self.hold_steps})")


def kl_weight(step: jax.Array, schedule: KLSchedule) -> jax.Array:
    """DAC-VAE's KL weight at optimiser step ``step`` (from 0; jittable):
    ``start + (1 - (1 + cos(pi * (step - hold) / (end - hold))) / 2) * (final - start)`` between
    ``hold_steps`` and ``end_step``, ``start`` before, ``final`` after (the original's
    ``cosine_decay_with_warmup`` without its warm-up, which the KL weight does not use)."""
    s = schedule
    step = jnp.asarray(step, jnp.float32)
    phase = jnp.clip((step - s.hold_steps) / (s.end_step - s.hold_steps), 0.0, 1.0)
    weight = s.start + 0.5 * (1.0 - jnp.cos(jnp.pi * phase)) * (s.final - s.start)
    return jnp.where(phase < 1.0, weight, s.final)  # exactly final at the end, not cos(pi)'s rounding
