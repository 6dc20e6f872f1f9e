"""dac_jax.audio.resample against julius' resample_frac (what the original's AudioSignal.resample
runs): values within 1e-5 (measured: < 5e-7), output lengths equal, blocks equal the whole."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
import soundfile as sf

from dac_jax.audio import io, synth
from dac_jax.audio import resample as R
from dac_jax.errors import AudioError
from tests.audio import require_reference

PAIRS = [(22050, 44100), (48000, 44100), (8000, 16000), (44100, 24000), (44100, 16000), (24000, 44100),
         (16000, 48000)]
PAIR_IDS = [f"{a}-{b}" for a, b in PAIRS]
# short ones (1 .. fewer samples than any kernel: K = 53 .. 581), odd ones, one of several periods
LENGTHS = [1, 7, 40, 333, 1001, 9999]
TOL = 1e-5


def signals(rate: int, length: int) -> np.ndarray:
    """float32 [3, length]: noise, a sine sweep, the speech-like signal."""
    d = (length + 1) / rate
    return np.stack([synth.noise(d, rate, seed=length)[:length] * 3, synth.sine_sweep(d, rate)[:length],
                     synth.speech_like(d, rate, seed=length)[:length]])


def theirs(x: np.ndarray, old: int, new: int, **kw) -> np.ndarray:
    """julius' resample_frac (the reference: see tests.requires)."""
    torch = require_reference("torch")
    julius = require_reference("julius")
    return julius.resample_frac(torch.from_numpy(np.ascontiguousarray(x)), old, new, **kw).numpy()


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("old, new", PAIRS, ids=PAIR_IDS)
def test_matches_julius(old, new, length):
    x = signals(old, length)
    for kw in [{}, {"full": True}]:
        ref = theirs(x, old, new, **kw)
        ours = R.resample_frac(x, old, new, **kw)
        assert isinstance(ours, jax.Array) and ours.dtype == np.float32
        assert ours.shape == ref.shape, kw
        assert ref.size == 0 or np.abs(np.asarray(ours) - ref).max() < TOL, kw
        assert R.output_length(length, old, new, **kw) == ref.shape[-1]
        # the blockwise path, with blocks far smaller than the signal where it is long enough
        long = R.resample_long(x, old, new, block_samples=1000, **kw)
        assert isinstance(long, np.ndarray) and long.shape == ref.shape
        assert ref.size == 0 or np.abs(long - ref).max() < TOL


@pytest.mark.parametrize("old, new", PAIRS, ids=PAIR_IDS)
def test_kernel_is_julius(old, new):
    julius = require_reference("julius")
    ref = julius.ResampleFrac(old, new).kernel[:, 0].numpy()
    ours = R.resample_kernel(old, new)
    assert ours.shape == ref.shape and ours.dtype == np.float32
    assert np.abs(ours - ref).max() < 1e-6  # julius' float32 construction, repeated op for op


@pytest.mark.parametrize("old, new", [(44100, 44100), (48000, 48000)])
def test_equal_rates_are_identity(old, new):
    x = signals(old, 777)
    ref = theirs(x, old, new, output_length=5)  # julius ignores output_length then
    np.testing.assert_array_equal(np.asarray(R.resample_frac(x, old, new, output_length=5)), ref)
    np.testing.assert_array_equal(R.resample_long(x, old, new, block_samples=100), x)


@pytest.mark.parametrize("old, new, length", [(48000, 44100, 4_600_001), (44100, 24000, 4_600_003)])
def test_long_signal_blocks_and_float32_length_rule(old, new, length):
    """Above ~4M output samples julius' float32 length rule gives floor+1 here; several 2**20-sample
    blocks must join into julius' whole-signal result."""
    plan = R.ResamplePlan.make(old, new)
    assert R.output_length(length, old, new) == plan.new * length // plan.old + 1
    x = (synth.noise(length / old + 1e-3, old, seed=1)[:length] * 3)[None]
    ref = theirs(x, old, new)
    ours = R.resample_long(x, old, new)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < TOL


@pytest.mark.parametrize("old, new", PAIRS, ids=PAIR_IDS)
def test_blocks_equal_whole(old, new):
    """[2, 3, T] signal, many blocks with a padded last one: equal to the whole-signal JAX result."""
    x = np.stack([signals(old, 20011), signals(old, 20011)[::-1] * 0.5])
    whole = np.asarray(R.resample_frac(x, old, new))
    pieces = list(R.iter_resample(x, old, new, block_samples=1500))
    assert len(pieces) > 3 and all(p.shape[:2] == (2, 3) for p in pieces)
    np.testing.assert_allclose(np.concatenate(pieces, axis=-1), whole, rtol=0, atol=1e-6)
    out = np.full(whole.shape, np.nan, np.float32)
    assert R.resample_long(x, old, new, block_samples=1500, out=out) is out
    np.testing.assert_allclose(out, whole, rtol=0, atol=1e-6)


def test_compiles_once_per_block_shape():
    old, new = 44100, 24000
    plan = R.ResamplePlan.make(old, new, zeros=20)  # a plan no other test uses: a fresh jit cache
    run = R._block_fn(plan)
    x = signals(old, 30001)[:2]
    for length in [30001, 29000, 12345]:  # different lengths, same block shape
        R.resample_long(x[:, :length], old, new, zeros=20, block_samples=2048)
    assert run._cache_size() == 1


@pytest.mark.parametrize("kw, length", [({"output_length": 0}, 1000), ({"output_length": 300}, 1000),
                                        ({"output_length": 545}, 1000)])
def test_explicit_output_length(kw, length):
    x = signals(44100, length)
    ref = theirs(x, 44100, 24000, **kw)
    ours = np.asarray(R.resample_frac(x, 44100, 24000, **kw))
    assert ours.shape == ref.shape
    assert ref.size == 0 or np.abs(ours - ref).max() < TOL
    np.testing.assert_allclose(R.resample_long(x, 44100, 24000, **kw), ours, atol=1e-6)


@pytest.mark.parametrize("kw", [{"output_length": 546}, {"output_length": -1}, {"output_length": 10, "full": True}])
def test_bad_output_length_raises_like_julius(kw):
    x = signals(44100, 1000)
    with pytest.raises(ValueError) as ref:
        theirs(x, 44100, 24000, **kw)
    with pytest.raises(ValueError) as ours:
        R.resample_frac(x, 44100, 24000, **kw)
    assert str(ours.value) == str(ref.value)
    with pytest.raises(ValueError):
        R.resample_long(x, 44100, 24000, **kw)


def test_jit_with_static_rates():
    x = signals(48000, 5000)
    fn = jax.jit(functools.partial(R.resample_frac, old_sr=48000, new_sr=44100, full=True))
    ref = theirs(x, 48000, 44100, full=True)
    ours = np.asarray(fn(x))
    assert ours.shape == ref.shape and np.abs(ours - ref).max() < TOL


def test_streams_a_file(tmp_path):
    """An AudioReader as the source: read sequentially in blocks, same result as the whole file."""
    x = np.stack([synth.speech_like(1.0, 48000, seed=2), synth.noise(1.0, 48000, seed=3)])
    path = tmp_path / "x.flac"
    sf.write(str(path), x.T, 48000, subtype="PCM_24")
    samples, rate = io.read_audio(path)
    ref = theirs(samples, rate, 44100)
    with io.AudioReader(path) as reader:
        ours = R.resample_long(reader, reader.sample_rate, 44100, block_samples=5000)
    assert ours.shape == ref.shape and np.abs(ours - ref).max() < TOL


@pytest.mark.parametrize("bad", [np.zeros((2, 0), np.float32), np.float32(1.0)], ids=["empty", "scalar"])
def test_empty_input_is_an_audio_error(bad):
    with pytest.raises(AudioError):
        R.resample_frac(bad, 44100, 24000)
    with pytest.raises(AudioError):
        R.resample_long(bad, 44100, 24000)


def test_rates_must_be_integers():
    with pytest.raises(ValueError, match="old_sr must be an integer"):
        R.resample_frac(np.zeros(10), 44100.0, 24000)
