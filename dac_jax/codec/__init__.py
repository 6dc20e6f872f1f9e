"""Compression of whole files: chunk plans, chunked encode/decode, and the ``.dac`` file format."""
