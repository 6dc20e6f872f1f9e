"""Where one chunk of compress and of decompress spends its time: XLA's operations by what they compute.

    .venv/bin/python -m benchmarks.codec_profile [--model_type 44khz] [--window 1] [--reps 5]
        [--output results/codec_profile]

Compiles the chunk functions the window sweep times (``runtime.encode`` on the unpadded module,
``runtime.decode`` of its codes; random weights, the library's default convolutions), runs each
``reps`` times, then traces one more call with ``jax.profiler`` and sums the duration of every
XLA operation, grouped by what it computes, from its HLO instruction and the module path JAX
recorded:

- kernel-7 convolutions (the residual units' dilated ones; apart, the one-channel first and last),
  the encoder's strided (downsampling) convolutions, the decoder's upsampling convolutions
  (polyphase: one stride-1 convolution), the kernel-1 convolutions (XLA makes them matrix
  products), the Winograd products and their transforms;
- the elementwise loops between them (Snake, bias, residual adds: XLA fuses these into one loop per
  layer boundary; the table says how many);
- layout copies and transposes; the quantiser; the rest.

Also: the chunk's median wall time, and the share of it the traced operations cover. Reading the
trace needs the XPlane protobuf that TensorFlow ships (the test environment has it). Results:
``<output>/profile.md`` (and ``.json``); the raw traces stay under ``<output>/trace_*``.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import statistics
import time
from pathlib import Path

from benchmarks.train_step_profile import operation_times


def hlo_instructions(hlo_text: str) -> dict[str, str]:
    """``{instruction name: its line}`` of a compiled module's HLO text (first definition wins)."""
    found = {}
    for line in hlo_text.splitlines():
        match = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = ", line)
        if match and match.group(1) not in found:
            found[match.group(1)] = line
    return found


def module_path(line: str) -> str:
    """``encoder/block_2/block_1`` from the instruction's op_name (the module path, no primitive)."""
    match = re.search(r'op_name="[^"]*?DAC\.(?:encode|decode_codes)/([^"]*)"', line)
    return "/".join(match.group(1).split("/")[:-1]) if match else ""


def category(line: str, winograd_paths: set[str]) -> str:
    opcode = re.search(r"= \S+ (\w[\w\-]*)\(", line)
    opcode = opcode.group(1) if opcode else "?"
    path = module_path(line)
    if "quantizer" in path:
        return "quantiser (projections, codebook search, lookups)"
    if opcode == "convolution":
        window = re.search(r"window=\{([^}]*)\}", line).group(1)
        size = int(re.search(r"size=(\d+)", window).group(1))
        shape = re.search(r"= f32\[([\d,]+)\]", line)
        channels = int(shape.group(1).split(",")[-1]) if shape else 0
        operand = re.search(r"convolution\(%([\w.\-]+)", line)
        if "stride=" in window:
            return "strided convolutions (encoder downsampling)"
        if size == 7:
            return "kernel-7 convolutions, one audio channel" if channels == 1 or "encoder/block_0" == path else \
                "kernel-7 convolutions (residual units, direct)"
        if "pad=" in window and "decoder" in path:
            return "upsampling convolutions (polyphase)"
        return f"other convolutions (size {size})"
    if opcode == "dot":
        if "lhs_batch_dims" in line:
            return "Winograd products"
        return "kernel-1 convolutions (matrix products)"
    if opcode == "fusion":
        if path in winograd_paths:
            return "Winograd transforms (and their bias add)"
        return "elementwise loops (Snake, bias, residual add)"
    if opcode in ("copy", "transpose"):
        return "layout copies and transposes"
    return f"other ({opcode})"


def profile(name: str, fn, args, reps: int, out: Path, winograd_paths: set[str], jax) -> dict:
    compiled = fn.lower(*args).compile()
    instructions = hlo_instructions(compiled.as_text())
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
    trace = out / f"trace_{name}"
    with jax.profiler.trace(str(trace)):
        jax.block_until_ready(compiled(*args))
    ops = operation_times(trace)
    groups: collections.Counter = collections.Counter()
    counts: collections.Counter = collections.Counter()
    for op, ms in ops.items():
        line = instructions.get(op)
        kind = category(line, winograd_paths) if line else "unnamed (runtime)"
        groups[kind] += ms
        counts[kind] += 1
    wall = statistics.median(times) * 1e3
    return {"name": name, "wall_ms": wall, "ops_ms": sum(ops.values()),
            "groups": [{"kind": k, "ms": ms, "count": counts[k]} for k, ms in groups.most_common()]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model_type", default="44khz")
    ap.add_argument("--window", type=float, default=1.0)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--direct", action="store_true", help="direct convolutions in the decoder too")
    ap.add_argument("--output", default="results/codec_profile")
    args = ap.parse_args()
    import os

    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import jax.numpy as jnp
    import numpy as np

    import dac_jax
    from dac_jax import runtime
    from dac_jax.audio import synth

    codec = dac_jax.init_model(args.model_type)
    if args.direct:
        codec.winograd = None
    variables = codec.inference_variables
    winograd_paths = {"/".join(p.key for p in path[1:-1])
                      for path, _ in jax.tree_util.tree_leaves_with_path(variables)
                      if getattr(path[-1], "key", "") == "winograd_kernel"}
    module = codec.unpadded_module
    hop = codec.hop_length
    n = -(-int(args.window * codec.sample_rate) // hop) * hop  # the sweep's chunk
    audio = jnp.asarray(0.5 * synth.speech_like(n / codec.sample_rate + 0.01, codec.sample_rate, seed=1)[:n],
                        jnp.float32)[None, None]
    codes = runtime.encode(module, variables, audio).codes
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    encode = jax.jit(lambda v, a: runtime.encode(module, v, a).codes)
    decode = jax.jit(lambda v, c: runtime.decode(module, v, c))
    reports = [profile("compress", encode, (variables, audio), args.reps, out, winograd_paths, jax),
               profile("decompress", decode, (variables, codes), args.reps, out, winograd_paths, jax)]
    (out / "profile.json").write_text(json.dumps(reports, indent=1) + "\n")
    lines = [f"{args.model_type}, one {args.window} s chunk ({n} samples, {codes.shape[-1]} frames), "
             f"decoder {'direct' if args.direct else f'Winograd F({codec.winograd}, 7)' if codec.winograd else 'direct'}, "
             f"jax {jax.__version__}", ""]
    for r in reports:
        lines += [f"**{r['name']}**: {r['wall_ms']:.0f} ms a chunk (median of {args.reps}); traced operations "
                  f"{r['ops_ms']:.0f} ms", "", "| what | ms | share of the operations | operations |", "|---|---|---|---|"]
        lines += [f"| {g['kind']} | {g['ms']:.1f} | {g['ms'] / r['ops_ms']:.1%} | {g['count']} |" for g in r["groups"]]
        lines.append("")
    (out / "profile.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
