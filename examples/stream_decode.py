"""Decode a ``.dac`` file as a stream, a few frames at a time, writing audio as it is decoded.

    python examples/stream_decode.py music.dac music.wav --model_type 44khz --block 4
    python examples/stream_decode.py music.dac - --block 4 | aplay -f FLOAT_LE -r 44100 -c 1

What a language model's sampling loop does with its tokens: each push of ``--block`` frames returns
the audio that is now final (:meth:`dac_jax.api.Codec.stream_decoder`), and it is written at
once, to a WAV file (its header is fixed when the stream ends) or as raw float32 samples to stdout
(``-``, for a player). The stream equals ``codec.decode`` of the whole sequence; a push's audio
lags its codes by ``codec.stream_latency``.

The file must hold one sequence per channel (``--mode independent``, the default of ``encode``),
at the model's sample rate. Loudness: ``encode`` normalised the input to ``--normalize_db``
(default -16 LUFS, as encode's; ``none`` if it was encoded with ``--normalize_db none``); the
stream applies the gain back to the input's loudness stored in the file (``decompress`` measures
the whole reconstruction instead: the two differ by the codec's loudness error, a fraction of a dB).
Channels are interleaved.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

import dac_jax
from dac_jax.codec.dacfile import DACFile
from dac_jax.errors import DacJaxError, UsageError

def stream(codec, dacfile: DACFile, block: int, encoded_at_db: float | None = -16.0):
    """``[samples, channels]`` float32 blocks of the decoded file, as each push makes them final
    (an iterator; the file is checked first)."""
    if not dacfile.padding or dacfile.chunk_length < dacfile.codes.shape[-1]:
        raise UsageError("the file holds the original's overlapping chunks (--mode faithful); stream decoding needs "
                         "one sequence per channel (--mode independent)")
    if dacfile.sample_rate != codec.sample_rate:
        raise UsageError(f"the file's audio was {dacfile.sample_rate} Hz; this example writes the model's "
                         f"{codec.sample_rate} Hz and does not resample")
    codes = np.asarray(dacfile.codes, np.int32)  # [batch * channels, K, frames]
    input_db = np.repeat(np.asarray(dacfile.input_db, np.float32).reshape(-1), dacfile.channels)
    gain = np.ones_like(input_db) if encoded_at_db is None else 10.0 ** ((input_db - encoded_at_db) / 20.0)
    decoder = codec.stream_decoder(batch_size=codes.shape[0])
    written, length = 0, dacfile.original_length

    def cut(audio: np.ndarray) -> np.ndarray:
        nonlocal written
        keep = audio[:, 0, : max(0, length - written)] * gain[:, None]  # [items, samples]
        written += keep.shape[-1]
        return keep.T.astype(np.float32)  # channels interleaved

    def blocks():
        for start in range(0, codes.shape[-1], block):
            yield cut(decoder.push(codes[..., start: start + block]))
        yield cut(decoder.flush())

    return blocks()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("input", help="a .dac file (written with --mode independent)")
    p.add_argument("output", help="a .wav file to create, or - for raw float32 samples on stdout")
    p.add_argument("--model_type", default="44khz", help="the model that wrote the file (or --weights_path)")
    p.add_argument("--weights_path", default="")
    p.add_argument("--block", type=int, default=4, help="frames per push (4 frames: 46 ms at 44.1 kHz)")
    p.add_argument("--normalize_db", default="-16", help="the loudness encode normalised to (LUFS), or none")
    args = p.parse_args(argv)
    try:
        if args.block < 1:
            raise UsageError(f"--block must be >= 1; got {args.block}")
        out = None if args.output == "-" else Path(args.output)
        if out is not None and out.exists():
            raise UsageError(f"{out}: exists; choose another output")
        codec = dac_jax.load_model(args.weights_path or args.model_type)
        dacfile = DACFile.load(args.input)
        try:
            encoded_at = None if args.normalize_db == "none" else float(args.normalize_db)
        except ValueError:
            raise UsageError(f"--normalize_db must be a number or none; got {args.normalize_db!r}") from None
        blocks = stream(codec, dacfile, args.block, encoded_at)
        print(f"{args.input}: {dacfile.codes.shape[-1]} frames; pushes of {args.block}; algorithmic latency "
              f"{codec.stream_latency.decoder_ms:.1f} ms", file=sys.stderr)
        t = time.perf_counter()
        if out is None:
            for audio in blocks:
                sys.stdout.buffer.write(audio.tobytes())
                sys.stdout.flush()
        else:
            partial = out.with_name(f".{out.name}.partial")
            try:
                with sf.SoundFile(partial, "x", samplerate=codec.sample_rate, channels=dacfile.channels,
                                  subtype="FLOAT", format="WAV") as f:
                    for audio in blocks:
                        f.write(audio)
                os.replace(partial, out)  # complete, or not there
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
        seconds = dacfile.original_length / codec.sample_rate
        print(f"{seconds:.2f} s of audio in {time.perf_counter() - t:.2f} s", file=sys.stderr)
        return 0
    except DacJaxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
