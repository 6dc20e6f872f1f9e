"""dac_jax.audio.loudness against audiotools' AudioSignal.loudness() / normalize() /
ensure_max_of_audio() on CPU, the original's own calls in compress and decompress.

audiotools filters with torchaudio's pure-Python sample loop here (~1.3 s per second of audio,
whatever the batch), so each reference is one batched call, computed once per module.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from dac_jax.audio import loudness as L
from dac_jax.audio import resample as R
from dac_jax.audio import synth
from dac_jax.errors import AudioError
from tests.audio import require_reference

TOL_LU = 1e-3  # the codec needs 0.01 LU; measured differences are up to 3e-4 LU (48 kHz; 1.6e-4 at 24 kHz)


def tone(d: float, rate: int, freq: float, level: float) -> np.ndarray:
    t = np.arange(int(d * rate)) / rate
    return (level * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def mono_batch(d: float, rate: int) -> np.ndarray:
    """[N, 1, T]: noise, tones, a sweep, speech at several levels; loud-then-quiet (the relative
    gate drops the quiet half); -60 and -75 dBFS noise (partly / wholly under the -70 gate);
    silence (the -70 floor)."""
    n = int(d * rate)
    loud_quiet = synth.noise(d, rate, seed=7, level=0.3)
    loud_quiet[n // 2:] *= 0.01
    rows = [
        synth.noise(d, rate, seed=1),
        synth.noise(d, rate, seed=2, level=0.003),
        tone(d, rate, 1000.0, 0.5),
        tone(d, rate, 60.0, 0.8),
        synth.sine_sweep(d, rate),
        synth.speech_like(d, rate, seed=3),
        synth.speech_like(d, rate, seed=4, level=0.02),
        loud_quiet,
        synth.noise(d, rate, seed=5, level=3e-4),
        synth.noise(d, rate, seed=6, level=1e-4),
        np.zeros(n, np.float32),
    ]
    return np.stack(rows)[:, None]


def stereo_batch(d: float, rate: int) -> np.ndarray:
    """[3, 2, T]: different channels, one loud and one quiet channel, a silent channel."""
    return np.stack([
        np.stack([synth.noise(d, rate, seed=8), synth.speech_like(d, rate, seed=9)]),
        np.stack([synth.sine_sweep(d, rate), 0.1 * synth.sine_sweep(d, rate, f0=80.0)]),
        np.stack([tone(d, rate, 440.0, 0.3), np.zeros(int(d * rate), np.float32)]),
    ])


BATCHES = {"mono": mono_batch, "stereo": stereo_batch}


@functools.lru_cache(maxsize=None)
def case(kind: str, d: float, rate: int) -> tuple[np.ndarray, np.ndarray]:
    x = BATCHES[kind](d, rate)
    return x, theirs(x, rate)


def audio_signal(x: np.ndarray, rate: int):
    """audiotools' AudioSignal of a copy of ``x`` (the reference: see tests.requires)."""
    torch = require_reference("torch")
    return require_reference("audiotools").AudioSignal(torch.from_numpy(x.copy()), rate)


def theirs(x: np.ndarray, rate: int) -> np.ndarray:
    return audio_signal(x, rate).loudness().numpy()


def check(kind: str, d: float, rate: int) -> None:
    x, ref = case(kind, d, rate)
    ours = L.loudness(x, rate)
    assert ours.shape == ref.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=0, atol=TOL_LU)
    floor = ref == -70.0  # silence and near-silence sit exactly on the floor, in both
    np.testing.assert_array_equal(ours[floor], ref[floor])


@pytest.mark.parametrize("kind", ["mono", "stereo"])
@pytest.mark.parametrize("duration", [0.3, 1.0])
@pytest.mark.parametrize("rate", [44100, 24000, 16000])
def test_matches_audiotools(rate, duration, kind):
    check(kind, duration, rate)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mono", "stereo"])
@pytest.mark.parametrize("rate", [44100, 24000, 16000])
def test_matches_audiotools_10s(rate, kind):
    check(kind, 10.0, rate)


@pytest.mark.parametrize("rate", [11025, 22050, 48000])
def test_other_rates(rate):
    """11025 Hz: 0.4 s is 4410 samples, four 1102-sample strides plus 2, the uneven case."""
    check("mono", 0.5, rate)


def test_the_batch_expectations_hold():
    """The test signals exercise what they claim: the floor, both gates, both channels."""
    x, ref = case("mono", 1.0, 16000)
    assert (ref[-3:] == -70.0).sum() == 2 and -70.0 < ref[-3] < -65.0  # 1e-4, silence; 3e-4 partly gated
    # loud-then-quiet: the relative gate drops the -40 dB half as the absolute gate drops digital
    # silence; averaging those blocks in would cost ~2 LU
    silenced = x[7:8].copy()
    silenced[..., 8000:] = 0.0
    assert abs(theirs(silenced, 16000)[0] - ref[7]) < 0.01
    s, sref = case("stereo", 1.0, 16000)
    assert abs(sref[2] - theirs(s[2:3, :1], 16000)[0]) < 0.01  # a silent channel adds nothing


@pytest.mark.parametrize("rate, frames", [(16000, 1), (16000, 100), (16000, 7999), (16000, 8000), (44100, 2205),
                                          (44100, 22049)])
def test_short_signals_are_zero_padded(rate, frames):
    """Below 0.5 s audiotools pads with int((0.5 - T/sr) * sr) zeros before filtering."""
    x = synth.speech_like(0.6, rate, seed=1)[None, None, :frames]
    np.testing.assert_allclose(L.loudness(x, rate), theirs(x, rate), rtol=0, atol=TOL_LU)


def test_shapes_like_audiosignal():
    """[T] and [C, T] are one item, as AudioSignal reads them."""
    x, ref = case("stereo", 0.3, 16000)
    assert L.loudness(x[0], 16000).shape == (1,)
    np.testing.assert_allclose(L.loudness(x[0], 16000), ref[:1], atol=TOL_LU)
    np.testing.assert_allclose(L.loudness(x[0, 0], 16000), theirs(x[:1, :1], 16000), atol=TOL_LU)


def test_five_channels():
    """BS.1770 weights the 4th and 5th channels (surrounds) by 1.41."""
    x = np.stack([synth.noise(0.3, 16000, seed=s, level=0.05 * (s + 1)) for s in range(5)])[None]
    np.testing.assert_allclose(L.loudness(x, 16000), theirs(x, 16000), rtol=0, atol=TOL_LU)


def test_no_more_than_five_channels():
    """audiotools knows no 6th channel weight: six channels are an error."""
    with pytest.raises(AudioError, match="1 to 5 channels"):
        L.loudness(np.zeros((1, 6, 8000), np.float32), 16000)


def _streaming_signal(rate: int) -> np.ndarray:
    """A 12 s stereo batch of two, with a quiet stretch for the gates."""
    x = np.stack([np.stack([synth.sine_sweep(12.0, rate, f0=30.0 + s), synth.noise(12.0, rate, seed=s)])
                  for s in range(2)])
    x[0, :, 100000:300000] *= 0.001
    return x


def test_streaming_equals_whole():
    """Pieces of any size give the whole-signal value: a 12 s stereo signal, whole vs ragged pieces."""
    rate = 44100
    x = _streaming_signal(rate)
    whole = L.LoudnessMeter(rate).update(x).result()
    meter = L.LoudnessMeter(rate)
    cuts = np.sort(np.random.default_rng(0).integers(0, x.shape[-1], 40))
    for a, b in zip(np.r_[0, cuts], np.r_[cuts, x.shape[-1]]):
        meter.update(x[..., a:b])
    np.testing.assert_allclose(meter.result(), whole, rtol=0, atol=1e-6)
    np.testing.assert_allclose(L.loudness(x, rate, chunk=4096), whole, rtol=0, atol=1e-6)


def test_streaming_is_the_audiotools_value():
    """The first second of the streaming signal, streamed in 1000-sample pieces: audiotools' value."""
    rate = 44100
    short = np.ascontiguousarray(_streaming_signal(rate)[..., :rate])
    meter = L.LoudnessMeter(rate)
    for a in range(0, rate, 1000):
        meter.update(short[..., a:a + 1000])
    np.testing.assert_allclose(meter.result(), theirs(short, rate), rtol=0, atol=TOL_LU)


def test_k_weighting_is_pyloudnorms_in_float32():
    pyloudnorm = require_reference("pyloudnorm")
    for rate in [16000, 24000, 44100, 48000]:
        stages = list(pyloudnorm.Meter(rate)._filters.values())
        for (b, a), stage in zip(L.k_weighting(rate), stages):
            np.testing.assert_array_equal(b, np.float32(stage.b))
            np.testing.assert_array_equal(a, np.float32(stage.a))


@pytest.mark.parametrize("target", [-16, -16.0, "input_db"])
def test_normalize_matches_audiotools(target):
    """compress: normalize(-16) with the cached loudness; decompress: normalize(input_db), a float32
    array of the file, against a batch of mono channels (it broadcasts: each channel on its own)."""
    x, ref_db = case("mono", 0.3, 24000)
    x, ref_db = x[:8], ref_db[:8]
    db = np.array([-23.5], np.float32) if target == "input_db" else target
    torch = require_reference("torch")
    signal = audio_signal(x, 24000)
    signal._loudness = torch.from_numpy(ref_db)  # what signal.loudness() caches, measured by case()
    expected = signal.normalize(db).audio_data.numpy()
    ours = L.normalize(x, db, loudness_db=ref_db)
    np.testing.assert_allclose(ours, expected, rtol=3e-7, atol=0)
    np.testing.assert_allclose(L.normalize(x, db, sample_rate=24000), expected, rtol=3e-4, atol=0)
    gain = L.normalize_gain(ref_db, db)
    assert gain.dtype == np.float32
    np.testing.assert_allclose(gain, np.exp((np.float64(np.asarray(db, np.float64)) - ref_db) * np.log(10) / 20),
                               rtol=1e-6)


def _loud_channel() -> np.ndarray:
    """[3, 2, 5000] with one channel of one item peaking at 3."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((3, 2, 5000)) * np.array([0.1, 0.2, 1.0])[:, None, None]).astype(np.float32)
    x[1, 0, 17] = 3.0
    return x


def test_ensure_max_of_audio_matches_audiotools():
    """The peak is per item AND channel: only the channels above 1 are scaled, each to peak 1."""
    x = _loud_channel()
    expected = audio_signal(x, 16000).ensure_max_of_audio().audio_data.numpy()
    np.testing.assert_array_equal(L.ensure_max_of_audio(x), expected)


def test_ensure_max_of_audio_scales_each_loud_channel():
    """The peak is per item AND channel, and block-gathered peaks give the whole-signal limiter."""
    x = _loud_channel()
    ours = L.ensure_max_of_audio(x)
    np.testing.assert_array_equal(ours[1, 1], x[1, 1])  # the loud channel's neighbour is untouched
    np.testing.assert_array_equal(ours[0], x[0])  # so is every channel under 1
    assert np.abs(ours[1, 0]).max() == 1.0 and np.abs(ours).max(-1).max() == 1.0
    # peak_gain from block-gathered peaks of a normalised signal equals the whole-signal limiter
    gain = np.float32(3.0)
    peaks = np.max([np.abs(x[..., a:a + 999]).max(-1) for a in range(0, 5000, 999)], axis=0)
    np.testing.assert_array_equal(L.peak_gain(peaks * gain)[..., None] * (x * gain), L.ensure_max_of_audio(x * gain))


def test_compress_preprocessing_matches_the_original():
    """The original compress's steps on a 48 kHz stereo clip: resample to 44.1 kHz (julius), input_db
    = loudness(), normalize(-16), ensure_max_of_audio(): same input_db, same audio."""
    require_reference("julius")
    x = np.stack([synth.speech_like(0.8, 48000, seed=1), synth.noise(0.8, 48000, seed=2, level=0.02)])[None]
    x[0, 0, 5000] = 0.9  # a click: after +gain to -16 LUFS this channel peaks above 1
    signal = audio_signal(x, 48000)
    signal.resample(44100)
    input_db = signal.loudness()
    signal.normalize(-16)
    signal.ensure_max_of_audio()

    y = np.asarray(R.resample_frac(x, 48000, 44100))
    db = L.loudness(y, 44100)
    np.testing.assert_allclose(db, input_db.numpy(), atol=TOL_LU)
    ours = L.ensure_max_of_audio(L.normalize(y, -16, loudness_db=db))
    assert np.abs(ours[0, 0]).max() == 1.0 and np.abs(ours[0, 1]).max() < 1.0
    np.testing.assert_allclose(ours, signal.audio_data.numpy(), rtol=0, atol=1e-5)


def test_compiled_lfilter_is_torchaudios_loop(compiled_lfilter):
    """The numba loop the tests give torchaudio (tests.reference.use_compiled_lfilter) computes
    what torchaudio's own Python loop computes, up to float32 summation order."""
    torch = require_reference("torch")
    filtering = require_reference("torchaudio.functional.filtering")

    if not compiled_lfilter:
        pytest.skip("torchaudio's compiled extension is available here")
    x = torch.from_numpy(synth.speech_like(0.1, 44100, seed=1)[None, None].copy())
    a = torch.tensor([[1.0, -1.99, 0.9901]])  # poles at radius 0.995: a long, sensitive recursion
    b = torch.tensor([[1.0, -2.0, 1.0]])
    compiled = filtering.lfilter(x, a, b, clamp=False)
    patched = filtering._lfilter_core_loop
    try:
        filtering._lfilter_core_loop = filtering._lfilter_core_generic_loop
        python = filtering.lfilter(x, a, b, clamp=False)
    finally:
        filtering._lfilter_core_loop = patched
    assert float(python.abs().max()) > 0.1
    np.testing.assert_allclose(compiled.numpy(), python.numpy(), rtol=0, atol=1e-4 * float(python.abs().max()))
