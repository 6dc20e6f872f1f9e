"""Command line: ``python -m dac_jax {encode,decode,demo,convert,export,download}``.

Each command calls one library function; errors of dac-jax become one line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dac_jax.errors import DacJaxError


def _demo(args) -> None:
    from dac_jax.demo import run_demo

    run_demo(args.model_type, args.output, args.duration, args.seed)


def _load_codec(args):
    from dac_jax.api import load_model

    if args.weights_path:
        return load_model(args.weights_path)
    return load_model(args.model_type, model_bitrate=args.model_bitrate, tag=args.model_tag)


def _encode(args) -> int:
    from dac_jax.codec.batch import encode_files

    summary = encode_files(
        _load_codec(args), args.input, args.output, win_duration=args.win_duration,
        n_quantizers=args.n_quantizers, mode=args.mode, batch_size=args.batch_size, progress=not args.quiet,
    )
    print(summary.line("encoded"))
    return 1 if summary.failed or not summary.done else 0


def _decode(args) -> int:
    from dac_jax.codec.batch import decode_files

    summary = decode_files(
        _load_codec(args), args.input, args.output, win_duration=args.win_duration,
        batch_size=args.batch_size, progress=not args.quiet,
    )
    print(summary.line("decoded"))
    return 1 if summary.failed or not summary.done else 0


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", nargs="+", help="files or folders (walked recursively; the tree is mirrored)")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--weights_path", default="", help="a released-format .pth or a dac-jax checkpoint folder")
    p.add_argument("--model_type", default="44khz", choices=["44khz", "24khz", "16khz"],
                   help="released model to use when --weights_path is not given")
    p.add_argument("--model_bitrate", default="8kbps", choices=["8kbps", "16kbps"])
    p.add_argument("--model_tag", default="latest")
    p.add_argument("--win_duration", type=float, default=5.0,
                   help="seconds of audio per chunk (bounds device memory)")
    p.add_argument("--batch_size", type=int, default=4, help="chunks per compiled call")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _convert(args) -> None:
    from dac_jax.api import load_model

    codec = load_model(args.input)
    if args.verify:  # before writing anything: a failed check leaves no output behind
        from dac_jax.weights.verify import verify_against_reference

        print("Verifying against the original PyTorch DAC ...")
        print(verify_against_reference(codec, args.input, duration=args.duration))
    codec.save(args.output, metadata={"converted_from": str(Path(args.input).resolve())})
    cfg = codec.config
    print(f"Converted {args.input} -> {args.output} (DAC {cfg.sample_rate} Hz, {cfg.n_codebooks} codebooks)")


def _export(args) -> None:
    from dac_jax.api import load_model

    codec = load_model(args.input)
    codec.export_torch(args.output)
    print(f"Exported {args.input} -> {args.output} (released .pth format, loads with dac.DAC.load)")


def _download(args) -> None:
    from dac_jax.weights.registry import download

    print(download(args.model_type, args.model_bitrate, args.tag))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dac_jax", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("encode", help="compress audio files to .dac files")
    _add_model_flags(p)
    p.add_argument("--n_quantizers", type=int, default=None, help="codebooks to use (default: all)")
    p.add_argument("--mode", default="independent", choices=["independent", "faithful"],
                   help="independent: codes equal whole-file encoding, one frame per hop, any window; "
                   "faithful: the original's window-dependent chunks")
    p.set_defaults(func=_encode)

    p = sub.add_parser("decode", help="decompress .dac files to .wav files")
    _add_model_flags(p)
    p.set_defaults(func=_decode)

    p = sub.add_parser("demo", help="round-trip an example clip through a model and report shapes, bitrate, time")
    p.add_argument("--model_type", default="44khz", help="44khz, 44khz-16kbps, 24khz or 16khz")
    p.add_argument("--output", default="runs/demo", help="folder for input.wav and output.wav")
    p.add_argument("--duration", type=float, default=5.0, help="seconds of example audio")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights when none are cached")
    p.set_defaults(func=_demo)

    p = sub.add_parser("convert", help="convert a released-format .pth to a dac-jax checkpoint folder")
    p.add_argument("input", help="a .pth in the original's format")
    p.add_argument("output", help="folder to write (config.json + params.msgpack)")
    p.add_argument("--verify", action="store_true", help="compare with the original PyTorch DAC on a test signal")
    p.add_argument("--duration", type=float, default=1.0, help="seconds of the verification signal")
    p.set_defaults(func=_convert)

    p = sub.add_parser("export", help="write a dac-jax checkpoint (or any loadable model) as an original-format .pth")
    p.add_argument("input", help="a dac-jax checkpoint folder or a .pth")
    p.add_argument("output", help=".pth file to write")
    p.set_defaults(func=_export)

    p = sub.add_parser("download", help="download released weights into the original's cache")
    p.add_argument("--model_type", default="44khz")
    p.add_argument("--model_bitrate", default="8kbps")
    p.add_argument("--tag", default="latest")
    p.set_defaults(func=_download)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except DacJaxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
