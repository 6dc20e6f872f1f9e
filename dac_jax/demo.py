"""The main job of ``make demo``: build a model, round-trip an example clip, report what happened."""

from __future__ import annotations

import time
from pathlib import Path

import jax
import numpy as np

from dac_jax import options
from dac_jax.api import Codec, init_model, load_model
from dac_jax.audio import synth
from dac_jax.audio.io import write_audio
from dac_jax.errors import UsageError
from dac_jax.fileio import check_folder
from dac_jax.weights import registry


def _timed(fn, *args):
    """(result, seconds) with the device work finished."""
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - start


def pick_model(model_type: str = "44khz", seed: int = 0) -> tuple[Codec, bool]:
    """The released weights if the original's cache has them, else random weights. ``(codec, pretrained)``."""
    path = registry.cache_path(model_type)
    if path.is_file():
        print(f"Importing released weights from {path}")
        return load_model(path), True
    print(
        f"No released {model_type} checkpoint in the original's cache ({path}).\n"
        f"USING RANDOM WEIGHTS (seed {seed}): shapes, bitrate and speed are real, the sound is not.\n"
        f"For the real model: python -m dac_jax download --model_type {model_type}  (needs network),\n"
        f"or copy the released .pth to that path."
    )
    preset = registry.PRESET_OF[registry.parse_model_type(model_type)]
    return init_model(preset, seed), False


OUTPUTS = ("input.wav", "output.wav", "input.dac", "decompressed.wav")
MARKER = ".dac-jax-demo"  # says that the folder's OUTPUTS are a demo's, which a new demo may replace
MAX_SECONDS = 600.0


def prepare_folder(output: Path) -> None:
    """Refuse a folder whose files of the demo's names are not an earlier demo's; mark it as the demo's."""
    theirs = [name for name in OUTPUTS if (output / name).exists()]
    if theirs and not (output / MARKER).is_file():
        raise UsageError(f"{output}: already holds {', '.join(theirs)}, not written by a demo; choose another --output")
    check_folder(output)
    output.mkdir(parents=True, exist_ok=True)
    (output / MARKER).touch()


def run_demo(model_type: str = "44khz", output: str | Path = "runs/demo", duration: float = 5.0, seed: int = 0) -> dict:
    duration = options.real("duration", duration, 0.0, MAX_SECONDS, " seconds", open_low=True)
    options.integer("seed", seed, 0, 2**32 - 1)
    output = Path(output)
    prepare_folder(output)
    codec, pretrained = pick_model(model_type, seed)
    cfg = codec.config
    sr = codec.sample_rate

    clip = synth.example_clip(duration, sr, seed)
    write_audio(output / "input.wav", clip, sr)
    audio = clip[None, None, :]

    _, encode_first = _timed(codec.encode, audio)
    codes, encode_time = _timed(codec.encode, audio)
    _, decode_first = _timed(codec.decode, codes)
    recon, decode_time = _timed(codec.decode, codes)
    decoded_shape = tuple(recon.shape)
    # 16/24 kHz decoders give 320 * frames - 8 samples (the original's quirk): pad the tail
    recon = np.asarray(recon)[0, 0, : len(clip)]
    recon = np.pad(recon, (0, len(clip) - len(recon)))
    write_audio(output / "output.wav", recon, sr)

    # the main job: a file to a .dac file and back (window-independent mode, 1 s windows)
    start = time.perf_counter()
    dac_path = codec.compress(output / "input.wav", win_duration=1.0).save(output / "input.dac")
    compress_time = time.perf_counter() - start
    start = time.perf_counter()
    decoded = codec.decompress(dac_path, win_duration=1.0)
    write_audio(output / "decompressed.wav", decoded.samples[0], decoded.sample_rate)
    decompress_time = time.perf_counter() - start

    noise = clip - recon
    snr = 10 * np.log10(np.sum(clip**2) / max(np.sum(noise**2), 1e-20))
    result = {
        "pretrained": pretrained,
        "model": model_type,
        "sample_rate": sr,
        "input_shape": audio.shape,
        "codes_shape": tuple(codes.shape),
        "output_shape": decoded_shape,
        "bitrate_kbps": cfg.bitrate / 1000,
        "frame_rate": cfg.frame_rate,
        "encode_s": encode_time,
        "decode_s": decode_time,
        "compile_s": encode_first - encode_time + decode_first - decode_time,
        "snr_db": float(snr),
        "dac_bytes": dac_path.stat().st_size,
        "compress_s": compress_time,
        "decompress_s": decompress_time,
    }
    print(
        f"\nModel: DAC {model_type} ({'released weights' if pretrained else 'RANDOM weights'}), "
        f"{sr} Hz, hop {cfg.hop_length}, {cfg.n_codebooks} codebooks of {cfg.codebook_size}\n"
        f"Input:   {output / 'input.wav'}  shape {audio.shape} ({duration:.1f} s, float32)\n"
        f"Codes:   shape {tuple(codes.shape)} ({codes.dtype}), {cfg.frame_rate:.2f} frames/s, "
        f"bitrate {cfg.bitrate / 1000:.2f} kbps\n"
        f"Output:  {output / 'output.wav'}  shape {result['output_shape']}\n"
        f"Time:    encode {encode_time:.2f} s, decode {decode_time:.2f} s "
        f"({duration / (encode_time + decode_time):.2f}x real time on {jax.devices()[0].platform}); "
        f"compilation {result['compile_s']:.1f} s, once per shape\n"
        f"SNR of the round trip: {snr:.1f} dB{'' if pretrained else ' (meaningless with random weights)'}\n"
        f"File:    {dac_path} ({dac_path.stat().st_size / 1024:.1f} KiB, {8 * dac_path.stat().st_size / duration / 1000:.2f} kbps "
        f"with the file's header) written by compress in {compress_time:.2f} s; decompress to "
        f"{output / 'decompressed.wav'} in {decompress_time:.2f} s"
    )
    return result
