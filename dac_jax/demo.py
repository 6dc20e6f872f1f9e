"""The main job of ``make demo``: pick a model, round-trip a spoken sentence and a chord, and report
what happened with the evaluator's metrics, a spectrogram comparison and the files to listen to.

The model, in order: the released weights of ``--model_type`` (from the original's cache, or
downloaded when the network is reachable), else the small demo model that ships with dac-jax
(:data:`dac_jax.weights.registry.DEMO_MODEL`, trained for about an hour on a CPU), or random weights
when asked for (``--random``). The report names which one it used.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import numpy as np

from dac_jax import options
from dac_jax.api import Codec, init_model, load_model
from dac_jax.audio.io import read_audio, write_audio
from dac_jax.audio.resample import resample_long
from dac_jax.errors import UsageError, WeightsError
from dac_jax.evaluate import metrics
from dac_jax.fileio import atomic_path, check_folder
from dac_jax.weights import registry

DEMO_INPUT = Path(__file__).resolve().parent / "data" / "demo_input.wav"
OUTPUTS = ("input.wav", "output.wav", "input.dac", "decompressed.wav", "spectrograms.png")
MARKER = ".dac-jax-demo"  # says that the folder's OUTPUTS are a demo's, which a new demo may replace
MAX_SECONDS = 600.0
DEMO_TYPES = ("demo", "demo16khz")


def _timed(fn, *args):
    """(result, seconds) with the device work finished."""
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - start


def pick_model(model_type: str = "44khz", seed: int = 0, random: bool = False) -> tuple[Codec, str]:
    """``(codec, which)``: ``which`` is ``"released"``, ``"demo"`` (the shipped model) or ``"random"``.

    A released type is imported from the original's cache, or downloaded; when that fails (offline),
    the shipped demo model stands in, and the reason is printed."""
    if model_type.lower() in DEMO_TYPES:
        if random:
            raise UsageError("--random: random weights of the demo model's architecture are not a demo; "
                             "give a released --model_type (44khz, 24khz, 16khz)")
        return _demo_model(), "demo"
    preset = registry.PRESET_OF[registry.parse_model_type(model_type)]
    if random:
        print(f"USING RANDOM WEIGHTS (seed {seed}), as asked: shapes, bitrate and speed are real, the sound is not.")
        return init_model(preset, seed), "random"
    path = registry.cache_path(model_type)
    if path.is_file():
        print(f"Importing released weights from {path}")
        return load_model(path), "released"
    try:
        path = registry.download(model_type)
    except WeightsError as e:
        print(f"No released {model_type} weights: {e}")
        print("Falling back to the small demo model that ships with dac-jax.")
        return _demo_model(), "demo"
    print(f"Importing released weights from {path}")
    return load_model(path), "released"


def _demo_model() -> Codec:
    codec = load_model(registry.DEMO_MODEL)
    print(f"Using the demo model shipped with dac-jax ({registry.DEMO_MODEL}): a 16 kHz DAC of "
          f"{codec.config.n_codebooks} codebooks ({codec.config.bitrate / 1000:.0f} kbps) trained for about an "
          "hour on a CPU; recognisable, far from the released models' quality.")
    return codec


def demo_clip(duration: float | None, sample_rate: int) -> np.ndarray:
    """The demo's input at ``sample_rate``: the shipped clip (a spoken sentence that no model here
    was trained on, then a chord), cut to ``duration`` seconds or repeated to fill them."""
    clip, rate = read_audio(DEMO_INPUT)
    clip = resample_long(clip[None], rate, sample_rate)[0, 0] if rate != sample_rate else clip[0]
    if duration is not None:
        clip = np.resize(clip, int(round(duration * sample_rate)))
    return np.asarray(clip, np.float32)


def prepare_folder(output: Path) -> None:
    """Refuse a folder whose files of the demo's names are not an earlier demo's; mark it as the demo's."""
    theirs = [name for name in OUTPUTS if (output / name).exists()]
    if theirs and not (output / MARKER).is_file():
        raise UsageError(f"{output}: already holds {', '.join(theirs)}, not written by a demo; choose another --output")
    check_folder(output)
    output.mkdir(parents=True, exist_ok=True)
    (output / MARKER).touch()


def spectrogram_png(path: Path, clip: np.ndarray, recon: np.ndarray, sample_rate: int, title: str) -> bool:
    """Input and reconstruction as log-magnitude spectrograms, one above the other, in a PNG.
    ``False`` (and nothing written) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    images = [_log_spectrogram(x) for x in (clip, recon)]
    top = max(float(image.max()) for image in images)  # one colour scale for both, 90 dB deep
    extent = (0.0, len(clip) / sample_rate, 0.0, sample_rate / 2)
    fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True, sharey=True)
    for ax, image, name in zip(axes, images, ("input", "reconstruction")):
        ax.imshow(image, origin="lower", aspect="auto", extent=extent, cmap="magma", vmin=top - 90, vmax=top)
        ax.set_ylabel("Hz")
        ax.set_title(name)
    axes[-1].set_xlabel("seconds")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return True


def _log_spectrogram(x: np.ndarray, window: int = 512, hop: int = 128) -> np.ndarray:
    """``[window // 2 + 1, frames]`` magnitudes in dB (Hann window; exact silence at the floor)."""
    x = np.pad(np.asarray(x, np.float64), (window // 2, window // 2))
    frames = np.lib.stride_tricks.sliding_window_view(x, window)[::hop] * np.hanning(window)
    return 20 * np.log10(np.abs(np.fft.rfft(frames, axis=-1)).T + 1e-7)


def round_trip_metrics(clip: np.ndarray, recon: np.ndarray, sample_rate: int) -> tuple[dict[str, float], list[str]]:
    """The evaluator's metrics of one round trip at 44.1 kHz, the original's evaluation rate (the
    quality scores whose packages are installed; the rest are named in the notes)."""
    groups = tuple(g for g in metrics.GROUPS if g not in metrics.missing_quality(metrics.GROUPS))
    values, jobs, notes = metrics.pair_metrics(clip[None], sample_rate, recon[None], sample_rate, groups, "demo")
    for job in jobs:
        if job.key == metrics.RATES[44100]:
            scores, job_notes = metrics.quality(job)
            values.update(scores)
            notes += job_notes
    notes += list(metrics.missing_quality(metrics.GROUPS).values())
    return {k.removesuffix("-44k"): v for k, v in values.items() if k.endswith("-44k")}, notes


def run_demo(model_type: str = "44khz", output: str | Path = "runs/demo", duration: float | None = None,
             seed: int = 0, random: bool = False) -> dict:
    if duration is not None:
        duration = options.real("duration", duration, 0.0, MAX_SECONDS, " seconds", open_low=True)
    options.integer("seed", seed, 0, 2**32 - 1)
    output = Path(output)
    prepare_folder(output)
    codec, which = pick_model(model_type, seed, random)
    cfg = codec.config
    sr = codec.sample_rate

    clip = demo_clip(duration, sr)
    duration = len(clip) / sr
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

    names = {"released": f"released weights ({model_type})", "demo": "the shipped demo model",
             "random": f"RANDOM weights (seed {seed})"}
    # scored as written, so that `python -m dac_jax evaluate --reference --estimate` on the two files agrees
    scores, notes = round_trip_metrics(read_audio(output / "input.wav")[0][0], read_audio(output / "output.wav")[0][0], sr)
    png = output / "spectrograms.png"
    drew = spectrogram_png(png, clip, recon, sr, f"DAC {sr} Hz, {names[which]}: input vs reconstruction "
                           f"at {cfg.bitrate / 1000:.1f} kbps")
    result = {
        "weights": which,
        "pretrained": which != "random",
        "model": "demo16khz" if which == "demo" else model_type,
        "sample_rate": sr,
        "input_shape": audio.shape,
        "codes_shape": tuple(codes.shape),
        "output_shape": decoded_shape,
        "bitrate_kbps": cfg.bitrate / 1000,
        "frame_rate": cfg.frame_rate,
        "encode_s": encode_time,
        "decode_s": decode_time,
        "compile_s": encode_first - encode_time + decode_first - decode_time,
        "metrics": scores,
        "dac_bytes": dac_path.stat().st_size,
        "compress_s": compress_time,
        "decompress_s": decompress_time,
    }
    better = {g: "higher is better" if metrics.HIGHER_IS_BETTER[g] else "lower is better" for g in metrics.GROUPS}
    lines = "\n".join(f"  {name:<14} {value:8.3f}   ({better[name]})" for name, value in scores.items())
    print(
        f"\nModel:   DAC {sr} Hz, {names[which]}, hop {cfg.hop_length}, {cfg.n_codebooks} codebooks of {cfg.codebook_size}\n"
        f"Input:   {output / 'input.wav'}  shape {audio.shape} ({duration:.1f} s, float32)\n"
        f"Codes:   shape {tuple(codes.shape)} ({codes.dtype}), {cfg.frame_rate:.2f} frames/s, "
        f"bitrate {cfg.bitrate / 1000:.2f} kbps\n"
        f"Output:  {output / 'output.wav'}  shape {result['output_shape']}\n"
        f"Time:    encode {encode_time:.2f} s, decode {decode_time:.2f} s "
        f"({duration / (encode_time + decode_time):.2f}x real time on {jax.devices()[0].platform}); "
        f"compilation {result['compile_s']:.1f} s, once per shape\n"
        f"Quality of the round trip (the evaluator's metrics at 44.1 kHz"
        f"{'; meaningless with random weights' if which == 'random' else ''}):\n{lines}\n"
        + "".join(f"  note: {note}\n" for note in notes)
        + (f"Picture: {png} (spectrograms, input above the reconstruction)\n" if drew else
           "Picture: none (matplotlib is not installed: pip install matplotlib)\n")
        + f"File:    {dac_path} ({dac_path.stat().st_size / 1024:.1f} KiB, {8 * dac_path.stat().st_size / duration / 1000:.2f} kbps "
        f"with the file's header) written by compress in {compress_time:.2f} s; decompress to "
        f"{output / 'decompressed.wav'} in {decompress_time:.2f} s"
    )
    return result
