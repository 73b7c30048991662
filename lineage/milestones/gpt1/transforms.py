"""GPT-1's task-specific input transformations (Radford et al. 2018, section 3.3, Figure 1).

A pre-trained decoder reads one contiguous token sequence, so every task becomes one or more
sequences framed by special tokens that fine-tuning learns: a start token, a delimiter
between two texts, and an extract token whose final hidden state feeds the linear head.
- classification: start, text, extract;
- entailment: start, premise, delimiter, hypothesis, extract;
- similarity: both orderings of the two texts (no natural order), whose final states are added;
- multiple choice: one sequence per option (start, context, delimiter, option, extract),
  each scored by the head, with a softmax over the options.
A sequence longer than the context is cut from the left of its first text (the part
farthest from the extract token); a second text longer than the context alone keeps its start.
"""

import dataclasses

from lineage.data import tokenizers

KINDS = ("classification", "entailment", "similarity", "multiple_choice")


@dataclasses.dataclass(frozen=True)
class Specials:
  """Ids of the special tokens start, delimiter and extract."""
  start: int
  delimiter: int
  extract: int

  @classmethod
  def after(cls, vocab_size):
    """Three ids past a vocabulary of `vocab_size`, for a tokenizer that has none (bytes)."""
    return cls(vocab_size, vocab_size + 1, vocab_size + 2)

  @classmethod
  def of(cls, tokenizer):
    """GPT-1's BPE carries `_start_`, `_delimiter_`, `_classify_`; any other tokenizer gets
    three ids after its vocabulary."""
    ids = getattr(tokenizer, "special_ids", None)
    if ids is None:
      return cls.after(tokenizer.vocab_size)
    return cls(*(ids[name] for name in tokenizers.GPT1_SPECIAL_TOKENS))

  @property
  def vocab_end(self):
    """The smallest vocabulary size that holds them."""
    return max(self.start, self.delimiter, self.extract) + 1


def _frame(specials, first, second, max_len):
  """(start first [delimiter second] extract, whether a text lost tokens).

  Too long, the first text loses tokens from its left (the end of a premise or a story is
  what its continuation follows); a second text that does not fit even alone keeps its start.
  """
  framing = 3 if second is not None else 2
  second = [] if second is None else second
  if max_len < framing + 1:
    raise ValueError(f"a context of {max_len} tokens cannot hold one token of text and the "
                     f"{framing} special tokens; raise finetune.max_len")
  second_kept = second[:max(0, max_len - framing - 1)]
  room = max_len - framing - len(second_kept)
  first_kept = first[max(0, len(first) - room):]
  middle = [specials.delimiter, *second_kept] if framing == 3 else []
  sequence = [specials.start, *first_kept, *middle, specials.extract]
  return sequence, len(first_kept) < len(first) or len(second_kept) < len(second)


def transform(kind, specials, texts, max_len):
  """(the token sequences of one example, how many of them were truncated).

  `texts` are token lists: classification [text]; entailment [premise, hypothesis];
  similarity [a, b]; multiple_choice [context, option_1, ..., option_k].
  """
  if kind == "classification":
    framed = [_frame(specials, texts[0], None, max_len)]
  elif kind == "entailment":
    framed = [_frame(specials, texts[0], texts[1], max_len)]
  elif kind == "similarity":
    framed = [_frame(specials, texts[0], texts[1], max_len),
              _frame(specials, texts[1], texts[0], max_len)]
  elif kind == "multiple_choice":
    framed = [_frame(specials, texts[0], option, max_len) for option in texts[1:]]
  else:
    raise ValueError(f"unknown task kind {kind!r}; choose one of {', '.join(KINDS)}")
  return [sequence for sequence, _ in framed], sum(cut for _, cut in framed)
