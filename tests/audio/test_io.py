"""dac_jax.audio.io against real files written by soundfile: the samples soundfile (and so the
original's librosa loader) reads, every error a user can cause, and atomic writes."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from dac_jax.audio import io, synth
from dac_jax.errors import AudioError

SR = 16000


@pytest.fixture(scope="module")
def stereo() -> np.ndarray:
    """float32 [2, 4000]: a speech-like channel and a noise channel, inside [-1, 1]."""
    return np.stack([synth.speech_like(0.25, SR, seed=3), synth.noise(0.25, SR, seed=4, level=0.2)])


def sf_read(path) -> np.ndarray:
    """What librosa.load (the original's loader) reads: a SoundFile read from the start, no seek."""
    with sf.SoundFile(str(path)) as f:
        return f.read(dtype="float32", always_2d=True).T


# (suffix, soundfile format, subtype, max abs error of the round trip; None: lossy codec)
CASES = [
    (".wav", "WAV", "PCM_U8", 2.0**-6),
    (".wav", "WAV", "PCM_16", 2.0**-14),
    (".wav", "WAV", "PCM_24", 2.0**-22),
    (".wav", "WAV", "PCM_32", 2.0**-30),
    (".wav", "WAV", "FLOAT", 0.0),
    (".wav", "WAV", "DOUBLE", 0.0),
    (".flac", "FLAC", "PCM_S8", 2.0**-6),
    (".flac", "FLAC", "PCM_16", 2.0**-14),
    (".flac", "FLAC", "PCM_24", 2.0**-22),
    (".aiff", "AIFF", "PCM_16", 2.0**-14),
    (".ogg", "OGG", "VORBIS", None),
    (".mp3", "MP3", "MPEG_LAYER_III", None),
]
IDS = [f"{c[0][1:]}-{c[2]}" for c in CASES]


def check_close(samples: np.ndarray, original: np.ndarray, tol) -> None:
    assert samples.shape == original.shape
    if tol is None:  # lossy: same length, recognisably the same signal on both channels
        for c in range(original.shape[0]):
            assert np.corrcoef(samples[c], original[c])[0, 1] > 0.85
    else:
        assert np.abs(samples - original).max() <= tol


@pytest.mark.parametrize("suffix, fmt, subtype, tol", CASES, ids=IDS)
def test_read_matches_soundfile(tmp_path, stereo, suffix, fmt, subtype, tol):
    path = tmp_path / f"in{suffix}"
    sf.write(str(path), stereo.T, SR, subtype=subtype, format=fmt)
    samples, rate = io.read_audio(path)
    assert rate == SR and samples.dtype == np.float32 and samples.flags.c_contiguous
    np.testing.assert_array_equal(samples, sf_read(path))
    check_close(samples, stereo, tol)
    info = io.audio_info(path)
    assert (info.frames, info.sample_rate, info.channels) == (stereo.shape[1], SR, 2)
    assert info.duration == pytest.approx(stereo.shape[1] / SR)
    assert (info.format, info.subtype) == (fmt, subtype)


@pytest.mark.parametrize("suffix, fmt, subtype, tol", CASES, ids=IDS)
def test_write_matches_soundfile(tmp_path, stereo, suffix, fmt, subtype, tol):
    ours, theirs = tmp_path / f"ours{suffix}", tmp_path / f"theirs{suffix}"
    assert io.write_audio(ours, stereo, SR, subtype=subtype.lower()) == ours
    sf.write(str(theirs), stereo.T, SR, subtype=subtype, format=fmt)
    info = sf.info(str(ours))
    assert (info.format, info.subtype, info.samplerate, info.channels) == (fmt, subtype, SR, 2)
    np.testing.assert_array_equal(sf_read(ours), sf_read(theirs))
    check_close(io.read_audio(ours)[0], stereo, tol)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([ours.name, theirs.name])  # no temp left


@pytest.mark.parametrize("suffix, subtype", [(".wav", "PCM_16"), (".flac", "PCM_16"), (".ogg", "VORBIS"),
                                             (".mp3", "MPEG_LAYER_III"), (".WAV", "PCM_16")])
def test_default_subtype_is_soundfiles(tmp_path, stereo, suffix, subtype):
    path = tmp_path / f"x{suffix}"
    io.write_audio(path, stereo, SR)
    assert sf.info(str(path)).subtype == subtype == sf.default_subtype(sf.info(str(path)).format)


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
def test_read_in_several_blocks(tmp_path, stereo, subtype, monkeypatch):
    """read_audio decodes long files block by block into the result (no transposed second copy)."""
    path = tmp_path / "x.wav"
    sf.write(str(path), stereo.T, SR, subtype=subtype)
    monkeypatch.setattr(io, "READ_BLOCK", 999)
    samples, _ = io.read_audio(path)
    np.testing.assert_array_equal(samples, sf_read(path))
    assert samples.flags.c_contiguous
    if subtype == "FLOAT":  # the finiteness check runs per block too, with the right frame number
        bad = stereo.copy()
        bad[0, 2500] = np.nan
        sf.write(str(path), bad.T, SR, subtype=subtype)
        with pytest.raises(AudioError, match="frame 2500, channel 0"):
            io.read_audio(path)


def test_write_mono_and_clipping_like_soundfile(tmp_path):
    loud = np.array([0.0, 0.5, 1.5, -1.5, -1.0, 0.25], np.float32)  # [frames] -> one channel
    io.write_audio(tmp_path / "ours.wav", loud, 8000)
    sf.write(str(tmp_path / "theirs.wav"), loud, 8000)
    samples, rate = io.read_audio(tmp_path / "ours.wav")
    assert samples.shape == (1, 6) and rate == 8000
    np.testing.assert_array_equal(samples[0], sf_read(tmp_path / "theirs.wav")[0])
    assert samples.max() < 1.0 and samples.min() == -1.0  # PCM_16 clips, as soundfile does


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # librosa imports audioread
def test_read_matches_librosa(tmp_path, stereo):
    """The original's CLI loads with librosa.load(sr=None, mono=False): the same samples."""
    import librosa  # a dev dependency (pyproject.toml), not the reference: installed with the tests
    for suffix, subtype in [(".wav", "PCM_24"), (".flac", "PCM_16"), (".mp3", "MPEG_LAYER_III")]:
        path = tmp_path / f"x{suffix}"
        sf.write(str(path), stereo.T, SR, subtype=subtype)
        theirs, rate = librosa.load(str(path), sr=None, mono=False)
        ours, our_rate = io.read_audio(path)
        assert our_rate == rate
        np.testing.assert_array_equal(ours, theirs)


# --- reading errors -------------------------------------------------------------------------


def _missing(tmp_path):
    return tmp_path / "missing.wav"


def _text(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is a text file, not audio\n" * 20)
    return path


def _zero_bytes(tmp_path):
    path = tmp_path / "zero_bytes.wav"
    path.write_bytes(b"")
    return path


def _no_frames(tmp_path):
    path = tmp_path / "no_frames.wav"
    sf.write(str(path), np.zeros((0, 2), np.float32), SR)
    return path


def _directory(tmp_path):
    path = tmp_path / "folder.wav"
    path.mkdir()
    return path


@pytest.mark.parametrize(
    "make, message",
    [(_missing, "no such file"), (_text, "not a readable audio file"), (_zero_bytes, "not a readable audio file"),
     (_no_frames, "no audio (0 frames)"), (_directory, "is a directory")],
    ids=["missing", "text-renamed-wav", "zero-bytes", "zero-frames", "directory"],
)
@pytest.mark.parametrize("reader", [io.read_audio, io.audio_info, io.AudioReader], ids=["read", "info", "reader"])
def test_unreadable_files(tmp_path, make, message, reader):
    path = make(tmp_path)
    with pytest.raises(AudioError) as err:
        reader(path)
    text = str(err.value)
    assert text.startswith(str(path)) and message in text and "\n" not in text


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("subtype", ["FLOAT", "DOUBLE"])
def test_non_finite_samples(tmp_path, stereo, bad, subtype):
    data = stereo.copy()
    data[1, 1234] = bad
    path = tmp_path / "bad.wav"
    sf.write(str(path), data.T, SR, subtype=subtype)
    with pytest.raises(AudioError, match="non-finite sample") as err:
        io.read_audio(path)
    assert str(path) in str(err.value) and "frame 1234, channel 1" in str(err.value)
    with io.AudioReader(path) as reader:  # the lazy reader checks each read
        np.testing.assert_array_equal(reader[:, :1000], stereo[:, :1000])
        with pytest.raises(AudioError, match="frame 1234"):
            reader[:, 1000:2000]


# --- lazy and block reading -----------------------------------------------------------------


@pytest.mark.parametrize(
    "suffix, subtype, ulps",
    # libsndfile's MP3 output can change by one float32 ulp with the size of the reads
    [(".wav", "PCM_16", 0), (".flac", "PCM_24", 0), (".ogg", "VORBIS", 0), (".mp3", "MPEG_LAYER_III", 1)],
)
def test_reader_and_blocks_equal_whole_read(tmp_path, stereo, suffix, subtype, ulps):
    """Random access (OGG and MP3 by decoding forward, never by seeking) and block reads give the
    frames of the whole read."""
    path = tmp_path / f"x{suffix}"
    sf.write(str(path), stereo.T, SR, subtype=subtype)
    whole, _ = io.read_audio(path)

    def same(a, b):
        np.testing.assert_allclose(a, b, rtol=0, atol=ulps * 2.0**-24)

    with io.AudioReader(path) as reader:
        assert reader.shape == whole.shape and reader.sample_rate == SR
        # forward jumps, backward jumps, the end, a range clipped at both ends
        for a, b in [(0, 1), (17, 1017), (3999, 4000), (2500, 9999), (100, 300), (-5, 3), (2000, 2100)]:
            same(reader.read(a, b), whole[:, max(a, 0):max(0, min(b, 4000))])
        same(reader[..., 100:300], whole[:, 100:300])
        same(reader[:, 3000:], whole[:, 3000:])


# --- writing errors: nothing is left behind, an existing file survives ----------------------


@pytest.mark.parametrize(
    "name, data, rate, subtype, message",
    [
        ("out.xyz", None, SR, None, "cannot write audio with suffix '.xyz'"),
        ("out", None, SR, None, "cannot write audio with suffix ''"),
        ("out.wav", None, SR, "VORBIS", "subtype 'VORBIS' is not valid for WAV"),
        ("out.wav", "nan", SR, None, "NaN or Inf"),
        ("out.wav", "3d", SR, None, "[channels, frames] or [frames]"),
        ("out.wav", "empty", SR, None, "nothing to write"),
        ("out.wav", None, 0, None, "sample rate must be a positive integer"),
        ("out.mp3", None, 7000, None, "cannot write MP3"),  # libsndfile fails after creating the file
    ],
    ids=["suffix", "no-suffix", "subtype", "nan", "rank", "empty", "rate", "mp3-rate"],
)
def test_failed_write_leaves_nothing(tmp_path, stereo, name, data, rate, subtype, message):
    samples = {None: stereo, "nan": np.where(np.arange(4000) == 7, np.nan, stereo),
               "3d": stereo[None], "empty": stereo[:, :0]}[data]
    path = tmp_path / name
    with pytest.raises(AudioError) as err:
        io.write_audio(path, samples, rate, subtype=subtype)
    assert str(err.value).startswith(str(path)) and message in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_existing_file(tmp_path, stereo):
    path = tmp_path / "keep.mp3"
    io.write_audio(path, stereo, SR)
    before = path.read_bytes()
    with pytest.raises(AudioError):
        io.write_audio(path, stereo, 7000)  # an MP3 rate libsndfile refuses, mid-write
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.mp3"]


def test_write_creates_parent_and_replaces(tmp_path, stereo):
    path = tmp_path / "deep" / "er" / "x.flac"
    io.write_audio(path, stereo, SR)
    io.write_audio(path, stereo[:, :100], SR)
    assert io.audio_info(path).frames == 100
    assert [p.name for p in path.parent.iterdir()] == ["x.flac"]
