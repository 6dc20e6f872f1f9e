"""Chunk plans and chunked encode/decode at the model rate (window-independent and faithful)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dac_jax
from dac_jax import runtime
from dac_jax.audio import synth
from dac_jax.codec import chunked
from dac_jax.codec.plan import faithful_plan, independent_plan
from dac_jax.errors import AudioError
from dac_jax.model.config import PRESETS
from dac_jax.model.dac import DAC

# Window-independent decoding against decoding the whole sequence at once, max abs: measured
# <= 1.8e-7 (tiny-odd) and 1.0e-7 (44khz) (float32, x86_64 CPU); the tolerance is about 10x that.
DECODE_TOLERANCE = 2e-6
# The same with the 44khz model's default decoder on a CPU (Winograd F(4, 7)): each window's tiles
# start at its own first sample, so its float32 roundings are not the whole sequence's: measured 4.1e-6.
WINOGRAD_DECODE_TOLERANCE = 4e-5


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5000), st.integers(1, 300), st.integers(0, 40))
def test_independent_plan_keeps_every_frame_once_from_a_full_window(total, frames, context):
    plan = independent_plan(total, frames, context)
    covered = []
    for i in range(plan.n_chunks):
        first, last = plan.kept(i)
        start = plan.window_start(i)
        assert 0 <= start and start + plan.window <= total  # every window has the same length
        assert start + plan.offset(i) == first
        # the kept frames are at least `context` frames from any window edge that is not a file edge
        if start > 0:
            assert first - start >= plan.context
        if start + plan.window < total:
            assert start + plan.window - last >= plan.context
        covered.extend(range(first, last))
    assert covered == list(range(total))


@pytest.mark.parametrize("preset", ["44khz", "24khz", "16khz"])
def test_faithful_plan_follows_the_chunk_table(preset):
    model = DAC(PRESETS[preset])
    sr = PRESETS[preset].sample_rate
    hop = PRESETS[preset].hop_length
    table = {  # DAC_SPEC section 3: window -> (n_samples, hop); 1 s and 5 s
        "44khz": {1.0: (44544, 28522), 5.0: (220672, 204650)},
        "24khz": {1.0: (24000, 13346), 5.0: (120000, 109346)},
        "16khz": {1.0: (16000, 5346), 5.0: (80000, 69346)},
    }[preset]
    for window, (n_samples, step) in table.items():
        plan = faithful_plan(60 * sr, sr, hop, window, model.delay(), model.output_length,
                             DAC(PRESETS[preset], padded=False).encoder_frames)
        assert (plan.n_samples, plan.hop, plan.padded) == (n_samples, step, False)
        assert plan.n_chunks == len(range(0, 60 * sr, step))
    short = faithful_plan(sr // 2, sr, hop, 1.0, model.delay(), model.output_length, model.encoder_frames)
    assert short.padded and short.n_samples == sr // 2 and short.frames_per_chunk == -(-(sr // 2) // hop)


@pytest.mark.parametrize("preset, window", [("24khz", 0.38), ("16khz", 0.5)])
def test_too_small_windows_name_the_smallest_that_works(preset, window):
    cfg = PRESETS[preset]
    model = DAC(cfg)
    args = (10 * cfg.sample_rate, cfg.sample_rate, cfg.hop_length)
    rest = (model.delay(), model.output_length, model.encoder_frames)
    with pytest.raises(AudioError, match="too small for this model") as err:
        faithful_plan(*args, window, *rest)
    suggested = float(str(err.value).rsplit("--win_duration ", 1)[1].split()[0])
    assert faithful_plan(*args, suggested, *rest).hop > 0
    with pytest.raises(AudioError):
        faithful_plan(*args, suggested - 0.01, *rest)


@pytest.fixture(scope="module")
def tiny():
    return dac_jax.init_model("tiny-odd", seed=2)


def signals(sr, seconds):
    return np.stack([synth.speech_like(seconds, sr, 0), synth.noise(seconds, sr, 1), synth.sine_sweep(seconds, sr)])


@pytest.mark.parametrize("window, batch", [(0.01, 1), (0.05, 3), (0.3, 2), (10.0, 4)])
def test_independent_codes_equal_whole_file_encoding(tiny, window, batch):
    audio = signals(tiny.sample_rate, 1.37)
    whole = np.asarray(tiny.encode(audio[:, None, :]))
    codes = chunked.encode_independent(tiny, audio, window, batch_size=batch)
    assert codes.shape == whole.shape == (3, 3, -(-audio.shape[-1] // tiny.hop_length))  # one frame per hop
    np.testing.assert_array_equal(codes, whole)


@pytest.mark.parametrize("window, batch", [(0.01, 2), (0.05, 3), (10.0, 1)])
def test_independent_decoding_equals_whole_sequence_decoding(tiny, window, batch):
    codes = np.asarray(tiny.encode(signals(tiny.sample_rate, 1.37)[:, None, :]))
    whole = np.asarray(tiny.decode(codes))[:, 0]
    audio = chunked.decode_independent(tiny, codes, window, batch_size=batch)
    assert audio.shape == whole.shape
    assert np.max(np.abs(audio - whole)) <= DECODE_TOLERANCE


@pytest.mark.parametrize("frames, window", [(137, 0.05), (137, 0.01), (20, 10.0)])
@pytest.mark.parametrize("padding_frames", [1, 2])
def test_padding_frames_are_the_signal_followed_by_silence(tiny, frames, window, padding_frames):
    """Appended frames: the whole encoding of the signal then `padding_frames` hops of zeros, from one
    window (shifted, of the same size, or the whole signal when it is shorter than its context);
    the frames before them stay the whole-signal encoding."""
    hop = tiny.hop_length
    audio = signals(tiny.sample_rate, frames * hop / tiny.sample_rate)[:, : frames * hop - 3]
    whole = np.asarray(tiny.encode(audio[:, None, :]))
    extended = np.asarray(tiny.encode(np.pad(audio, ((0, 0), (0, 3 + padding_frames * hop)))[:, None, :]))
    codes = chunked.encode_independent(tiny, audio, window, batch_size=2, padding_frames=padding_frames)
    assert codes.shape == extended.shape == (3, 3, frames + padding_frames)
    np.testing.assert_array_equal(codes[..., :frames], whole)
    np.testing.assert_array_equal(codes[..., frames:], extended[..., frames:])


@pytest.mark.slow
def test_independent_mode_is_exact_for_the_44khz_model():
    codec = dac_jax.init_model("44khz", seed=0)
    audio = signals(44100, 2.1)[:2]
    whole = np.asarray(codec.encode(audio[:, None, :]))
    codes = chunked.encode_independent(codec, audio, 0.38, batch_size=4)
    assert np.mean(codes == whole) >= 0.999 and np.mean(codes[:, 0] == whole[:, 0]) >= 0.9999
    assert codec.winograd == 4  # the default on a CPU
    decoded = chunked.decode_independent(codec, whole, 0.38, batch_size=4)
    assert np.max(np.abs(decoded - np.asarray(codec.decode(whole))[:, 0])) <= WINOGRAD_DECODE_TOLERANCE
    codec.winograd = None  # direct convolutions: the same sums in a window as in the whole sequence
    decoded = chunked.decode_independent(codec, whole, 0.38, batch_size=4)
    assert np.max(np.abs(decoded - np.asarray(codec.decode(whole))[:, 0])) <= DECODE_TOLERANCE


def test_one_compilation_per_window_and_batch_shape(tiny):
    audio = signals(tiny.sample_rate, 2.0)
    chunked.encode_independent(tiny, audio, 0.1, batch_size=3)
    before = dict(runtime.trace_counts)
    chunked.encode_independent(tiny, audio, 0.1, batch_size=3)  # many chunks, same shapes
    chunked.encode_independent(tiny, audio[:1, : 16000], 0.1, batch_size=3)  # other length, same window
    assert runtime.trace_counts["encode"] == before["encode"]
    codes = np.asarray(tiny.encode(audio[:, None, :]))
    chunked.decode_independent(tiny, codes, 0.1, batch_size=3)
    before = dict(runtime.trace_counts)
    chunked.decode_independent(tiny, codes[:2, :, :1000], 0.1, batch_size=3)
    assert runtime.trace_counts["decode"] == before["decode"]


def test_faithful_chunks_are_the_unpadded_model_on_each_window(tiny):
    """encode_faithful's chunks are exactly the unpadded model applied to the delay-padded signal's windows."""
    cfg = tiny.config
    audio = signals(cfg.sample_rate, 0.9)
    plan = faithful_plan(audio.shape[-1], cfg.sample_rate, cfg.hop_length, 0.1, tiny.delay, tiny.output_length,
                         tiny.unpadded_module.encoder_frames)
    codes = chunked.encode_faithful(tiny, audio, plan, batch_size=3)
    padded = np.pad(audio, ((0, 0), (tiny.delay, tiny.delay + plan.n_samples)))
    for k, start in enumerate(plan.starts()):
        window = padded[:, None, start : start + plan.n_samples]
        expected = np.asarray(runtime.encode(tiny.unpadded_module, tiny.variables, window, None).codes)
        np.testing.assert_array_equal(codes[:, :, k * plan.frames_per_chunk : (k + 1) * plan.frames_per_chunk], expected)
    decoded = chunked.decode_faithful(tiny, codes, plan.frames_per_chunk, False, batch_size=2)
    per_chunk = tiny.unpadded_module.decoder_samples(plan.frames_per_chunk)
    assert decoded.shape == (3, plan.n_chunks * per_chunk)
    first = np.asarray(runtime.decode(tiny.unpadded_module, tiny.variables, codes[:, :, : plan.frames_per_chunk]))[:, 0]
    np.testing.assert_allclose(decoded[:, :per_chunk], first, atol=1e-6)


def test_batch_k_plus_1_is_dispatched_before_batch_k_is_fetched():
    from dac_jax.codec.chunked import run_batched

    events, filled = [], []

    class Pending:  # what an asynchronously dispatched JAX result looks like to the loop
        def __init__(self, k, stack):
            self.k, self.stack = k, stack

        def __array__(self, dtype=None, copy=None):
            events.append(("fetch", self.k))
            return self.stack * 2

    def fn(stack):
        events.append(("dispatch", len([e for e in events if e[0] == "dispatch"])))
        return Pending(events[-1][1], stack)

    def fill(i, row):
        assert not row.any()  # a zeroed row of the batch buffer, written in place
        filled.append(i)
        row[:] = i

    progress = []
    out = list(run_batched(fn, fill, (3,), np.float32, 10, 4, progress.append))
    assert events == [("dispatch", 0), ("dispatch", 1), ("fetch", 0), ("dispatch", 2), ("fetch", 1), ("fetch", 2)]
    assert filled == list(range(10)) and progress == [4, 4, 2]
    assert [i for i, _ in out] == list(range(10))
    assert all((o == 2 * i).all() for i, o in out)
