"""compress / decompress against the original's, on real audio files written with soundfile."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

import dac_jax
from dac_jax.audio import synth
from dac_jax.codec.compress import compress, decompress
from tests import reference

pytestmark = pytest.mark.slow

# About 10x the largest differences measured here (float32, x86_64 CPU): the decompressed audio
# against the original's decompress 2.0e-6 max abs with direct convolutions; input_db 3.8e-6 LU (the
# codec needs 0.01 LU). decompress runs the default decoder, Winograd F(4, 7) on a CPU, whose audio
# the model-level comparison measured within 1.0e-5 of the original's (24khz; tests/model).
MAX_AUDIO_DIFF = 1e-4
MAX_LOUDNESS_DIFF = 1e-4

# DAC_SPEC section 3's chunk table: (model, window) -> (n_samples, hop)
CHUNK_TABLE = {("44khz", 0.38): (16896, 874), ("44khz", 1.0): (44544, 28522), ("44khz", 5.0): (220672, 204650),
               ("24khz", 1.0): (24000, 13346)}


def write_clip(path, duration, sample_rate, channels, subtype):
    """A speech-like clip (plus a tone in the second channel) written as a real audio file."""
    clip = synth.speech_like(duration, sample_rate, seed=7)
    data = np.stack([clip, 0.5 * synth.sine_sweep(duration, sample_rate, 80.0, 4000.0)][:channels], axis=1)
    sf.write(path, data, sample_rate, subtype=subtype)
    return path


def original_signal(path):
    """The file as the original sees it (its compress loads with ffmpeg, not installed here)."""
    import torch
    from audiotools import AudioSignal

    data, sr = sf.read(path, dtype="float32", always_2d=True)
    return AudioSignal(torch.from_numpy(data.T.copy())[None], sr)


CASES = [
    # preset, window (None: longer than the clip: unchunked), file, seconds, rate, channels, subtype
    ("44khz", 0.38, "mono.wav", 0.6, 44100, 1, "PCM_16"),
    ("44khz", 1.0, "stereo48k.flac", 2.2, 48000, 2, "PCM_24"),
    ("44khz", 5.0, "mono22k.wav", 5.6, 22050, 1, "FLOAT"),
    ("44khz", None, "stereo.wav", 1.5, 44100, 2, "PCM_16"),
    ("24khz", 1.0, "mono24k.flac", 2.0, 24000, 1, "PCM_16"),
]


@pytest.mark.parametrize("preset, window, name, seconds, rate, channels, subtype", CASES)
def test_faithful_mode_equals_the_original(reference_models, tmp_path, preset, window, name, seconds, rate, channels, subtype):
    torch_model, codec = reference_models(preset)
    path = write_clip(tmp_path / name, seconds, rate, channels, subtype)
    win = seconds + 1 if window is None else window

    theirs = torch_model.compress(original_signal(path), win_duration=win)
    ours = compress(codec, path, win_duration=win, mode="faithful", batch_size=4)

    assert ours.padding == theirs.padding == (window is None)
    assert (ours.chunk_length, ours.original_length, ours.channels, ours.sample_rate) == (
        theirs.chunk_length, theirs.original_length, theirs.channels, theirs.sample_rate)
    if window is not None:
        n_samples, hop = CHUNK_TABLE[(preset, window)]
        assert codec.output_length(n_samples) == hop
        assert ours.chunk_length == codec.unpadded_module.encoder_frames(n_samples)
    np.testing.assert_allclose(ours.input_db, theirs.input_db.numpy(), rtol=0, atol=MAX_LOUDNESS_DIFF)
    ref_codes = theirs.codes.numpy()
    assert ours.codes.shape == ref_codes.shape
    np.testing.assert_array_equal(ours.codes[:, 0], ref_codes[:, 0])
    assert np.mean(ours.codes == ref_codes) >= 0.999

    # the original's .dac file, decoded here and by the original
    their_file = theirs.save(tmp_path / "theirs.dac")
    ref_audio = torch_model.decompress(their_file).audio_data.numpy()
    decoded = decompress(codec, their_file)
    assert decoded.sample_rate == rate
    assert decoded.samples.shape == ref_audio.shape == (1, channels, sf.info(str(path)).frames)
    assert np.max(np.abs(decoded.samples - ref_audio)) <= MAX_AUDIO_DIFF


@pytest.mark.parametrize("mode, window", [("faithful", 1.0), ("independent", 0.38)])
def test_our_files_are_decoded_by_the_original(reference_models, tmp_path, mode, window):
    from dac.model.base import DACFile as TheirDACFile

    torch_model, codec = reference_models("44khz")
    path = write_clip(tmp_path / "in.flac", 1.6, 48000, 2, "PCM_16")
    ours = compress(codec, path, win_duration=window, mode=mode)
    if mode == "independent":  # one frame per hop of the resampled signal, one padded chunk
        frames = -(-int(np.floor(np.float32(147 * 76800 / 160))) // codec.hop_length)
        assert ours.codes.shape == (2, 9, frames) and ours.padding and ours.chunk_length == frames
    our_file = ours.save(tmp_path / "ours.dac")
    loaded = TheirDACFile.load(our_file)
    ref_audio = torch_model.decompress(loaded).audio_data.numpy()
    decoded = decompress(codec, our_file)
    assert decoded.samples.shape == ref_audio.shape == (1, 2, 76800)
    assert np.max(np.abs(decoded.samples - ref_audio)) <= MAX_AUDIO_DIFF


def test_independent_codes_do_not_depend_on_the_window(reference_models, tmp_path):
    _, codec = reference_models("44khz")
    path = write_clip(tmp_path / "in.wav", 2.0, 44100, 1, "PCM_16")
    files = [compress(codec, path, win_duration=w, mode="independent") for w in (0.2, 0.38, 1.0, 5.0)]
    for f in files[1:]:
        np.testing.assert_array_equal(f.codes, files[0].codes)
    whole = compress(codec, path, win_duration=10.0, mode="faithful")  # one padded pass: whole-file encoding
    np.testing.assert_array_equal(files[0].codes, whole.codes)
