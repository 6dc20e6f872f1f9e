"""DAC-VAE on long signals and files: window-independent latents and audio, the latent file format."""

from __future__ import annotations

import json
import zipfile

import jax
import numpy as np
import pytest
import soundfile as sf

import dac_jax
from dac_jax.audio import synth
from dac_jax.audio.loudness import loudness
from dac_jax.audio.resample import resample_long
from dac_jax.codec import chunked, latentfile, latents
from dac_jax.errors import AudioError, FileFormatError, UsageError
from dac_jax.model.config import VAEConfig

# the released x2 geometry (rates 2,3,4,4,5: odd-stride exact upsampling, hop 480) at a CPU-friendly width
X2_GEOMETRY = VAEConfig(encoder_dim=4, encoder_rates=(2, 3, 4, 4, 5), latent_dim=8, decoder_dim=32,
                        decoder_rates=(5, 4, 4, 3, 2), sample_rate=24000)
# Windowed and whole-signal processing compute the same sums: measured <= 3e-8 (audio; m and logs
# <= 7.5e-9) on both models here (float32, x86_64 CPU); the tolerance is about 10x that.
TOLERANCE = 3e-7


@pytest.fixture(scope="module")
def tiny():
    return dac_jax.init_vae("vae-tiny", seed=3)


@pytest.fixture(scope="module")
def x2():
    return dac_jax.init_vae(X2_GEOMETRY, seed=4)


def two_items(seconds: float, rate: int, cut: int = 77) -> np.ndarray:
    n = int(seconds * rate) - cut  # not a whole number of frames
    return np.stack([synth.speech_like(seconds, rate, seed=1), 0.7 * synth.sine_sweep(seconds, rate)])[:, :n].astype(np.float32)


def whole(vae, audio: np.ndarray):
    """Encoding of the whole signal at once (zero-padded to whole frames) and its decoding."""
    hop = vae.hop_length
    frames = -(-audio.shape[-1] // hop)
    padded = np.zeros((audio.shape[0], 1, frames * hop), np.float32)
    padded[:, 0, : audio.shape[-1]] = audio
    encoded = vae.encode(padded)
    return np.asarray(encoded.m), np.asarray(encoded.logs), np.asarray(vae.decode(encoded.m))[:, 0]


@pytest.mark.parametrize("model, seconds, windows", [("tiny", 2.0, (0.05, 0.3)), ("x2", 12.0, (1.0, 2.5))])
def test_windowed_latents_and_audio_equal_whole_signal_processing(request, model, seconds, windows):
    vae = request.getfixturevalue(model)
    audio = two_items(seconds, vae.sample_rate)
    m, logs, decoded = whole(vae, audio)
    context = vae.encoder_context, vae.decoder_context
    for win in windows:
        for batch_size in (1, 3):
            calls = []
            wm, wlogs = chunked.encode_latents(vae, audio, win, batch_size, progress=calls.append)
            # really in windows: more than one per item, each window shorter than the signal
            assert sum(calls) > 2 and chunked.frames_for_window(vae, win) + 2 * context[0] < m.shape[-1]
            np.testing.assert_allclose(wm, m, atol=TOLERANCE, rtol=0)
            np.testing.assert_allclose(wlogs, logs, atol=TOLERANCE, rtol=0)
            calls = []
            out = chunked.decode_latents(vae, m, win, batch_size, progress=calls.append)
            assert sum(calls) > 2 and out.shape == decoded.shape == (2, m.shape[-1] * vae.hop_length)
            np.testing.assert_allclose(out, decoded, atol=TOLERANCE, rtol=0)


def test_arrays_encode_like_the_originals_inference_and_decode_to_their_rate_and_length(tiny):
    rate = 44100
    stereo = np.stack([synth.speech_like(0.8, rate, seed=2), 0.5 * synth.sine_sweep(0.8, rate)])
    stereo[0, 100] = 1.7  # beyond full scale: clamped, as the original does
    f = tiny.compress(stereo, sample_rate=rate, win_duration=0.1, batch_size=2)
    expected = np.clip(resample_long(stereo[None].astype(np.float32), rate, tiny.sample_rate), -1, 1)[0]
    m, logs, _ = whole(tiny, expected)
    np.testing.assert_allclose(f.mu, m, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(f.logs, logs, atol=TOLERANCE, rtol=0)
    np.testing.assert_array_equal(f.z, f.mu)
    assert (f.latent, f.seed, f.normalize_db, f.channels, f.batch) == ("mean", None, None, 2, 1)
    assert (f.sample_rate, f.hop_length, f.latent_dim, f.original_sample_rate, f.original_length) == (
        24000, 6, 8, rate, stereo.shape[-1])
    assert f.length == expected.shape[-1] and f.frames == -(-f.length // 6) and f.frame_rate == 4000.0
    np.testing.assert_allclose(f.input_db, loudness(resample_long(stereo[None].astype(np.float32), rate, 24000), 24000),
                               atol=1e-4)

    decoded = tiny.decompress(f, win_duration=0.1)
    assert decoded.sample_rate == rate and decoded.samples.shape == (1, 2, stereo.shape[-1])
    direct = tiny.decode(f.z)[:, 0, : f.length]
    np.testing.assert_allclose(decoded.samples[0], resample_long(np.asarray(direct), 24000, rate)[:, : stereo.shape[-1]],
                               atol=TOLERANCE, rtol=0)


def test_sampling_draws_the_whole_signals_noise_from_the_seed(tiny):
    audio = synth.speech_like(0.5, 24000, seed=3)
    f = tiny.compress(audio, win_duration=0.1, seed=11)
    noise = np.asarray(jax.random.normal(jax.random.key(11), f.mu.shape, np.float32))
    np.testing.assert_allclose(f.z, f.mu + noise * np.exp(f.logs), rtol=1e-6, atol=1e-6)
    assert (f.latent, f.seed) == ("sample", 11)
    assert not np.allclose(f.z, f.mu)


def test_normalisation_is_undone_on_decoding(tiny):
    audio = 0.05 * synth.speech_like(1.0, 24000, seed=4)
    f = tiny.compress(audio, normalize_db=-16.0, win_duration=0.2)
    assert f.normalize_db == -16.0 and abs(float(f.input_db[0]) - float(loudness(audio[None, None], 24000)[0])) < 1e-3
    out = tiny.decompress(f).samples
    assert abs(float(loudness(out, 24000)[0]) - float(f.input_db[0])) < 0.05


def test_files_save_load_and_decode_identically(tiny, tmp_path):
    sf.write(tmp_path / "a.flac", synth.speech_like(0.6, 16000, seed=5), 16000, subtype="PCM_24")
    f = tiny.compress(tmp_path / "a.flac", win_duration=0.1)
    path = f.save(tmp_path / "a")
    assert path.name == "a.npz" and sorted(p.name for p in tmp_path.iterdir()) == ["a.flac", "a.npz"]
    back = latentfile.load(path)
    for name in ("z", "mu", "logs", "input_db"):
        np.testing.assert_array_equal(getattr(back, name), getattr(f, name))
    assert back.metadata() == f.metadata()
    meta = json.loads(str(np.load(path)["metadata"]))
    assert meta["format"] == "dac-jax-latents" and meta["model_config"]["encoder_rates"] == [2, 3]
    np.testing.assert_array_equal(tiny.decompress(path).samples, tiny.decompress(f).samples)


def test_bad_audio_is_one_line_error(tiny, tmp_path):
    (tmp_path / "text.wav").write_text("not audio")
    with pytest.raises(AudioError, match="text.wav"):
        tiny.compress(tmp_path / "text.wav")
    with pytest.raises(AudioError, match="NaN"):
        tiny.compress(np.array([0.1, np.nan, 0.2], np.float32))
    with pytest.raises(UsageError, match="win_duration must be a finite number > 0"):
        tiny.compress(np.zeros(100, np.float32), win_duration=0)


def _rewrite(path, out, **changes):
    """``path``'s arrays with ``changes`` (arrays, or a dict merged into the metadata)."""
    with np.load(path) as a:
        entries = {k: a[k] for k in a.files}
    meta = json.loads(str(entries["metadata"]))
    meta.update(changes.pop("meta", {}))
    entries["metadata"] = np.array(json.dumps(meta))
    entries.update(changes)
    with open(out, "wb") as f:
        np.savez(f, **entries)
    return out


@pytest.fixture
def saved(tiny, tmp_path):
    return tiny.compress(synth.speech_like(0.3, 24000, seed=6), win_duration=0.1).save(tmp_path / "good.npz")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p, o: o.write_bytes(p.read_bytes()[:300]) and o, "not a latent file|unreadable"),
        (lambda p, o: o.write_text("hello") and o, "not a latent file"),
        (lambda p, o: _rewrite(p, o, meta={"version": 9}), "version 9 is not supported"),
        (lambda p, o: _rewrite(p, o, meta={"format": "x"}), "format tag missing"),
        (lambda p, o: _rewrite(p, o, meta={"length": 5}), "latent frames, but 5 samples"),
        (lambda p, o: _rewrite(p, o, meta={"channels": 2}), "not a multiple of channels=2"),
        (lambda p, o: _rewrite(p, o, meta={"latent": "maybe"}), "latent must be one of"),
        (lambda p, o: _rewrite(p, o, meta={"input_db": ["loud"]}), "input_db must be a list of numbers"),
        (lambda p, o: _rewrite(p, o, meta={"sample_rate": "24k"}), "sample_rate must be an int"),
        (lambda p, o: _rewrite(p, o, mu=np.zeros((1, 8, 3), np.float32)), "mu has shape"),
        (lambda p, o: _rewrite(p, o, z=np.full((1, 8, 50), np.nan, np.float32)), "z contains NaN"),
        (lambda p, o: _rewrite(p, o, logs=np.zeros((1, 8, 50), np.int32)), "logs must be a float array"),
        (lambda p, o: _rewrite(p, o, metadata=np.array([{"a": 1}], dtype=object)), "unreadable|metadata"),
    ],
)
def test_broken_latent_files_are_one_line_errors_naming_the_file(saved, tmp_path, make, message):
    bad = make(saved, tmp_path / "bad.npz")
    with pytest.raises(FileFormatError, match=message) as e:
        latentfile.load(bad)
    assert str(e.value).startswith(str(bad)) and "\n" not in str(e.value)


def test_pickled_payloads_are_never_loaded(saved, tmp_path):
    bad = tmp_path / "evil.npz"
    with open(bad, "wb") as f:
        np.savez(f, z=np.array([object()], dtype=object), mu=np.zeros(1), logs=np.zeros(1), metadata=np.array("{}"))
    with pytest.raises(FileFormatError, match=str(bad)):
        latentfile.load(bad)
    assert zipfile.is_zipfile(bad)


def test_another_models_latents_are_refused(saved, x2):
    with pytest.raises(FileFormatError, match=r"latents of another DAC-VAE \(.*encoder_rates=\[2, 3\]"):
        latents.decode(x2, saved)
