"""What every command shares: the parser that errs in one line, option types that run the
library's own checks, the model the flags name, and the error boundary (one line, an exit code)."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Callable, Optional

import jax

from dac_jax import options
from dac_jax.api import load
from dac_jax.errors import DacJaxError, UsageError, WeightsError
from dac_jax.nn import precision as precision_rules
from dac_jax.runtime import Model, use_compilation_cache
from dac_jax.weights import hub
from dac_jax.weights.native import model_of

DAC_TYPES = ("44khz", "24khz", "16khz", "demo16khz")  # released, and the demo model that ships with dac-jax
VAE_TYPES = ("vae24khz-x2", "vae24khz-x3")


class Parser(argparse.ArgumentParser):
    """Usage errors as one line (with a pointer to --help), not the usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def option(check: Callable, parse: Callable = float) -> Callable[[str], object]:
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


def integer(text: str) -> int:
    return int(text, 10)


def normalize_db(text: str):
    """``--normalize_db``: a loudness in LUFS, or ``none``."""
    return "none" if text.lower() == "none" else option(options.normalize_db)(text)


def model_kind(weights_path: str, model_type: str) -> str:
    """``"dac"`` or ``"vae"``: what the flags name, known before anything loads (a weights folder
    says which model it holds; a file is DAC-VAE's with a ``vae*`` ``--model_type``)."""
    if weights_path and Path(weights_path).is_dir():
        return "vae" if model_of(weights_path) == "DAC-VAE" else "dac"
    return "vae" if model_type in VAE_TYPES else "dac"


def add_compilation_cache_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no_compilation_cache", action="store_true",
                   help="do not keep compiled programs in ~/.cache/dac_jax/xla (or $DAC_JAX_COMPILATION_CACHE; "
                   "0 turns it off), so that the next run compiles again")


def start_compilation_cache(args) -> None:
    """JAX's persistent compilation cache, unless ``--no_compilation_cache``: a second run of the
    same command loads its compiled programs instead of compiling them again."""
    if not args.no_compilation_cache:
        use_compilation_cache()


PRECISION_HELP = (
    "the convolutions' arithmetic: float32 (default, on GPUs too: no TF32), tf32 (a GPU's TensorFloat-32 tensor "
    "cores) or bfloat16 (bfloat16 operands, float32 sums; any backend, slower than float32 on a CPU); the two "
    "opt-ins change some codes and run direct convolutions (benchmarks/RESULTS.md)")


def add_precision_flag(p: argparse.ArgumentParser, default: Optional[str] = "float32") -> None:
    """``--precision`` (:mod:`dac_jax.nn.precision`); ``default=None`` lets a command tell whether
    it was given (None means float32)."""
    p.add_argument("--precision", default=default, choices=precision_rules.PRECISIONS, help=PRECISION_HELP)


def check_precision(precision: Optional[str]) -> str:
    """``precision`` (None: float32) if this backend runs it, else a :class:`UsageError` naming the flag."""
    precision = precision or "float32"
    problem = precision_rules.check(precision, jax.default_backend())
    if problem is not None:
        raise UsageError(f"--precision: {problem}")
    return precision


def load_from_flags(weights_path: str, model_type: str, model_bitrate: str = "8kbps", tag: str = "latest",
                    winograd: Optional[int] = None, direct: bool = False, fast_encoder: bool = False,
                    precision: str = "float32") -> Model:
    """The DAC or DAC-VAE the flags name: ``--weights_path`` (read as :func:`model_kind` says), else
    the released DAC weights of ``--model_type``; ``winograd`` (the decoder's Winograd points,
    else :func:`~dac_jax.runtime.default_winograd`), ``direct`` (direct convolutions only) and
    ``fast_encoder`` (the checked Winograd encoder) as ``--winograd``, ``--direct`` and
    ``--fast_encoder``, which the caller has checked for conflicts; ``precision`` as ``--precision``
    (:mod:`dac_jax.nn.precision`)."""
    kind = model_kind(weights_path, model_type)
    if weights_path:
        preset = {"default_config": model_type if model_type in VAE_TYPES else None} if kind == "vae" else {}
        if tag != "latest":  # the revision of a hub id; a file or folder has none
            if not (hub.is_repo_id(weights_path) and kind == "dac"):
                raise UsageError(f"--model_tag {tag}: a tag or revision applies to a released model type or a "
                                 f"Hugging Face hub id, not to {weights_path}")
            preset = {"tag": tag}
        model = load(weights_path, kind, **preset)
    elif kind == "vae":
        raise WeightsError(
            f"no download is known for DAC-VAE weights ({model_type}); pass --weights_path: the original's "
            "checkpoint.pt, a bare generator state dict, or a dac-jax folder (VAECodec.save)"
        )
    else:
        model = load(model_type, "dac", model_bitrate=model_bitrate, tag=tag)
    if direct:
        model.winograd = None
    elif winograd is not None or (fast_encoder and model.winograd is None):
        model.winograd = winograd or 4
    model.fast_encoder = fast_encoder  # the encoder too (DAC: its codes checked, dac_jax.guard)
    model.precision = precision  # an opt-in turns Winograd off (the caller has refused --winograd with it)
    return model


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> str:
    return f"warning: {message}\n"


def run(parser: argparse.ArgumentParser, argv: Optional[list[str]] = None) -> int:
    """Parse, call the command's function, and turn dac-jax's errors into one line and exit 1."""
    args = parser.parse_args(argv)
    warnings.formatwarning = _one_line_warning  # dac-jax's warnings name their file; no source line
    return one_line_errors(lambda: args.func(args))


def one_line_errors(call: Callable[[], Optional[int]]) -> int:
    """``call()``'s exit code (0 for None); dac-jax's errors as one line on stderr and exit 1,
    Ctrl-C as ``interrupted`` and 130."""
    try:
        return call() or 0
    except DacJaxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
