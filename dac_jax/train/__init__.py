"""Training DAC and DAC-VAE in JAX, one module per concern:

* ``config``: the frozen configs of a run (``StepConfig``, ``TrainConfig``, ``LossWeights``);
* ``losses``: mel / STFT / waveform / SI-SDR, the adversarial terms, the KL schedule;
* ``augment``: the original's transforms (VolumeNorm, RescaleAudio, ShiftPhase) on the device;
* ``optim``: AdamW with the original's schedules and gradient clipping;
* ``state`` / ``step``: the train state pytree, the pure ``train_step`` / ``eval_step`` and the mesh;
* ``checkpoint``: Orbax checkpoints of the whole state; ``loop``: ``train_and_evaluate``;
* the input pipeline: ``sources`` (folders and tensorflow-datasets read by index), ``excerpts``
  (which salient excerpt stream element ``i`` is), ``pipeline`` (the tf.data wiring).

Nothing here imports torch or tensorflow at import time (``pipeline`` and ``loop`` import
tensorflow when they are imported); ``import dac_jax`` never imports this package.
"""
