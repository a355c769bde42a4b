"""Decoding audio files: one reader for every format, whole or block by block."""
