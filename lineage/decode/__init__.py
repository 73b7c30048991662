"""Model-agnostic decoding, compiled once per shape, with the parameters as arguments.

A model takes part through two hashable callables, apply_fn(params, tokens, positions,
segment_ids, cache) -> (logits, cache) and init_cache(batch, slots) -> cache
(`lineage.models.gpt.decoding(cfg)` gives GPT's), so PPO, pass@k and chat reuse one
executable as the parameters and the sampling values change.

  sampling.py  greedy, temperature, top-k, top-p: static flags, traced values
  generate.py  Generator: left-padded batches, stop tokens and strings, per-example lengths,
               streaming callbacks
  text.py      host-side text: cutting at stop strings, streaming UTF-8
  beam.py      BeamSearch: the 2017 Transformer's beam search with GNMT's length penalty;
               a start cache lets an encoder-decoder bring its encoded source
"""

from lineage.decode.beam import BeamSearch, length_penalty
from lineage.decode.generate import Generator, left_pad
from lineage.decode.sampling import Sampling, filter_logits, next_token
from lineage.decode.text import IncrementalText, cut_at_stop

__all__ = ["BeamSearch", "Generator", "IncrementalText", "Sampling", "cut_at_stop",
           "filter_logits", "left_pad", "length_penalty", "next_token"]
