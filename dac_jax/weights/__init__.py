"""Weights: the original's formats (DAC .pth, DAC-VAE checkpoint.pt, the discriminator), dac-jax's
own folder, the released-weights registry and cache; ``formats.read_weights`` reads any of them."""
