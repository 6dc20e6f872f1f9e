"""Codecs on files and long signals, for DAC and DAC-VAE alike, on top of :mod:`dac_jax.runtime`.

- ``plan``: chunk arithmetic (plain Python, no JAX): the original's chunks, window-independent windows;
- ``chunked``: windows through a runtime model's ``encode_frames`` / ``decode_frames``, batched;
- ``signal``: the shared signal path (read, resample, loudness, back to the input's rate) and
  :class:`~dac_jax.codec.signal.CodecFiles`, what a codec does with files;
- ``compress`` (DAC, ``.dac`` files: ``dacfile``) and ``latents`` (DAC-VAE, ``.npz``: ``latentfile``):
  the one place per codec for its files and options;
- ``batch``: files and folder trees, written once for both codecs.

Nothing here imports the facade (:mod:`dac_jax.api`) or training.
"""
