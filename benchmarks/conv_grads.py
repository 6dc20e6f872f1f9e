"""Each kernel-7 convolution of the 16 kHz model, forward and backward, in XLA and in torch (CPU).

    .venv/bin/python -m benchmarks.conv_grads

For every (channels, length) of the 16 kHz model's residual units at batch 4 (encoder 64-512
channels, decoder 96-768) and every dilation (1, 3, 9): XLA's forward convolution, XLA's backward
pass alone (the input's and the kernel's gradients of ``lax.conv_general_dilated``), and torch's
``conv1d`` forward and forward + backward (autograd), median of 5 after a warm-up, on all cores.
Prints one line per case (milliseconds).
"""

import time

import jax
import numpy as np
import torch
from jax import lax

from benchmarks.train_step import median_seconds


def bench(f, *a, n=5):
    jax.block_until_ready(f(*a))
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        jax.block_until_ready(f(*a))
        ts.append(time.perf_counter() - t)
    return np.median(ts)


def xla_conv(x, k, d):
    return lax.conv_general_dilated(x, k, (1,), [(3 * d, 3 * d)], rhs_dilation=(d,), dimension_numbers=("NWC", "WIO", "NWC"))


def main() -> None:
    import os

    torch.set_num_threads(os.cpu_count())
    batch = 4
    shapes = [(96, 6080), (192, 3040), (384, 760), (768, 152), (64, 6080), (128, 3040), (256, 760), (512, 152)]
    for c, t in shapes:
        for d in (1, 3, 9):
            x = jax.random.normal(jax.random.key(0), (batch, t, c))
            k = jax.random.normal(jax.random.key(1), (7, c, c)) * 0.05
            g = jax.random.normal(jax.random.key(2), (batch, t, c))
            forward = jax.jit(lambda x, k, d=d: xla_conv(x, k, d))
            backward = jax.jit(lambda x, k, g, d=d: jax.vjp(lambda x, k: xla_conv(x, k, d), x, k)[1](g))
            tf, tb = bench(forward, x, k), bench(backward, x, k, g)
            xt = torch.randn(batch, c, t, requires_grad=True)
            wt = (torch.randn(c, c, 7) * 0.05).requires_grad_()
            gt = torch.randn(batch, c, t)

            def torch_forward():
                with torch.no_grad():
                    torch.nn.functional.conv1d(xt, wt, padding=3 * d, dilation=d)

            def torch_both():
                y = torch.nn.functional.conv1d(xt, wt, padding=3 * d, dilation=d)
                torch.autograd.grad(y, (xt, wt), gt)

            gflop = 2 * 7 * c * c * t * batch / 1e9
            print(f"C={c} T={t} d={d}: XLA forward {tf * 1e3:.1f} ms ({gflop / tf:.0f} GFLOP/s), backward "
                  f"{tb * 1e3:.1f} ms, forward + backward {(tf + tb) * 1e3:.1f} ms | torch forward "
                  f"{median_seconds(torch_forward, 5) * 1e3:.1f} ms, forward + backward {median_seconds(torch_both, 5) * 1e3:.1f} ms", flush=True)


if __name__ == "__main__":
    main()
