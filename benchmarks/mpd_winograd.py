"""Would Winograd F(m, 5) speed up the period discriminators' last convolution? (issue 15; it does not)

    .venv/bin/python -m benchmarks.mpd_winograd [--tiles 2 4 6] [--batch 8] [--seconds 0.38] [--rate 16000]

The multi-period discriminators' fifth convolution (1024 -> 1024 channels, kernel (5, 1), stride 1)
is the largest of the discriminator's: about 6 GFLOP forward per period on the step's doubled
batch at 16 kHz. dac-jax runs it as a 1-D convolution over each period's column (``along_time``),
so :func:`dac_jax.nn.winograd.trainable_conv1d`, written for the generator's kernel-7
convolutions, applies to it with a kernel of 5 taps (F(m, 5): ``5 m / (m + 4)`` fewer products).
This times it beside XLA's direct convolution, forward and backward (gradients for the input and
the kernel), at the shape each period gives it, and reports the largest error against the direct
forward relative to its largest output.

The library offers tiles for kernel-7 only; here the transforms of F(m, 5) take the first
``m + 3`` of the library's interpolation points (0, +-1, +-2, +-1/2, +-3), the order the
library's F(2, 7) and F(4, 7) use.
"""

from __future__ import annotations

import argparse
import functools
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from benchmarks.train_step import median_seconds
from dac_jax.nn import winograd

ORDER = (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2), 3, -3)
_transforms = winograd.transforms.__wrapped__


@functools.lru_cache(maxsize=None)
def transforms(m: int, r: int = 7):
    saved = winograd.POINTS
    winograd.POINTS = {m: ORDER[: m + r - 2]}
    try:
        return _transforms(m, r)
    finally:
        winograd.POINTS = saved


winograd.transforms = transforms  # the module reads it at call time


def direct(x, w):
    return lax.conv_general_dilated(x, w, (1,), [(2, 2)], dimension_numbers=("NWC", "WIO", "NWC"))


def tiled(m: int):
    return lambda x, w: winograd.trainable_conv1d(x, w, m, 1, (2, 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, nargs="+", default=[2, 4, 6])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=0.38)
    parser.add_argument("--rate", type=int, default=16000)
    args = parser.parse_args()
    samples, channels = int(args.seconds * args.rate), 1024
    rng = np.random.default_rng(0)
    totals: dict[str, float] = {}
    print("| period | input | variant | forward (ms) | backward (ms) | error |")
    print("|---|---|---|---|---|---|")
    for period in (2, 3, 5, 7, 11):
        length = -(-samples // period)
        for _ in range(4):  # the four stride-3 convolutions before it (kernel 5, padding 2)
            length = (length - 1) // 3 + 1
        shape = (args.batch * period, length, channels)
        x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
        g = jnp.asarray(rng.standard_normal(shape), jnp.float32)
        w = jnp.asarray(rng.standard_normal((5, channels, channels)) / np.sqrt(5 * channels), jnp.float32)
        reference = direct(x, w)
        for name, conv in [("direct", direct)] + [(f"F({m}, 5)", tiled(m)) for m in args.tiles]:
            forward = jax.jit(conv)
            backward = jax.jit(lambda x, w, g, conv=conv: jax.vjp(conv, x, w)[1](g))
            t_f = 1e3 * median_seconds(lambda: jax.block_until_ready(forward(x, w)), 7)
            t_b = 1e3 * median_seconds(lambda: jax.block_until_ready(backward(x, w, g)), 7)
            error = float(jnp.max(jnp.abs(forward(x, w) - reference)) / jnp.max(jnp.abs(reference)))
            print(f"| {period} | {list(shape)} | {name} | {t_f:.1f} | {t_b:.1f} | {error:.1e} |", flush=True)
            totals[name] = totals.get(name, 0.0) + t_f + t_b
    print("\nall periods, forward + backward: " + ", ".join(f"{k} {v:.0f} ms" for k, v in totals.items()))


if __name__ == "__main__":
    main()
