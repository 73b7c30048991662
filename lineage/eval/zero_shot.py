"""Zero-shot scoring protocols over corpora and cloze questions, shared by the milestones that
evaluate a pretrained LM without training it (GPT-2's Table 3, GPT-3's zero-shot rows).

Every text starts after one `<|endoftext|>` token unless `eot_prefix=False`: the state in
which GPT-2 begins a document. Without it the first token of a text has no context and is not
scored.
- Cloze (CBT-CN/NE): each candidate replaces XXXXX; the candidate whose completed query has
  the highest log-probability given the context wins.
- Words (WikiText, PTB, 1BW): lines are detokenized and joined with newlines (one per line,
  standing for that line's `<eos>`), scored with sliding windows, and perplexity is
  normalised by the ORIGINAL word count with one `<eos>` per line, and also per BPE token.
  `documents="stream"` scores the split as one text, so context crosses article boundaries;
  `"article"` restarts the context (and the `<|endoftext|>`) at each WikiText article, as
  lm-evaluation-harness does.
- Units (enwik8 bytes, text8 characters): bits per unit. Bytes are cut on character
  boundaries and tokenized losslessly: the scored tokens decode to exactly the counted bytes.
LAMBADA's last-word protocol is `lineage.eval.lambada`.
"""

import re

import numpy as np

from lineage.eval import lm_metrics

DOCUMENTS = ("stream", "article")
# A WikiText article starts at a level-1 heading line, " = Title = ".
_ARTICLE_TITLE = re.compile(r"^ = [^=].* = $")


def with_bos(tokenizer, ids, eot_prefix=True):
  """ids as scored: after one `<|endoftext|>` token, or as they are."""
  return np.asarray([tokenizer.eot_id, *ids] if eot_prefix else ids, np.int32)


def cbt(scorer, tokenizer, questions, detokenizer, eot_prefix=True):
  """Accuracy of picking the answer by the log-probability of the completed query.

  The context is the 20 sentences, one per line as in the upstream file, then a newline,
  then the completed query; each text is detokenized before BPE."""
  requests, answers = [], []
  for question in questions:
    candidates = [_text(c) for c in question["candidates"]]
    context = tokenizer.encode(detokenizer(_text(question["context"])) + "\n")
    query = _text(question["query"])
    if "XXXXX" not in query:
      raise ValueError(f"CBT query without the XXXXX blank: {query!r}")
    for candidate in candidates:
      completed = tokenizer.encode(detokenizer(query.replace("XXXXX", candidate)))
      requests.append(lm_metrics.Request(with_bos(tokenizer, context + completed, eot_prefix),
                                         len(completed)))
    answers.append(candidates.index(_text(question["answer"])))
  scores = scorer.score(requests).logprob.reshape(len(answers), -1)
  return {"acc": float((scores.argmax(-1) == np.asarray(answers)).mean()),
          "num_examples": len(answers)}


def _text(value):
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _nats(scorer, tokens, context, stride):
  if len(tokens) < 2:
    return 0.0
  requests = lm_metrics.sliding_windows(tokens, context, stride)
  return -float(scorer.score(requests).logprob.sum())


def corpus_ids(tokenizer, lines, detokenizer):
  """The detokenized lines joined by newlines (one per line, for its `<eos>`), as BPE ids."""
  return tokenizer.encode(detokenizer("\n".join(lines)) + "\n")


def articles(lines):
  """WikiText lines grouped into articles, each starting at its " = Title = " line (lines
  before the first title form their own group); one group when there is no title."""
  groups = [[]]
  for line in lines:
    if _ARTICLE_TITLE.match(line) and any(l.strip() for l in groups[-1]):
      groups.append([])
    groups[-1].append(line)
  return groups


def words(scorer, tokenizer, lines, detokenizer, context, stride, *, eot_prefix=True,
          documents="stream"):
  """Perplexity per original word (one `<eos>` per line) and per BPE token."""
  if documents not in DOCUMENTS:
    raise ValueError(f"documents={documents!r}; choose one of {', '.join(DOCUMENTS)}")
  groups = articles(lines) if documents == "article" else [lines]
  nats = num_tokens = 0
  for group in groups:
    ids = corpus_ids(tokenizer, group, detokenizer)
    nats += _nats(scorer, with_bos(tokenizer, ids, eot_prefix), context, stride)
    num_tokens += len(ids) - (0 if eot_prefix else 1)
  num_words = lm_metrics.word_count(lines)
  return {"word_ppl": lm_metrics.perplexity(nats, num_words),
          "token_ppl": lm_metrics.perplexity(nats, num_tokens), "num_words": num_words,
          "num_tokens": num_tokens, "num_lines": len(lines), "num_documents": len(groups),
          "nats": nats}


def whole_characters(data):
  """(the longest run of `data` that starts and ends on UTF-8 character boundaries, bytes
  dropped at the start, bytes dropped at the end): a split or a cap may cut a character."""
  start = 0
  while start < min(len(data), 3) and data[start] & 0xC0 == 0x80:  # Continuation bytes.
    start += 1
  end = len(data)
  try:
    data[start:].decode("utf-8")
  except UnicodeDecodeError as error:
    if error.reason != "unexpected end of data":
      raise ValueError(
          f"byte {start + error.start} of the scored text is not UTF-8 ({error.reason}); "
          "GPT-2's tokenizer reads text: score a UTF-8 file") from None
    end = start + error.start
  return data[start:end], start, len(data) - end


def units(scorer, tokenizer, data, context, stride, *, eot_prefix=True):
  """Bits per unit of `data` (bytes: per byte; str: per character), scored losslessly."""
  dropped = {}
  if isinstance(data, bytes):
    data, dropped["dropped_first_bytes"], dropped["dropped_last_bytes"] = whole_characters(data)
    text = data.decode("utf-8")
  else:
    text = data
  ids = tokenizer.encode(text)
  decoded = tokenizer.decode_bytes(ids)
  if decoded != text.encode("utf-8"):
    raise ValueError(f"the tokenizer does not round-trip this text ({len(decoded)} bytes back "
                     f"for {len(text.encode('utf-8'))}); its scores would not be of these units")
  nats = _nats(scorer, with_bos(tokenizer, ids, eot_prefix), context, stride)
  return {"bits": lm_metrics.bits_per_unit(nats, len(data)), "num_units": len(data),
          "num_tokens": len(ids), "nats": nats, **dropped}
