"""Command line: ``python -m dac_jax {encode,decode,demo,convert,export,download}``.

``encode`` / ``decode`` run DAC (``.dac`` files) or, with a ``vae*`` ``--model_type`` or a DAC-VAE
weights folder, DAC-VAE (latent ``.npz`` files, :mod:`dac_jax.codec.latentfile`).

Each command calls one library function; errors of dac-jax become one line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from dac_jax import options
from dac_jax.errors import DacJaxError, UsageError


def _demo(args) -> None:
    from dac_jax.demo import run_demo

    run_demo(args.model_type, args.output, args.duration, args.seed)


VAE_TYPES = ("vae24khz-x2", "vae24khz-x3")


def _is_vae(args) -> bool:
    from dac_jax.weights.native import model_of

    if args.weights_path and Path(args.weights_path).is_dir():
        return model_of(args.weights_path) == "DAC-VAE"
    return args.model_type in VAE_TYPES


def _load_codec(args):
    """The DAC or DAC-VAE the flags name: ``--weights_path`` (a DAC-VAE when its folder says so, or
    with a ``vae*`` ``--model_type``), else the released DAC weights of ``--model_type``."""
    from dac_jax.api import load_model, load_vae
    from dac_jax.errors import WeightsError

    vae = _is_vae(args)
    if args.weights_path and vae:
        model = load_vae(args.weights_path, default_config=args.model_type if args.model_type in VAE_TYPES else None)
    elif args.weights_path:
        model = load_model(args.weights_path)
    elif vae:
        raise WeightsError(
            f"no download is known for DAC-VAE weights ({args.model_type}); pass --weights_path: the original's "
            "checkpoint.pt, a bare generator state dict, or a dac-jax folder (VAECodec.save)"
        )
    else:
        model = load_model(args.model_type, model_bitrate=args.model_bitrate, tag=args.model_tag)
    model.winograd = getattr(args, "winograd", None)  # convert / export have no such flag
    return model


def _option(check, parse=float):
    """An argparse type: ``parse`` the text, then the library's own check of that option."""
    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        try:
            return check(value)
        except UsageError as e:  # "win_duration must be ...": argparse names the flag itself
            raise argparse.ArgumentTypeError(str(e).split(" ", 1)[1]) from None
    return convert


def _int(text: str) -> int:
    return int(text, 10)


def _normalize_db(text: str):
    """``--normalize_db``: a loudness in LUFS, or ``none``."""
    return "none" if text.lower() == "none" else _option(options.normalize_db)(text)


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (with a pointer to --help), not the usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _check_vae_flags(args, vae: bool) -> None:
    from dac_jax.errors import UsageError

    if vae:
        if getattr(args, "n_quantizers", None) is not None:
            raise UsageError("--n_quantizers applies to DAC codes; DAC-VAE latents are continuous")
        if getattr(args, "mode", "independent") == "faithful":
            raise UsageError("--mode faithful is the original DAC's chunking; DAC-VAE runs window-independent only")
    elif getattr(args, "seed", None) is not None:
        raise UsageError("--seed samples DAC-VAE latents; DAC codes have no sampling")


def _plan(args, vae: bool, encoding: bool):
    """Every refusal a run can know before the model loads: flags that do not fit the model, the
    output folder, colliding or existing outputs, inputs that would be replaced. The run's plan."""
    from dac_jax.codec import batch

    _check_vae_flags(args, vae)
    if encoding:
        kind = "roundtrip" if args.mode == "encode_decode" else "encode_latents" if vae else "encode"
    else:
        kind = "decode_latents" if vae else "decode"
    return batch.plan(args.input, args.output, kind, args.overwrite)


def _encode(args) -> int:
    from dac_jax.api import VAECodec
    from dac_jax.codec.batch import encode_files, encode_latent_files, roundtrip_files

    planned = _plan(args, _is_vae(args), encoding=True)
    model = _load_codec(args)
    vae = isinstance(model, VAECodec)
    normalize_db = {None: None if vae else -16.0, "none": None}.get(args.normalize_db, args.normalize_db)
    common = dict(win_duration=args.win_duration, batch_size=args.batch_size, progress=not args.quiet,
                  overwrite=args.overwrite, planned=planned)
    if args.mode == "encode_decode":
        summary = roundtrip_files(model, args.input, args.output, n_quantizers=args.n_quantizers,
                                  normalize_db=normalize_db, seed=args.seed, **common)
        print(summary.line("round-tripped"))
    elif vae:
        summary = encode_latent_files(model, args.input, args.output, normalize_db=normalize_db, seed=args.seed, **common)
        print(summary.line("encoded"))
    else:
        summary = encode_files(model, args.input, args.output, n_quantizers=args.n_quantizers,
                               normalize_db=normalize_db, mode=args.mode, **common)
        print(summary.line("encoded"))
    return 1 if summary.failed or not summary.done else 0


def _decode(args) -> int:
    from dac_jax.api import VAECodec
    from dac_jax.codec.batch import decode_files, decode_latent_files

    planned = _plan(args, _is_vae(args), encoding=False)
    model = _load_codec(args)
    decode = decode_latent_files if isinstance(model, VAECodec) else decode_files
    summary = decode(model, args.input, args.output, win_duration=args.win_duration, batch_size=args.batch_size,
                     progress=not args.quiet, overwrite=args.overwrite, planned=planned)
    print(summary.line("decoded"))
    return 1 if summary.failed or not summary.done else 0


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", nargs="+", help="files or folders (walked recursively; the tree is mirrored)")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--weights_path", default="",
                   help="DAC: a released-format .pth or a dac-jax folder; DAC-VAE: its checkpoint.pt, a bare "
                   "state dict (with --model_type), or a dac-jax folder")
    p.add_argument("--model_type", default="44khz", choices=["44khz", "24khz", "16khz", *VAE_TYPES],
                   help="released DAC to use when --weights_path is not given; vae24khz-x2 / vae24khz-x3: "
                   "the DAC-VAE (latent files instead of .dac files; needs --weights_path)")
    p.add_argument("--model_bitrate", default="8kbps", choices=["8kbps", "16kbps"])
    p.add_argument("--model_tag", default="latest")
    p.add_argument("--win_duration", type=_option(options.win_duration), default=5.0,
                   help="seconds of audio per chunk (bounds device memory)")
    p.add_argument("--batch_size", type=_option(options.batch_size, _int), default=4, help="chunks per compiled call")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing output files (never the inputs); without it, a run that would "
                   "replace any file stops before it starts")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--winograd", type=int, choices=[2, 4], default=None,
                   help="experimental: Winograd F(m, 7) for the kernel-7 convolutions of >= 64 channels (faster on "
                   "CPU; float32 results no longer follow the original's summation; see benchmarks/RESULTS.md)")


def _not_the_input(args) -> None:
    inp, out = Path(args.input), Path(args.output)
    if out.resolve() == inp.resolve() or (out.exists() and inp.exists() and out.samefile(inp)):
        raise UsageError(f"{args.output}: is the input; write the {args.command} somewhere else")


def _load_weights(args):
    """``args.input`` as a DAC, or as a DAC-VAE (its folder says so, or ``--model_type vae*``)."""
    args.weights_path = args.input
    return _load_codec(args)


def _convert(args) -> None:
    from dac_jax.api import VAECodec
    from dac_jax.fileio import check_writable
    from dac_jax.weights.native import replaceable

    _not_the_input(args)
    check_writable(args.output, overwrite=args.overwrite, replaceable=replaceable, what="checkpoint")
    model = _load_weights(args)
    if args.verify:  # before writing anything: a failed check leaves no output behind
        if isinstance(model, VAECodec):
            from dac_jax.errors import UsageError

            raise UsageError("--verify compares with the original DAC package; DAC-VAE's original is not installable")
        from dac_jax.weights.verify import verify_against_reference

        print("Verifying against the original PyTorch DAC ...")
        print(verify_against_reference(model, args.input, duration=args.duration))
    model.save(args.output, metadata={"converted_from": str(Path(args.input).resolve())})
    cfg = model.config
    what = f"DAC-VAE {cfg.sample_rate} Hz, {cfg.latent_dim} latent dims" if isinstance(model, VAECodec) else \
        f"DAC {cfg.sample_rate} Hz, {cfg.n_codebooks} codebooks"
    print(f"Converted {args.input} -> {args.output} ({what})")


def _export(args) -> None:
    from dac_jax.api import VAECodec
    from dac_jax.fileio import check_writable

    _not_the_input(args)
    check_writable(args.output, overwrite=args.overwrite, what=".pth file")
    model = _load_weights(args)
    model.export_torch(args.output)
    if isinstance(model, VAECodec):
        print(f"Exported {args.input} -> {args.output} (DAC-VAE checkpoint.pt format: generator + config['vae'])")
    else:
        print(f"Exported {args.input} -> {args.output} (released .pth format, loads with dac.DAC.load)")


def _download(args) -> None:
    from dac_jax.weights.registry import download

    print(download(args.model_type, args.model_bitrate, args.tag))


def build_parser(prog: str = "python -m dac_jax") -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("encode", help="compress audio files to .dac files (DAC) or latent .npz files (DAC-VAE)")
    _add_model_flags(p)
    p.add_argument("--n_quantizers", type=_option(lambda n: options.integer("n_quantizers", n, 1), _int), default=None,
                   help="DAC: codebooks to use (default: all)")
    p.add_argument("--mode", default="independent", choices=["independent", "faithful", "encode_decode"],
                   help="independent: codes (latents) equal whole-file encoding, one frame per hop, any window; "
                   "faithful: the original DAC's window-dependent chunks; encode_decode: write the decoded "
                   ".wav instead (a round trip, as DAC-VAE's inference script)")
    p.add_argument("--normalize_db", type=_normalize_db, default=None,
                   help="loudness (LUFS) to normalise to before encoding, or none; default -16 for DAC "
                   "(the original's), none for DAC-VAE (its inference's)")
    p.add_argument("--seed", type=_option(options.seed, _int), default=None,
                   help="DAC-VAE: sample z = mu + noise * exp(logs) with this seed (default: z = mu)")
    p.set_defaults(func=_encode)

    p = sub.add_parser("decode", help="decompress .dac files (DAC) or latent .npz files (DAC-VAE) to .wav files")
    _add_model_flags(p)
    p.set_defaults(func=_decode)

    p = sub.add_parser("demo", help="round-trip an example clip through a model and report shapes, bitrate, time")
    p.add_argument("--model_type", default="44khz", help="44khz, 44khz-16kbps, 24khz or 16khz")
    p.add_argument("--output", default="runs/demo", help="folder for input.wav and output.wav")
    p.add_argument("--duration", type=_option(lambda d: options.real("duration", d, 0, 600, " seconds", True)),
                   default=5.0, help="seconds of example audio")
    p.add_argument("--seed", type=_option(options.seed, _int), default=0, help="seed of the random weights when none are cached")
    p.set_defaults(func=_demo)

    model_type = dict(default="", choices=["", *VAE_TYPES],
                      help="vae24khz-x2 / vae24khz-x3: the input is a DAC-VAE checkpoint (the preset is used "
                      "for a bare state dict)")
    p = sub.add_parser("convert", help="convert a released-format .pth (or DAC-VAE checkpoint.pt) to a dac-jax checkpoint folder")
    p.add_argument("input", help="a .pth in the original's format, or DAC-VAE's checkpoint.pt with --model_type")
    p.add_argument("output", help="folder to write (config.json + params.msgpack)")
    p.add_argument("--model_type", **model_type)
    p.add_argument("--verify", action="store_true", help="compare with the original PyTorch DAC on a test signal")
    p.add_argument("--duration", type=_option(lambda d: options.real("duration", d, 0, 60, " seconds", True)),
                   default=1.0, help="seconds of the verification signal")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dac-jax checkpoint folder")
    p.set_defaults(func=_convert)

    p = sub.add_parser("export", help="write a dac-jax checkpoint (or any loadable model) as an original-format .pth")
    p.add_argument("input", help="a dac-jax checkpoint folder or a .pth")
    p.add_argument("output", help=".pth file to write (DAC-VAE: its checkpoint.pt format)")
    p.add_argument("--model_type", **model_type)
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(func=_export)

    p = sub.add_parser("download", help="download released weights into the original's cache")
    p.add_argument("--model_type", default="44khz")
    p.add_argument("--model_bitrate", default="8kbps")
    p.add_argument("--tag", default="latest")
    p.set_defaults(func=_download)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> str:
    return f"warning: {message}\n"


def main(argv: list[str] | None = None, prog: str = "python -m dac_jax") -> int:
    args = build_parser(prog).parse_args(argv)
    warnings.formatwarning = _one_line_warning  # dac-jax's warnings name their file; no source line
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
