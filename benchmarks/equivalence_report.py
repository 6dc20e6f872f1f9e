"""Measure how closely dac-jax reproduces the original PyTorch DAC, for every released architecture.

    .venv/bin/python -m benchmarks.equivalence_report [--presets 44khz 24khz ...] [--output FILE.md] [--direct]

For each preset: a seeded, randomly initialised original model saved in the released format and
loaded with ``dac_jax.load_model``; noise, a sine sweep and a speech-like signal (batches of 3 clips
of 0.5 / 0.75 / 1 s, zero-padded), in padded mode, and one unpadded 1 s-window chunk (what
chunked compression runs). Prints a Markdown table of code match rates and largest differences.
Needs the reference (``make test`` installs it).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import jax
import numpy as np

import dac_jax
from dac_jax.model.dac import DAC
from tests import reference


def _row(preset: str, case: str, codes, ref_codes, z, ref_z, latents, ref_latents, audio, ref_audio) -> dict:
    def rel(a, b):
        return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))

    codes = np.asarray(codes)
    return {
        "preset": preset,
        "case": case,
        "codes": f"{100 * np.mean(codes == ref_codes):.3f}%",
        "codebook 0": f"{100 * np.mean(codes[:, 0] == ref_codes[:, 0]):.2f}%",
        "z rel": f"{rel(z, ref_z):.1e}",
        "latents rel": f"{rel(latents, ref_latents):.1e}",
        "audio max abs": f"{float(np.max(np.abs(np.asarray(audio) - ref_audio))):.1e}",
    }


def measure(preset: str, folder: Path, direct: bool = False) -> list[dict]:
    import torch

    path = reference.reference_checkpoint(preset, folder)
    torch_model, codec = reference.load_torch(path), dac_jax.load_model(path)
    if direct:
        codec.winograd = None
    rows = []
    signals = reference.test_signals(codec.sample_rate)
    for name, audio in signals.items():
        ours, theirs = codec(audio), reference.run_torch(torch_model, audio)
        rows.append(_row(preset, f"padded, {name}", ours.codes, theirs["codes"], ours.z, theirs["z"],
                         ours.latents, theirs["latents"], ours.audio, theirs["audio"]))
    # one unpadded chunk of a 1 s window, as chunked compression runs it
    hop = codec.hop_length
    n_samples = int(np.ceil(codec.sample_rate / hop) * hop)
    chunk = np.pad(signals["speech"], ((0, 0), (0, 0), (codec.delay, codec.delay)))[..., :n_samples]
    module = DAC(codec.config, padded=False)
    ours = module.apply(codec.inference_variables, chunk, method=DAC.encode)  # what chunked compression runs
    ours_audio = module.apply(codec.inference_variables, ours.codes, method=DAC.decode_codes)
    torch_model.padding = False
    with torch.no_grad():
        z, codes, latents, _, _ = torch_model.encode(torch.from_numpy(chunk))
        audio = torch_model.decode(torch_model.quantizer.from_codes(codes)[0]).numpy()
    rows.append(_row(preset, "unpadded 1 s chunk, speech", ours.codes, codes.numpy(), ours.z, z.numpy(),
                     ours.latents, latents.numpy(), ours_audio, audio))
    return rows


def measure_compress(folder: Path) -> list[dict]:
    """compress / decompress against the original's, on the test suite's real files."""
    from dac_jax.codec.compress import compress, decompress
    from tests.codec.test_compress import CASES, original_signal, write_clip

    rows, models = [], {}
    for preset, window, name, seconds, rate, channels, subtype in CASES:
        if preset not in models:
            path = reference.reference_checkpoint(preset, folder)
            models[preset] = (reference.load_torch(path), dac_jax.load_model(path))
        torch_model, codec = models[preset]
        wav = write_clip(folder / name, seconds, rate, channels, subtype)
        win = seconds + 1 if window is None else window
        theirs = torch_model.compress(original_signal(wav), win_duration=win)
        ours = compress(codec, wav, win_duration=win, mode="faithful")
        their_file = theirs.save(folder / "theirs.dac")
        ref_audio = torch_model.decompress(their_file).audio_data.numpy()
        decoded = decompress(codec, their_file).samples
        ref_codes = theirs.codes.numpy()
        rows.append({
            "preset": preset,
            "case": f"{name} ({seconds} s, {rate} Hz, {channels} ch), window {window or 'none (one pass)'}",
            "codes": f"{100 * np.mean(ours.codes == ref_codes):.3f}%",
            "codebook 0": f"{100 * np.mean(ours.codes[:, 0] == ref_codes[:, 0]):.2f}%",
            "input_db diff (LU)": f"{float(np.max(np.abs(ours.input_db - theirs.input_db.numpy()))):.1e}",
            "decoded audio max abs": f"{float(np.max(np.abs(decoded - ref_audio))):.1e}",
        })
    return rows


def to_markdown(rows: list[dict]) -> str:
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(r[h]) for h in head) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["44khz", "44khz-16kbps", "24khz", "16khz"])
    parser.add_argument("--output", type=Path, help="also write the table to this Markdown file")
    parser.add_argument("--compress", action="store_true", help="also compare compress/decompress (slow)")
    parser.add_argument("--direct", action="store_true",
                        help="dac-jax with direct convolutions (default: the library's, Winograd decoding on a CPU)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        rows = [row for preset in args.presets for row in measure(preset, Path(folder), args.direct)]
        table = to_markdown(rows)
        if args.compress:
            table += "\n\ncompress / decompress (faithful mode) against the original's:\n\n"
            table += to_markdown(measure_compress(Path(folder)))
    import torch

    header = (
        f"dac-jax {dac_jax.__version__} vs descript-audio-codec (torch {torch.__version__}), "
        f"jax {jax.__version__}, float32 on {platform.processor() or platform.machine()} CPU"
    )
    print(header + "\n\n" + table)
    if args.output:
        args.output.write_text(header + "\n\n" + table + "\n")


if __name__ == "__main__":
    main()
