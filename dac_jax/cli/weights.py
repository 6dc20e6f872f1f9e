"""``convert``, ``export`` and ``download``: weights between the original's formats and dac-jax's."""

from __future__ import annotations

from pathlib import Path

from dac_jax import options
from dac_jax.cli.common import VAE_TYPES, load_from_flags, option
from dac_jax.errors import UsageError
from dac_jax.fileio import check_writable
from dac_jax.weights import hf_format, registry
from dac_jax.weights.formats import NAMES, training_run
from dac_jax.weights.native import replaceable, save_native


def _not_the_input(args) -> None:
    inp, out = Path(args.input), Path(args.output)
    if out.resolve() == inp.resolve() or (out.exists() and inp.exists() and out.samefile(inp)):
        raise UsageError(f"{args.output}: is the input; write the {args.command} somewhere else")


# what differs between the two models here: how a model is summed up, the format export writes
_SIZE = {"dac": lambda c: f"{c.n_codebooks} codebooks", "vae": lambda c: f"{c.latent_dim} latent dims"}
_EXPORTED = {"dac": "released .pth format, loads with dac.DAC.load",
             "vae": "DAC-VAE checkpoint.pt format: generator + config['vae']"}


def _describe(model) -> str:
    return f"{NAMES[model.kind]} {model.sample_rate} Hz, {_SIZE[model.kind](model.config)}"


def convert(args) -> None:
    _not_the_input(args)
    check_writable(args.output, overwrite=args.overwrite, replaceable=replaceable, what="checkpoint")
    if args.discriminator:
        return convert_discriminator(args)
    model = load_from_flags(args.input, args.model_type)
    if args.verify:  # before writing anything: a failed check leaves no output behind
        if model.kind == "vae":
            raise UsageError("--verify compares with the original DAC package; DAC-VAE's original is not installable")
        from dac_jax.weights.verify import verify_against_reference  # imports torch and the original

        print("Verifying against the original PyTorch DAC ...")
        print(verify_against_reference(model, args.input, duration=args.duration))
    model.save(args.output, metadata={"converted_from": str(Path(args.input).resolve()), "source": model.source})
    print(f"Converted {args.input} -> {args.output} ({_describe(model)})")


def convert_discriminator(args) -> None:
    """``convert RUN OUT --discriminator``: the run's discriminator (same checkpoint choice as the
    generator's) as a dac-jax folder, which ``train.py --discriminator_weights`` reads, so that a
    later run fine-tunes both networks rather than pairing the generator with a fresh discriminator."""
    run = training_run(Path(args.input))
    if run is None:
        raise UsageError(f"{args.input}: --discriminator reads a train.py run (its save_path, or save_path/checkpoints/N)")
    if args.verify or args.model_type:
        raise UsageError("--discriminator takes neither --verify nor --model_type (a run's record names its discriminator)")
    from dac_jax.train.checkpoint import read_run_discriminator  # the train extra (Orbax)

    found = read_run_discriminator(*run)
    save_native(args.output, {"params": found.params}, found.config, metadata={
        "converted_from": str(Path(args.input).resolve()), "step": found.step, "metrics": found.metrics})
    print(f"Converted the discriminator of {args.input} (step {found.step}) -> {args.output} "
          f"({found.config.n_discriminators} sub-discriminators, width {found.config.width:g})")


def export(args) -> None:
    _not_the_input(args)
    if args.format == "hf":
        if args.model_type:
            raise UsageError("--format hf: transformers has no DAC-VAE model; only a DAC exports to Hugging Face")
        check_writable(args.output, overwrite=args.overwrite, replaceable=hf_format.replaceable,
                       what="Hugging Face folder", holds=hf_format.HOLDS)
    else:
        check_writable(args.output, overwrite=args.overwrite, what=".pth file")
    model = load_from_flags(args.input, args.model_type)
    if args.format == "hf":
        if model.kind != "dac":
            raise UsageError(f"{args.input}: a {NAMES[model.kind]}; transformers has no such model, only DAC exports to --format hf")
        model.export_hf(args.output)
        print(f"Exported {args.input} -> {args.output} (Hugging Face folder, loads with transformers.DacModel.from_pretrained)")
        return
    model.export_torch(args.output)
    print(f"Exported {args.input} -> {args.output} ({_EXPORTED[model.kind]})")


def download(args) -> None:
    print(registry.download(args.model_type, args.model_bitrate, args.tag))


def add_commands(sub) -> None:
    model_type = dict(default="", choices=["", *VAE_TYPES],
                      help="vae24khz-x2 / vae24khz-x3: the input is a DAC-VAE checkpoint (the preset is used "
                      "for a bare state dict)")
    p = sub.add_parser("convert", help="convert a released-format .pth (or DAC-VAE checkpoint.pt, or a training run) "
                       "to a dac-jax checkpoint folder")
    p.add_argument("input", help="a .pth in the original's format, DAC-VAE's checkpoint.pt with --model_type, "
                   "a Hugging Face DAC (folder or hub id), or a train.py run (its save_path: the best checkpoint; "
                   "save_path/checkpoints/N: step N)")
    p.add_argument("output", help="folder to write (config.json + params.msgpack)")
    p.add_argument("--model_type", **model_type)
    p.add_argument("--verify", action="store_true", help="compare with the original PyTorch DAC on a test signal")
    p.add_argument("--duration", type=option(lambda d: options.real("duration", d, 0, 60, " seconds", True)),
                   default=1.0, help="seconds of the verification signal")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dac-jax checkpoint folder")
    p.add_argument("--discriminator", action="store_true",
                   help="a train.py run's discriminator instead (for train.py --discriminator_weights)")
    p.set_defaults(func=convert)

    p = sub.add_parser("export", help="write a dac-jax checkpoint (or any loadable model) as an original-format "
                       ".pth, or as a Hugging Face folder")
    p.add_argument("input", help="a dac-jax checkpoint folder, a .pth, a Hugging Face folder or hub id")
    p.add_argument("output", help=".pth file to write (DAC-VAE: its checkpoint.pt format); with --format hf, "
                   "a folder (config.json + model.safetensors)")
    p.add_argument("--model_type", **model_type)
    p.add_argument("--format", choices=["pth", "hf"], default="pth",
                   help="pth: the original's file; hf: transformers' DacModel folder (DAC only)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file (or earlier Hugging Face export)")
    p.set_defaults(func=export)

    p = sub.add_parser("download", help="download released weights into the original's cache")
    p.add_argument("--model_type", default="44khz")
    p.add_argument("--model_bitrate", default="8kbps")
    p.add_argument("--tag", default="latest")
    p.set_defaults(func=download)
