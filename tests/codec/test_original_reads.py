"""The original's ``decompress`` reads the files dac-jax writes (window-independent mode), for every
preset and length, and decodes them to the audio dac-jax's ``decompress`` gives.

The 16 and 24 kHz decoders give ``320 * frames - 8`` samples; the original crops without padding
and then reshapes to ``original_length``, so a file of ``ceil(length / 320)`` frames crashes it
whenever those samples fall short (every whole second). dac-jax appends a padding frame there
(``plan.covering_frames``); these tests run the original on such files, on the files the original
writes itself (which still crash it, and still decode here), and check what the frame changes.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest

from dac_jax.audio import synth
from dac_jax.codec import chunked
from dac_jax.codec.compress import compress, decompress
from dac_jax.codec.dacfile import DACFile, validate_for_model
from dac_jax.codec.plan import covering_frames, resampled_length
from dac_jax.errors import FileFormatError
from dac_jax.model.config import PRESETS
from dac_jax.model.dac import DAC

PRESET_NAMES = ("44khz", "44khz-16kbps", "24khz", "16khz")
# (seconds, extra samples, channels, the input's rate (None: the model's))
CLIPS = {
    "1s-stereo": (1, 0, 2, None),  # a whole number of frames: the case that crashed
    "1s+37-mono": (1, 37, 1, None),  # 16 / 24 kHz: 37 samples into a frame, covered without padding
    "1s-5-mono": (1, -5, 1, None),  # 16 / 24 kHz: 315 samples into a frame, past 320 T - 8: crashed
    "1s-stereo-44.1k": (1, 0, 2, 44100),  # resampled (the 24 kHz stereo report)
    # 47926 samples at 48 kHz resample to 44032, 86 whole frames, whose 512 * 86 samples resample
    # back to 47925: the 44 kHz models' case (0.2 % of 48 kHz lengths)
    "48k-edge-mono": (1, -74, 1, 48000),
}
# padding frames dac-jax must append: where the decoding (320 T - 8 samples at 16 / 24 kHz), resampled
# back to the input's rate, falls short of it
PADDING = {("44khz", "48k-edge-mono"): 1, ("44khz-16kbps", "48k-edge-mono"): 1,
           **{(preset, name): 1 for preset in ("24khz", "16khz")
              for name in ("1s-stereo", "1s-5-mono", "1s-stereo-44.1k")}}

BATCH = 2  # windows per compiled call: a clip here is one window per channel

# between the two decompresses on the same file: measured <= 2.2e-6 (random weights, CPU) with direct
# convolutions; dac-jax's default decoder on a CPU (Winograd F(4, 7)) is within 1.0e-5 of the
# original's at the model level (24khz; tests/model), so about 10x that
TOLERANCE = 1e-4


def clip(seconds: int, extra: int, channels: int, rate: int) -> np.ndarray:
    """``[channels, seconds * rate + extra]``: speech-like, plus a sweep in the second channel."""
    n = seconds * rate + extra
    duration = n / rate + 0.01
    both = np.stack([synth.speech_like(duration, rate, seed=7), 0.5 * synth.sine_sweep(duration, rate, 80.0, 4000.0)])
    return both[:channels, :n]


def original_decompress(torch_model, dacfile: DACFile) -> np.ndarray:
    """The original's ``decompress`` of ``dacfile`` (its own DACFile, as its ``load`` builds it)."""
    import torch
    from dac.model.base import DACFile as TheirDACFile

    theirs = TheirDACFile(
        codes=torch.from_numpy(dacfile.codes.astype(np.int64)), chunk_length=dacfile.chunk_length,
        original_length=dacfile.original_length, input_db=torch.from_numpy(dacfile.input_db.copy()),
        channels=dacfile.channels, sample_rate=dacfile.sample_rate, padding=dacfile.padding,
        dac_version=dacfile.dac_version,
    )
    return torch_model.decompress(theirs).audio_data.numpy()


@pytest.fixture(scope="module")
def written(reference_models):
    """``get(preset, clip) -> (DACFile dac-jax writes, audio [C, T], its rate)``, each made once."""
    cache = {}

    def get(preset, name):
        if (preset, name) not in cache:
            _, codec = reference_models(preset)
            seconds, extra, channels, rate = CLIPS[name]
            rate = rate or codec.sample_rate
            audio = clip(seconds, extra, channels, rate)
            cache[preset, name] = (compress(codec, audio, sample_rate=rate, batch_size=BATCH), audio, rate)
        return cache[preset, name]

    return get


# a whole second of stereo for every preset, and an odd length of mono (full-size models are slow
# on a CPU: the four cases of each preset are spread over the presets)
CASES = [("44khz", "1s-stereo"), ("44khz", "1s+37-mono"), ("44khz-16kbps", "1s-stereo"),
         ("44khz-16kbps", "48k-edge-mono"), ("24khz", "1s-stereo-44.1k"), ("24khz", "1s-5-mono"),
         ("16khz", "1s-stereo"), ("16khz", "1s+37-mono")]


@pytest.mark.slow
@pytest.mark.parametrize("preset, name", CASES)
def test_the_original_decodes_our_files(reference_models, written, tmp_path, preset, name):
    """No crash, a padding frame exactly where the decoding would fall short, the same audio."""
    from dac.model.base import DACFile as TheirDACFile

    torch_model, codec = reference_models(preset)
    ours, audio, rate = written(preset, name)
    frames = -(-resampled_length(audio.shape[-1], rate, codec.sample_rate) // codec.hop_length)
    assert ours.frames == ours.chunk_length == frames + PADDING.get((preset, name), 0)

    path = ours.save(tmp_path / "ours.dac")
    ref = torch_model.decompress(TheirDACFile.load(path)).audio_data.numpy()  # crashed before
    decoded = decompress(codec, path, batch_size=BATCH).samples
    assert decoded.shape == ref.shape == (1, *audio.shape)
    assert np.max(np.abs(decoded - ref)) <= TOLERANCE


@pytest.mark.slow
def test_the_padding_frame_changes_only_the_end(reference_models, written):
    """The real frames are whole-file padded-mode encoding, as the original's own compress gives;
    the padding frame changes the decoded audio only within the decoder's receptive field of the
    end (and the loudness restored over the whole decoding, a little); the original's own file
    still crashes it, and still decodes here, as before: the missing samples are zeros."""
    import torch
    from audiotools import AudioSignal

    torch_model, codec = reference_models("16khz")
    ours, audio, rate = written("16khz", "1s-stereo")
    theirs = torch_model.compress(AudioSignal(torch.from_numpy(audio.copy())[None], rate), win_duration=5.0)
    their_codes = theirs.codes.numpy()
    frames = their_codes.shape[-1]
    assert theirs.padding and ours.frames == frames + 1
    np.testing.assert_array_equal(ours.codes[:, 0, :frames], their_codes[:, 0])
    assert np.mean(ours.codes[..., :frames] == their_codes) >= 0.999

    # the original's file: the failing case the padding frame exists for
    their_file = DACFile(**{f.name: getattr(theirs, f.name) for f in dataclasses.fields(theirs)})
    with pytest.raises(RuntimeError, match="is invalid for input of size"):
        original_decompress(torch_model, their_file)
    covered = codec.module.decoder_samples(frames)
    assert covered == 320 * frames - 8 < their_file.original_length
    # its decoding as the original would give it, had its crop padded: the same up to `covered`
    before = original_decompress(torch_model, dataclasses.replace(their_file, original_length=covered))
    decoded = decompress(codec, their_file, batch_size=BATCH).samples
    assert decoded.shape == (1, *audio.shape)
    assert np.max(np.abs(decoded[..., :covered] - before)) <= TOLERANCE
    assert not decoded[..., covered:].any()

    # what the padding frame changes, in the original's decoding of our file
    ref = original_decompress(torch_model, ours)
    diff = np.abs(ref[..., :covered] - before)
    reach = codec.decoder_context * codec.hop_length  # samples of the end it can reach
    # Before `reach` only the loudness restored over the whole decoding changes (it now includes
    # 320 more samples): one gain per channel, measured 1.011 and 1.013 here (1 s; it shrinks with
    # the length), and the same to 3e-8 once it is taken out. Within `reach` the audio changes (up to
    # 0.18, rms 0.16: random weights; a trained decoder should change it far less).
    gain = np.median(ref[..., : covered - reach] / before[..., : covered - reach], axis=-1, keepdims=True)
    assert np.all(np.abs(gain - 1) <= 0.05)
    assert np.max(np.abs(ref[..., : covered - reach] - gain * before[..., : covered - reach])) <= 3e-7
    assert np.max(diff[..., -reach:]) > 1e-3


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_covering_frames_follow_the_original_crop(preset):
    """Arithmetic only: the padding frame is needed exactly where the original's crop falls short."""
    cfg = PRESETS[preset]
    model = DAC(cfg)
    hop, sr = cfg.hop_length, cfg.sample_rate
    for rate in (sr, 44100, 48000):
        decoded = functools.lru_cache(None)(lambda n: resampled_length(model.decoder_samples(n), sr, rate))
        for length in range(sr - hop, sr + hop, 1 if rate == sr else 3):
            frames = -(-resampled_length(length, rate, sr) // hop)
            needed = covering_frames(frames, length, model.decoder_samples, sr, rate)
            assert decoded(needed) >= length and (needed == frames or decoded(needed - 1) < length)
            assert needed - frames == int(decoded(frames) < length) <= 1
            if rate == sr:  # 512 * frames samples always cover a 44 kHz model's own-rate input
                assert needed == frames or hop == 320
            if needed > frames or length % 8 == 0:  # files of either count fit (a sample: it is slow)
                for n in (frames, needed):
                    f = DACFile(np.zeros((1, 1, n), np.int32), n, length, np.zeros(1, np.float32), 1, rate, True)
                    validate_for_model(f, cfg.n_codebooks, 1024, sample_rate=sr, hop_length=hop,
                                       decoder_samples=model.decoder_samples)
    # and other counts do not
    whole = DACFile(np.zeros((1, 1, 52), np.int32), 52, 16000, np.zeros(1, np.float32), 1, 16000, True)
    with pytest.raises(FileFormatError, match="to 50 frames \\(or 51, with a padding frame\\)"):
        validate_for_model(whole, 12, 1024, sample_rate=16000, hop_length=320,
                           decoder_samples=DAC(PRESETS["16khz"]).decoder_samples)
