"""Where dac-jax's training step spends its time: one profiled step, XLA's operations by kind.

    .venv/bin/python -m benchmarks.train_step_profile [--preset 16khz] [--batch 4] [--seconds 0.38]
        [--top 12] [--output results/train_step_profile]

Builds the step of ``benchmarks/train_step.py`` (dac-jax's compiled ``make_train_step``, one
device), compiles it, takes two steps, then traces a third with ``jax.profiler`` and sums the
duration of every XLA operation the trace records, grouped by kind (the fusion's name without its
number: ``transpose_copy_fusion``, ``convolution-base-dilated``, ...), and lists the largest single
operations with their shapes and the source line JAX recorded (from the compiled module's HLO).
It runs as ``train.py`` does, keeping freed memory (:mod:`dac_jax.memory`;
``DAC_JAX_KEEP_MEMORY=0`` for the system's allocator). Also reported: the step's wall time, user and system CPU seconds and minor page faults (the page
faults are the step's freshly mapped working memory). Reading the trace needs the XPlane protobuf
that TensorFlow ships (installed with the training extra). Results: ``<output>/profile.json``
and ``profile.md``, the compiled module's HLO in ``module.hlo.txt``; the raw trace stays under
``<output>/trace``.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re
import time
from pathlib import Path


def operation_times(trace_folder: Path) -> collections.Counter:
    """``{operation name: milliseconds}`` summed over the XLA worker threads of one trace."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    # the newest: each run of this tool adds its trace beside the earlier ones
    path = max(glob.glob(str(trace_folder / "**" / "*.xplane.pb"), recursive=True), key=os.path.getmtime)
    space = xplane_pb2.XSpace()
    space.ParseFromString(Path(path).read_bytes())
    times: collections.Counter = collections.Counter()
    for plane in space.planes:
        names = plane.event_metadata
        for line in plane.lines:
            if not line.name.startswith("tf_XLA"):
                continue
            for event in line.events:
                name = names[event.metadata_id].name
                if not name.startswith(("ThunkExecutor", "SlinkyThreadPool")):  # containers, not operations
                    times[name] += event.duration_ps / 1e9
    return times


def hlo_definitions(hlo_text: str) -> dict[str, tuple[str, str]]:
    """``{instruction: (result shape, JAX op_name)}`` of a compiled module's HLO text."""
    found = {}
    for line in hlo_text.splitlines():
        match = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = (\S+) .*", line)
        if match and match.group(1) not in found:
            op_name = re.search(r'op_name="([^"]*)"', line)
            found[match.group(1)] = (match.group(2), op_name.group(1) if op_name else "")
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="16khz")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=0.38)
    ap.add_argument("--top", type=int, default=12, help="how many single operations to list")
    ap.add_argument("--output", default="results/train_step_profile")
    args = ap.parse_args()
    from dac_jax.memory import keep_freed_memory

    keep_freed_memory()  # as train.py runs (re-executes once)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    from benchmarks.train_step import Ours, make_batches, measured

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (audio,) = make_batches(args.preset, args.batch, args.seconds, 1)
    impl = Ours(args.preset)
    start = time.perf_counter()
    impl.fn = impl.fn.lower(impl.state, impl.shard(audio, impl.mesh)).compile()  # its HLO names the trace's operations
    compile_s = time.perf_counter() - start
    hlo = impl.fn.as_text()
    (out / "module.hlo.txt").write_text(hlo)  # what the trace's operation names refer to
    definitions = hlo_definitions(hlo)
    first = measured(impl.step, audio)
    warm = measured(impl.step, audio)
    trace = out / "trace"
    with jax.profiler.trace(str(trace)):
        traced = measured(impl.step, audio)
    times = operation_times(trace)
    kinds: collections.Counter = collections.Counter()
    counts: collections.Counter = collections.Counter()
    for name, ms in times.items():
        kind = re.sub(r"\.\d+$", "", name)
        kinds[kind] += ms
        counts[kind] += 1
    total = sum(times.values())
    report = {"preset": args.preset, "batch": args.batch, "seconds": args.seconds, "compile_s": compile_s, "first_step": first,
              "warm_step": warm, "traced_step": traced, "operations_ms": total,
              "kinds": [{"kind": k, "ms": ms, "count": counts[k]} for k, ms in kinds.most_common()],
              "largest": [{"name": n, "ms": ms, "shape": definitions.get(n, ("?", ""))[0],
                           "source": definitions.get(n, ("", "?"))[1]} for n, ms in times.most_common(args.top)]}
    (out / "profile.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [f"dac-jax training step, {args.preset}, batch {args.batch} x {args.seconds} s: warm step "
             f"{warm['s']:.2f} s (user {warm['user_s']:.1f} s, sys {warm['sys_s']:.1f} s, "
             f"{warm['minor_faults']} minor page faults); traced step {traced['s']:.2f} s, its operations "
             f"{total / 1e3:.2f} s summed over XLA's threads", "",
             "| kind | ms | share | operations |", "|---|---|---|---|"]
    lines += [f"| {k} | {ms:.0f} | {ms / total:.1%} | {counts[k]} |" for k, ms in kinds.most_common(args.top)]
    lines += ["", "| largest operations | ms | result | source |", "|---|---|---|---|"]
    lines += [f"| {d['name']} | {d['ms']:.0f} | `{d['shape']}` | {d['source'][-90:]} |" for d in report["largest"]]
    (out / "profile.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
