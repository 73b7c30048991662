"""Tokenizers, corpora and the batch streams that feed training."""
