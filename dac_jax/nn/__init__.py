"""Layers and blocks: convolution geometry, weight-normed convolutions, Snake, residual units,
the residual vector quantiser and the Gaussian (DAC-VAE) bottleneck. The bottom of the house:
imports nothing else of dac-jax but its errors."""
