"""Language-model metrics: which tokens each window scores, and nats turned into the units
papers report (perplexity per word or per token, bits per byte or per character).

Results are only comparable across tokenizers when normalised by a count that does
not depend on the model's tokenizer, e.g. the words of the benchmark's own
tokenization, or the bytes of the original file; these helpers keep that explicit.
"""

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class Request:
  """Score the last `num_targets` tokens of `tokens`, each given everything before it."""
  tokens: np.ndarray
  num_targets: int

  def __post_init__(self):
    if not 1 <= self.num_targets < len(self.tokens):
      raise ValueError(f"a request scores between 1 and len(tokens) - 1 = {len(self.tokens) - 1} "
                       f"tokens (the first token has no context); got {self.num_targets}")


def sliding_windows(tokens, context, stride):
  """Requests that score every token of `tokens` but the first exactly once.

  The first window scores its `context` targets; each later one scores the next
  `stride` targets, seeing the `context - stride` tokens before them as left context
  (the Hugging Face perplexity recipe). Prepend a beginning-of-text token to score
  the text's first token too.
  """
  if not 0 < stride <= context:
    raise ValueError(f"stride={stride} must be in [1, context={context}]")
  tokens = np.asarray(tokens, np.int32)
  requests = []
  scored_to = 0  # Targets tokens[1:scored_to + 1] are scored.
  num_targets = len(tokens) - 1
  while scored_to < num_targets:
    end = min(num_targets, context if scored_to == 0 else scored_to + stride)
    start = max(0, end - context)
    requests.append(Request(tokens[start:end + 1], end - scored_to))
    scored_to = end
  return requests


def word_count(lines, eos_per_line=True):
  """Words of the benchmark's own tokenization: whitespace-separated tokens, plus one
  `<eos>` per line (the count the WikiText and PTB literature normalises by)."""
  return sum(len(line.split()) + int(eos_per_line) for line in lines)


def perplexity(total_nats, count):
  """exp(total negative log-likelihood / count): per word or per token, as `count` is."""
  if count <= 0:
    raise ValueError(f"perplexity needs a positive count, got {count}")
  return math.exp(total_nats / count)


def bits_per_unit(total_nats, count):
  """Bits per byte (enwik8) or per character (text8): nats / ln 2 / units of the original."""
  if count <= 0:
    raise ValueError(f"bits per unit need a positive count, got {count}")
  return total_nats / math.log(2) / count
