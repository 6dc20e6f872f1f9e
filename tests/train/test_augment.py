"""dac_jax.train.augment against audiotools' transforms as DAC runs them on CUDA, on CPU.

The reference for loudness is audiotools' FIR meter (``AudioSignal.loudness(use_fir=True)``, i.e.
``Meter.apply_filter_gpu``), the path CUDA takes. For the composed recipe, ``Meter.apply_filter``
is patched to that FIR path, so ``VolumeNorm`` measures as on a GPU.

audiotools' FIR path mixes items and channels up for C > 1 (``apply_filter_gpu`` reshapes
``[nb, nt, nch]`` to ``[nb * nch, 1, nt]`` and never back, so ``integrated_loudness`` raises):
DAC trains mono and never meets it. For stereo the reference is audiotools' own FIR filter run on
each channel, then audiotools' own gating (what the FIR path would compute were it fixed, and what
its CPU path does with the IIR filters).

Measured (this CPU): loudness within 4e-6 LU of audiotools' FIR meter at 44.1 and 24 kHz, mono,
stereo and 5 channels (the brief asks 0.01 LU; the tests assert 1e-3); volume_norm and
rescale_audio within 1e-6 relative; the composed recipe within 2e-6 absolute; FIR taps bit-equal.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dac_jax.audio import spectral, synth
from dac_jax.errors import AudioError, UsageError
from dac_jax.train import augment as A
from tests.audio import require_reference
from tests.train import rel_err

torch = require_reference("torch")
audiotools = require_reference("audiotools")
from audiotools import AudioSignal  # noqa: E402
from audiotools.core.loudness import Meter  # noqa: E402
from audiotools.data import transforms as tfm  # noqa: E402

LU_TOL = 1e-3  # measured <= 4e-6
RATES = (44100, 24000)
CASES = [  # (rate, channels, seconds): the 0.38 s training excerpt (padded to 0.5 s) and 1.3 s
    (44100, 1, 0.38), (44100, 1, 1.3), (44100, 2, 0.38), (44100, 2, 1.3),
    (24000, 1, 0.38), (24000, 2, 1.3), (44100, 5, 0.38),
]
ITEMS = ("noise", "tone60", "tone1k", "speech", "loud_quiet", "near_gate", "near_silence", "silence")


# ---------------------------------------------------------------------------------------------
# signals and references


def _channel(kind: str, n: int, rate: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    if kind == "noise":
        return 0.1 * rng.standard_normal(n)
    if kind == "tone60":  # where the truncated 38 Hz high pass matters most
        return 0.5 * np.sin(2 * np.pi * 60 * t + seed)
    if kind == "tone1k":
        return 0.3 * np.sin(2 * np.pi * 1000 * t + seed)
    if kind == "speech":
        return synth.speech_like((n + 0.5) / rate, rate, seed=seed)[:n]
    if kind == "loud_quiet":  # a third loud, the rest 54 dB down: the relative gate drops it
        k = n // 3
        return np.concatenate([0.5 * rng.standard_normal(k), 1e-3 * rng.standard_normal(n - k)])
    if kind == "near_gate":  # blocks on both sides of the -70 absolute gate
        return np.concatenate([6e-4 * rng.standard_normal(n // 2), 3e-5 * rng.standard_normal(n - n // 2)])
    if kind == "near_silence":  # below -70: floored
        return 1e-5 * rng.standard_normal(n)
    if kind == "silence":
        return np.zeros(n)
    raise ValueError(kind)


@functools.lru_cache(maxsize=None)
def battery(rate: int, channels: int, seconds: float) -> np.ndarray:
    """``[len(ITEMS), channels, n]`` float32, every channel a different seed (read-only)."""
    n = int(seconds * rate)
    x = np.stack([np.stack([_channel(k, n, rate, 10 * i + c) for c in range(channels)]) for i, k in enumerate(ITEMS)])
    x = x.astype(np.float32)
    x.setflags(write=False)
    return x


def signal(x, rate: int):
    return AudioSignal(torch.from_numpy(np.array(x, np.float32)), rate)


_fir_filter = Meter.apply_filter_gpu


def _fir_per_channel(self, data):
    """audiotools' own FIR filtering, one channel at a time (its GPU path is only right for mono)."""
    return torch.cat([_fir_filter(self, data[..., c : c + 1]) for c in range(data.shape[-1])], dim=-1)


@pytest.fixture
def fir_meter(monkeypatch):
    """audiotools measures loudness with its FIR (GPU) filter on CPU, channels kept apart."""
    monkeypatch.setattr(Meter, "apply_filter", _fir_per_channel)


def reference_loudness(x, rate: int) -> np.ndarray:
    """``AudioSignal.loudness(use_fir=True)`` (0.5 s padding and -70 floor included)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Meter, "apply_filter_gpu", _fir_per_channel)
        return signal(x, rate).loudness(use_fir=True).numpy()


@functools.lru_cache(maxsize=None)
def jitted(name: str, rate: int, **kw):
    """One jitted function per (function, rate, options), reused across tests."""
    fn = getattr(A, name)
    if name == "rescale_audio":
        return jax.jit(lambda x: fn(x, **kw))
    if name == "shift_phase_items":
        return jax.jit(lambda x, s: fn(x, s, rate))
    if name in ("augment_with_shifts", "augment"):
        return jax.jit(lambda x, s: fn(x, rate, s, **kw))
    return jax.jit(lambda x: fn(x, rate, **kw))


# ---------------------------------------------------------------------------------------------
# loudness


@pytest.mark.parametrize("rate", RATES)
def test_fir_taps_are_audiotools(rate):
    """Both 512-tap stages bit-equal to ``Meter(rate, use_fir=True).firs`` (stored reversed);
    the composed kernel is their convolution."""
    firs = Meter(rate, use_fir=True).firs.numpy()[:, 0, ::-1]
    stages = A.fir_stages(rate)
    for ours, theirs in zip(stages, firs):
        assert ours.dtype == np.float32 and np.array_equal(ours, theirs)
    kernel = A.fir_kernel(rate)
    assert kernel.shape == (1023,)
    np.testing.assert_allclose(kernel, np.convolve(*[s.astype(np.float64) for s in stages]), rtol=1e-6, atol=1e-9)


def test_audiotools_fir_meter_fails_on_stereo():
    """Why stereo references filter per channel: audiotools' own FIR path raises on C > 1.
    (If audiotools fixes this, compare against it directly.)"""
    x = battery(44100, 2, 0.38)[:2]
    with pytest.raises(RuntimeError):
        signal(x, 44100).loudness(use_fir=True)


@pytest.mark.parametrize("rate,channels,seconds", CASES)
def test_loudness_fir_is_audiotools(rate, channels, seconds):
    """Noise, tones, speech, a loud/quiet split (relative gate), blocks straddling the absolute
    gate, near-silence and silence (both floored to -70), against the FIR meter within 1e-3 LU."""
    x = battery(rate, channels, seconds)
    theirs = reference_loudness(x, rate)
    ours = np.asarray(jitted("loudness_fir", rate)(x))
    assert ours.shape == (len(ITEMS),) and ours.dtype == np.float32
    assert np.abs(ours - theirs).max() < LU_TOL, dict(zip(ITEMS, ours - theirs))
    # the battery exercises what it claims to
    loud = dict(zip(ITEMS, theirs))
    assert loud["silence"] == loud["near_silence"] == -70.0
    assert -70.0 < loud["near_gate"] < -55.0
    assert loud["loud_quiet"] > loud["noise"] + 5  # the quiet two thirds are gated out


def test_loudness_fir_differs_from_iir_meter_on_low_tones():
    """The FIR path is not the CPU meter: on a 60 Hz tone audiotools' GPU and CPU meters differ
    by ~0.4 LU at 44.1 kHz (the 38 Hz high pass still rings after 512 taps); on speech by < 0.01."""
    from dac_jax.audio import loudness as iir

    x = battery(44100, 1, 1.3)
    fir = np.asarray(jitted("loudness_fir", 44100)(x))
    diff = dict(zip(ITEMS, fir - iir.loudness(x, 44100)))
    assert abs(diff["tone60"]) > 0.2
    assert abs(diff["speech"]) < 0.01


def test_loudness_scales_with_gain():
    """Loudness is 20 log10(gain) higher after a gain (where no block crosses a gate)."""
    x = battery(44100, 1, 1.3)[:4]
    f = jitted("loudness_fir", 44100)
    np.testing.assert_allclose(np.asarray(f(x * 0.1)), np.asarray(f(x)) - 20.0, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# volume norm, rescale, phase shift


@pytest.mark.parametrize("rate,channels,seconds", [(44100, 1, 0.38), (24000, 2, 1.3)])
def test_volume_norm_is_audiotools(rate, channels, seconds):
    """``AudioSignal.normalize(-16)`` with the loudness measured by the FIR meter (cached by
    ``loudness(use_fir=True)``, which normalize reuses)."""
    x = battery(rate, channels, seconds)
    sig = signal(x, rate)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Meter, "apply_filter_gpu", _fir_per_channel)
        sig.loudness(use_fir=True)
    theirs = sig.normalize(-16).audio_data.numpy()
    ours = np.asarray(jitted("volume_norm", rate)(x))
    assert rel_err(ours, theirs) < 1e-5
    for i, k in enumerate(ITEMS):  # per item too: the quiet ones are scaled by up to ~500
        assert rel_err(ours[i], theirs[i]) < 1e-5, k


@pytest.mark.parametrize("rate,channels,seconds", [(44100, 1, 0.38), (24000, 2, 1.3)])
def test_volume_norm_reaches_target_and_keeps_silence(rate, channels, seconds):
    """After volume_norm every item measures -16 LUFS within 0.05 LU, except those that measured
    the -70 floor (their gain is fixed, 10^(54/20)); silence stays exactly zero, nothing NaN."""
    x = battery(rate, channels, seconds)
    before = np.asarray(jitted("loudness_fir", rate)(x))
    y = np.asarray(jitted("volume_norm", rate)(x))
    after = np.asarray(jitted("loudness_fir", rate)(y))
    assert np.isfinite(y).all()
    loud = before > -70.0
    assert loud.sum() >= 6
    assert np.abs(after[loud] + 16.0).max() < 0.05, after
    np.testing.assert_allclose(y[~loud], x[~loud] * np.float32(10 ** (54 / 20)), rtol=1e-5)
    assert (y[ITEMS.index("silence")] == 0).all()


def test_rescale_audio_is_audiotools():
    """``ensure_max_of_audio(1.0)``: each channel whose peak exceeds 1 scaled to peak 1, per
    channel (not per item); quieter channels untouched."""
    x = np.array(battery(44100, 2, 0.38)[:4]) * np.array([0.5, 9.0, 2.0, 30.0], np.float32)[:, None, None]
    x[0, 1] *= 10.0  # item 0: one channel over, one under
    theirs = signal(x, 44100).ensure_max_of_audio(1.0).audio_data.numpy()
    ours = np.asarray(jitted("rescale_audio", 44100)(x))
    assert rel_err(ours, theirs) < 1e-6
    peak = np.abs(ours).max(-1)
    assert (peak <= 1.0).all()
    over = np.abs(x).max(-1) > 1
    np.testing.assert_allclose(peak[over], 1.0, rtol=1e-6)
    np.testing.assert_array_equal(ours[~over], x[~over])
    # a smaller bound, in the config's units
    assert np.abs(np.asarray(A.rescale_audio(x, 0.25))).max() <= 0.25


def test_shift_phase_keeps_magnitudes_and_changes_waveform():
    """The shift rotates every bin and keeps its magnitude; the resynthesised signal's STFT is the
    overlap-add projection of that, so its magnitudes are kept closely for tonal content (tones,
    the synthetic voice: within 1% of the peak bin, measured <= 0.6%, away from the first and last
    frames and the DC/Nyquist bins), the energy of every item within 1% (noise-like frames are
    re-mixed, as in audiotools); the waveform changes; pi inverts it; 0 gives it back."""
    rate = 44100
    x = battery(rate, 1, 0.38)
    shifts = np.array([0.0, np.pi, 1.0, -2.0, 2.5, 0.7, 1.5, -1.0], np.float32)  # per ITEMS
    y = np.asarray(jitted("shift_phase_items", rate)(x, shifts))
    w = spectral.default_window_length(rate)
    mag = lambda a: np.abs(np.asarray(spectral.stft(a, w)))[..., 1:-1, 4:-4]  # noqa: E731
    for k in ("tone1k", "speech"):
        i = ITEMS.index(k)
        assert rel_err(mag(y[i]), mag(x[i])) < 0.01, k
        assert np.abs(y[i] - x[i]).max() > 0.05, k
    energy_x, energy_y = (x**2).sum(-1).ravel(), (y**2).sum(-1).ravel()
    live = energy_x > 0
    np.testing.assert_allclose(energy_y[live], energy_x[live], rtol=0.01)
    np.testing.assert_allclose(y[0], x[0], atol=1e-5)  # shift 0
    np.testing.assert_allclose(y[1], -x[1], atol=1e-5)  # shift pi: the 60 Hz tone inverted
    assert (y[ITEMS.index("silence")] == 0).all()


# ---------------------------------------------------------------------------------------------
# the recipe


def dac_transform():
    """DAC's ``build_transform`` for conf/base.yml: Identity preprocess, Identity augment (prob 0),
    postprocess VolumeNorm(-16), RescaleAudio, ShiftPhase."""
    return tfm.Compose(
        tfm.Compose(tfm.Identity(), name="preprocess"),
        tfm.Compose(tfm.Identity(), name="augment", prob=0.0),
        tfm.Compose(tfm.VolumeNorm(db=("const", -16)), tfm.RescaleAudio(), tfm.ShiftPhase(), name="postprocess"),
    )


@pytest.mark.parametrize("rate", RATES)
def test_augment_is_dac_transform(rate, fir_meter):
    """audiotools' Compose as DAC's train loop applies it (``transform(signal.clone(),
    **batch_instantiate(states, signal))``), its loudness on the FIR path, vs ours given the
    shifts audiotools drew. Loud items (peak > 1 after normalisation) exercise the rescale."""
    x = np.array(battery(rate, 1, 0.38))
    x[0] = 0.0
    x[0, :, ::2000] = 0.5  # a click train: quiet but peaky, so over 1 after normalisation
    transform = dac_transform()
    sig = signal(x, rate)
    kwargs = transform.batch_instantiate(list(range(len(x))), sig)
    theirs = transform(sig.clone(), **kwargs).audio_data.numpy()
    shifts = kwargs["Compose"]["2.postprocess"]["2.ShiftPhase"]["shift"].numpy().astype(np.float32)
    ours = np.asarray(jitted("augment_with_shifts", rate)(x, shifts))
    assert np.abs(ours - theirs).max() < 1e-5
    assert np.isfinite(ours).all() and (ours[ITEMS.index("silence")] == 0).all()
    # it did normalise, rescale and shift
    normed = np.asarray(jitted("volume_norm", rate)(x))
    assert np.abs(normed).max() > 1.0  # so the rescale acted
    rescaled = np.asarray(jitted("rescale_audio", rate)(normed))
    assert np.abs(ours - rescaled).max() > 0.01


def test_config_switches():
    """Each switch drops its stage; target and bound are honoured; bad configs raise."""
    rate = 44100
    x = battery(rate, 1, 0.38)
    shifts = np.array([0.0, np.pi, 1.0, -2.0, 2.5, 0.7, 1.5, -1.0], np.float32)
    only_norm = A.AugmentConfig(rescale=False, shift_phase=False, target_db=-20.0)
    y = np.asarray(jitted("augment_with_shifts", rate, config=only_norm)(x, shifts))
    np.testing.assert_allclose(np.asarray(jitted("loudness_fir", rate)(y))[:6], -20.0, atol=0.05)
    only_phase = A.AugmentConfig(volume_norm=False, rescale=False)
    y = np.asarray(jitted("augment_with_shifts", rate, config=only_phase)(x, shifts))
    np.testing.assert_allclose(y, np.asarray(jitted("shift_phase_items", rate)(x, shifts)), atol=1e-6)
    assert A.DAC_AUGMENT == A.AugmentConfig(True, -16.0, True, 1.0, True, (-math.pi, math.pi))
    for bad in (dict(phase_range=(1.0, -1.0)), dict(max_value=0.0), dict(target_db=float("nan"))):
        with pytest.raises(UsageError):
            A.AugmentConfig(**bad)


def test_bad_inputs_raise_clear_errors():
    x = battery(44100, 1, 0.38)[:2]
    with pytest.raises(AudioError, match="batch, channels, time"):
        A.loudness_fir(x[0], 44100)
    with pytest.raises(AudioError, match="1 to 5 channels"):
        A.loudness_fir(np.zeros((1, 6, 22050), np.float32), 44100)
    with pytest.raises(UsageError, match="static"):
        A.loudness_fir(x, jnp.asarray(44100))
    with pytest.raises(UsageError, match="shifts"):
        A.shift_phase_items(x, np.zeros(3, np.float32), 44100)


# ---------------------------------------------------------------------------------------------
# randomness and compilation


def test_item_keys_depend_on_global_index_only():
    root = jax.random.key(0)
    full = A.item_keys(root, 7, 0, 8)
    tail = A.item_keys(root, 7, 4, 4)
    assert (jax.random.key_data(full[4:]) == jax.random.key_data(tail)).all()
    # different steps, purposes and items give different keys
    other_step = A.item_keys(root, 8, 0, 8)
    other_purpose = A.item_keys(root, 7, 0, 8, purpose=A.purpose_id("quantizer_dropout"))
    data = [np.asarray(jax.random.key_data(k)).reshape(8, -1) for k in (full, other_step, other_purpose)]
    assert len({tuple(r) for d in data for r in d}) == 24
    # raw uint32 keys work too, and agree with typed ones
    raw = A.item_keys(jax.random.PRNGKey(0), 7, 0, 8)
    assert (raw == jax.random.key_data(full)).all()
    shifts = np.asarray(A.phase_shifts(full))
    assert shifts.shape == (8,) and (np.abs(shifts) < np.pi).all() and len(set(shifts.tolist())) == 8


def test_augment_of_a_batch_equals_augment_of_its_halves():
    """Keys from the global index make the result independent of how the batch is split: the
    whole batch equals its two halves augmented with their offsets' keys, and equals a vmap over
    two emulated devices that derive their offset from ``lax.axis_index``."""
    rate = 44100
    x = battery(rate, 1, 0.38)  # 8 items
    root, step = jax.random.key(3), 11
    f = jitted("augment", rate)
    whole = np.asarray(f(x, A.item_keys(root, step, 0, 8)))
    halves = np.concatenate([np.asarray(f(x[:4], A.item_keys(root, step, 0, 4))),
                             np.asarray(f(x[4:], A.item_keys(root, step, 4, 4)))])
    np.testing.assert_allclose(halves, whole, rtol=0, atol=1e-6)

    def on_device(xd):
        offset = jax.lax.axis_index("data") * xd.shape[0]
        return A.augment(xd, rate, A.item_keys(root, step, offset, xd.shape[0]))

    devices = jax.jit(jax.vmap(on_device, axis_name="data"))(x.reshape(2, 4, *x.shape[1:]))
    np.testing.assert_allclose(np.asarray(devices).reshape(x.shape), whole, rtol=0, atol=1e-6)
    # and the shifts really differ per item: augmenting with other keys changes the output
    other = np.asarray(f(x, A.item_keys(root, step + 1, 0, 8)))
    assert np.abs(other - whole).max() > 0.01


def test_augment_compiles_once_per_shape():
    traces = []

    @jax.jit
    def step(x, key):
        traces.append(x.shape)
        return A.augment(x, 44100, A.item_keys(key, 0, 0, x.shape[0]))

    x = battery(44100, 1, 0.38)[:2]
    a = step(x, jax.random.key(0))
    b = step(x * 0.5, jax.random.key(1))
    assert len(traces) == 1
    assert np.isfinite(np.asarray(a)).all() and np.isfinite(np.asarray(b)).all()
    assert np.abs(np.asarray(a) - np.asarray(b)).max() > 0.01  # new keys, new shifts


def test_a_fractional_augment_prob_gets_each_item_the_stage_with_that_probability():
    rate = 16000
    x = jnp.asarray(np.random.default_rng(0).standard_normal((256, 1, 4000)).astype(np.float32) * 3.0)
    keys = A.item_keys(jax.random.key(5), 3, 0, 256)
    config = A.AugmentConfig(volume_norm=False, shift_phase=False, augment_prob=0.3, augment_stage=("rescale",))
    y = np.asarray(jax.jit(A.augment, static_argnums=(1, 3))(x, rate, keys, config))
    rescaled = np.asarray(A.rescale_audio(x))
    got = np.array([np.array_equal(y[b], rescaled[b]) for b in range(256)])
    untouched = np.array([np.array_equal(y[b], np.asarray(x[b])) for b in range(256)])
    assert (got ^ untouched).all()  # each item either got the stage or was left as it was
    assert abs(got.mean() - 0.3) < 0.1  # 256 draws: a standard deviation of 0.029
    np.testing.assert_array_equal(got, np.asarray(A.augment_draws(keys, 0.3)))
    # an item's draw depends on its key alone, and the phase shifts drawn from the keys do not change
    again = np.asarray(A.augment(x[:7], rate, keys[:7], config))
    np.testing.assert_array_equal(again, y[:7])
    full = A.AugmentConfig(augment_prob=0.3, augment_stage=("rescale",))
    np.testing.assert_array_equal(A.phase_shifts(keys, full.phase_range), A.phase_shifts(keys))
    with pytest.raises(UsageError, match="augment_prob must be in"):
        A.AugmentConfig(augment_prob=1.5)
    with pytest.raises(UsageError, match="not on"):
        A.AugmentConfig(rescale=False, augment_prob=0.5, augment_stage=("rescale",))
