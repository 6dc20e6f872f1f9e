"""dac-jax's periodicity loss (``lambdas["periodicity/loss"]``): its autocorrelation equals a
direct sum, it ranks pitch errors as intended, and the training step weighs it only when asked."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dac_jax.errors import UsageError
from dac_jax.train import state as St
from dac_jax.train import step as S
from dac_jax.train.config import LossWeights
from dac_jax.train.losses import (
    PeriodicityLossConfig, lag_profile, log_lag_smoothing, periodicity_frame_length, periodicity_loss,
)
from tests.train import tiny

RATE = 16000


def harmonic(f0: float, samples: int = 6080, seed: int = 0) -> np.ndarray:
    """A sawtooth-like tone at ``f0`` (harmonics 1/k below 7 kHz, random phases)."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / RATE
    parts = [np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 60) if k * f0 < 7000]
    return (0.1 * np.sum(parts, axis=0)).astype(np.float32)


def test_the_lag_profile_is_the_direct_autocorrelation_of_each_windowed_frame():
    """With the cutoff at Nyquist nothing is filtered: each frame's profile is ``np.correlate`` of
    the Hann-windowed frame with itself at the lags of ``fmin``-``fmax``, over its lag-0 value."""
    config = PeriodicityLossConfig(cutoff=RATE / 2)
    x = np.random.default_rng(1).standard_normal((2, 1, 4000)).astype(np.float32)
    profile, energy = jax.device_get(lag_profile(jnp.asarray(x), RATE, config))
    n = periodicity_frame_length(RATE, config)
    assert n == 1024
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)  # periodic Hann, as the STFT's
    lo, hi = round(RATE / config.fmax), round(RATE / config.fmin)
    frames = (4000 - n) // (n // 4) + 1
    assert profile.shape == (2, 1, frames, hi - lo + 1) and energy.shape == (2, 1, frames)
    for b in range(2):
        for f in range(frames):
            w = x[b, 0, f * n // 4 : f * n // 4 + n].astype(np.float64) * window
            acf = np.correlate(w, w, "full")[n - 1 :]
            np.testing.assert_allclose(energy[b, 0, f], acf[0], rtol=1e-5)
            np.testing.assert_allclose(profile[b, 0, f], acf[lo : hi + 1] / (acf[0] + config.eps), atol=2e-6)


PROFILE_ONLY = PeriodicityLossConfig(voicing=0.0)


def test_the_pitch_profile_ranks_pitch_errors_and_noise():
    """The pitch-profile part, against a 150 Hz harmonic reference: the same pitch (other phases)
    0, then 3 % < 6 % < 12 % off, all below noise and silence (measured: 0.049, 0.094, 0.169; noise
    0.303, silence 0.298). Without the log-lag smoothing a pitch 12 % off costs more than noise
    (0.369 vs 0.348): the smoothing is what makes a near pitch pay."""
    ref = jnp.asarray(harmonic(150.0))[None, None]

    def loss(x, config=PROFILE_ONLY):
        return float(periodicity_loss(jnp.asarray(x)[None, None], ref, RATE, config))

    same = loss(harmonic(150.0, seed=5))
    off = [loss(harmonic(150.0 * r)) for r in (1.03, 1.06, 1.12)]
    noise = loss(0.05 * np.random.default_rng(2).standard_normal(6080).astype(np.float32))
    silence = loss(np.zeros(6080, np.float32))
    assert same < 1e-3
    assert same < off[0] < off[1] < off[2] < 0.7 * noise, (off, noise)
    assert off[2] < 0.7 * silence, (off, silence)
    assert float(periodicity_loss(ref, ref, RATE)) == 0.0
    unsmoothed = PeriodicityLossConfig(smoothing=0.0, voicing=0.0)
    assert loss(harmonic(168.0), unsmoothed) > loss(0.05 * np.random.default_rng(2).standard_normal(6080).astype(np.float32),
                                                     unsmoothed)


def test_the_voicing_part_is_pitch_blind_and_tells_a_period_from_noise():
    """The default loss is the profile part plus the voicing part: ``|largest full-band normalised
    autocorrelation of x - that of y|`` per frame. Any harmonic tone, at any pitch, has it near the
    reference's; noise and silence do not (measured: 33 % off 0.035, an octave 0.046; noise 0.82,
    silence 0.93)."""
    ref = jnp.asarray(harmonic(150.0))[None, None]
    voicing_only = PeriodicityLossConfig(voicing=1.0)

    def voicing(x):
        x = jnp.asarray(x)[None, None]
        return float(periodicity_loss(x, ref, RATE, voicing_only)) - float(periodicity_loss(x, ref, RATE, PROFILE_ONLY))

    pitched = [voicing(harmonic(f)) for f in (200.0, 300.0)]
    noise = voicing(0.05 * np.random.default_rng(2).standard_normal(6080).astype(np.float32))
    silence = voicing(np.zeros(6080, np.float32))
    assert max(pitched) < 0.1 and noise > 0.5 and silence > 0.5, (pitched, noise, silence)
    twice = PeriodicityLossConfig(voicing=2.0)
    x = jnp.asarray(harmonic(200.0))[None, None]
    assert float(periodicity_loss(x, ref, RATE, twice)) == pytest.approx(
        float(periodicity_loss(x, ref, RATE, PROFILE_ONLY)) + 2 * pitched[0], rel=1e-4, abs=1e-6)


def test_the_smoothing_is_gaussian_columns_on_the_log_lag_axis():
    m = log_lag_smoothing(RATE)
    lo, hi = round(RATE / 500), round(RATE / 50)
    assert m.shape[0] == hi - lo + 1
    np.testing.assert_allclose(m.sum(axis=0), 1.0, rtol=1e-5)
    peaks = np.arange(lo, hi + 1)[m.argmax(axis=0)]
    ratios = peaks[1:] / peaks[:-1]
    assert np.all(ratios[peaks[:-1] > 100] < 1.1)  # centres about 5 % apart on the lag axis
    np.testing.assert_array_equal(log_lag_smoothing(RATE, PeriodicityLossConfig(smoothing=0.0)), np.eye(hi - lo + 1))


def test_its_gradient_is_finite_on_silence_and_noise():
    ref = jnp.asarray(harmonic(200.0))[None, None]
    for x in (np.zeros(6080, np.float32), 0.05 * np.random.default_rng(3).standard_normal(6080).astype(np.float32)):
        g = jax.grad(lambda a: periodicity_loss(a, ref, RATE))(jnp.asarray(x)[None, None])
        assert bool(jnp.all(jnp.isfinite(g)))


def test_bad_settings_and_short_signals_are_refused():
    with pytest.raises(UsageError, match="fmin < fmax"):
        PeriodicityLossConfig(fmin=500.0, fmax=100.0)
    with pytest.raises(UsageError, match="smoothing must be >= 0"):
        PeriodicityLossConfig(smoothing=-0.1)
    with pytest.raises(UsageError, match="voicing must be >= 0"):
        PeriodicityLossConfig(voicing=-1.0)
    with pytest.raises(UsageError, match="fewer than 2 periods"):
        PeriodicityLossConfig(window_seconds=0.01)
    with pytest.raises(UsageError, match="shorter than its 1024-sample frame"):
        periodicity_loss(jnp.zeros((1, 1, 1000)), jnp.zeros((1, 1, 1000)), RATE)


def test_the_step_computes_it_only_when_weighed_and_adds_it_to_the_total():
    """``periodicity/loss`` is dac-jax's own: at weight 0 (the original's recipes) the step neither
    computes nor logs it; weighed, it is logged and the total grows by weight x its value."""
    assert LossWeights.from_lambdas({"periodicity/loss": 3.0}).periodicity == 3.0
    assert LossWeights.from_lambdas({"mel/loss": 15.0}).periodicity == 0.0
    mesh = S.make_mesh(1)
    plain = tiny.fast()
    weighed = dataclasses.replace(plain, weights=dataclasses.replace(plain.weights, periodicity=3.0))
    audio = S.shard_batch(tiny.batch(2), mesh)  # 0.2 s: three 1024-sample frames
    start = jax.device_get(St.create_train_state(plain, seed=0))  # the steps donate their input
    _, without = S.make_train_step(mesh, plain)(S.replicate(start, mesh), audio)
    _, with_ = S.make_train_step(mesh, weighed)(S.replicate(start, mesh), audio)
    assert "periodicity/loss" not in without
    value = float(with_["periodicity/loss"])
    assert 0.05 < value < 4.0  # each part is at most 2 (normalised autocorrelations lie in [-1, 1]); measured 1.12
    assert float(with_["loss"]) == pytest.approx(float(without["loss"]) + 3.0 * value, rel=1e-4)
