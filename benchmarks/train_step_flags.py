"""dac-jax's training step under XLA flags, each beside the defaults (issue 15).

    .venv/bin/python -m benchmarks.train_step_flags [--preset 16khz] [--steps 6]
        [--variant NAME=FLAGS ...]

XLA reads its flags (``XLA_FLAGS``) once per process, so each variant runs in a worker process of
its own (:func:`benchmarks.train_step._worker`, with the trainer's allocator settings as
``train.py`` runs), beside a worker with the defaults that stays up for the whole run: for each
variant, its first step (trace + compile) is timed apart, then ``--steps`` steps alternate
between it and the defaults' worker, so that the machine's drift touches both alike. Reported per
variant: the median seconds a step of each and their ratio (above 1: the variant is faster).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics

from benchmarks.train_step import _worker
from dac_jax import memory

VARIANTS = {
    "memory-optimized scheduler": "--xla_cpu_scheduler_type=CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED",
    "concurrency-optimized scheduler": "--xla_cpu_scheduler_type=CPU_SCHEDULER_TYPE_CONCURRENCY_OPTIMIZED",
    "copy insertion with region analysis": "--xla_cpu_copy_insertion_use_region_analysis=true",
}


def start(context, flags: str, args) -> tuple:
    parent, child = context.Pipe()
    process = context.Process(target=_worker, args=(child, "dac-jax", args.preset, args.batch, args.seconds, args.steps, "cpu"))
    saved = dict(os.environ)
    env = memory.tunables_environment() if memory.applies() else dict(os.environ)
    env["XLA_FLAGS"] = " ".join(f for f in (env.get("XLA_FLAGS", ""), flags) if f)
    try:
        os.environ.clear()
        os.environ.update(env)
        process.start()  # a spawned worker starts from this environment
    finally:
        os.environ.clear()
        os.environ.update(saved)
    parent.recv()  # built
    parent.send(0)
    first = parent.recv()["s"]
    return process, parent, first


def stop(process, connection) -> None:
    connection.send(None)
    connection.recv()
    process.join(timeout=60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="16khz")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=0.38)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=FLAGS",
                    help="a variant's name and its XLA flags (default: the schedulers and copy insertion above)")
    args = ap.parse_args()
    variants = dict(v.split("=", 1) for v in args.variant) if args.variant else VARIANTS
    context = multiprocessing.get_context("spawn")
    base, base_conn, base_first = start(context, "", args)
    print(f"defaults: first step {base_first:.1f} s", flush=True)
    rows = []
    for name, flags in variants.items():
        try:
            process, connection, first = start(context, flags, args)
        except EOFError:
            print(f"{name}: the worker died (flags {flags!r} not accepted?)", flush=True)
            continue
        print(f"{name}: first step {first:.1f} s", flush=True)
        times: dict[str, list[float]] = {"defaults": [], name: []}
        for k in range(1, args.steps + 1):
            order = [("defaults", base_conn), (name, connection)]
            for label, conn in (order if k % 2 else order[::-1]):
                conn.send(k)
                times[label].append(conn.recv()["s"])
        stop(process, connection)
        a, b = statistics.median(times["defaults"]), statistics.median(times[name])
        print(f"{name}: {b:.2f} s a step against the defaults' {a:.2f} s ({a / b:.3f}x); "
              f"steps {['%.2f' % t for t in times[name]]} / {['%.2f' % t for t in times['defaults']]}", flush=True)
        rows.append((name, flags, a, b, first))
    stop(base, base_conn)
    print("\n| variant | XLA flags | defaults (s a step) | variant (s a step) | variant vs defaults | variant's first step (s) |")
    print("|---|---|---|---|---|---|")
    for name, flags, a, b, first in rows:
        print(f"| {name} | `{flags}` | {a:.2f} | {b:.2f} | {a / b:.3f}x | {first:.0f} |")


if __name__ == "__main__":
    main()
