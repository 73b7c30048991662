"""GPT-3's few-shot in-context evaluation (Brown et al. 2020, Section 2.4 and Appendix G).

A K-shot prompt is an optional task description, then K demonstrations (context, the task's
separator, the gold completion) drawn with a seed from the task's demonstration split, then
the example's context; parts are joined by "\\n\\n" unless the task says otherwise. The model
then either picks among completions (multiple choice), writes one greedily (free form), or
finishes a LAMBADA passage in the paper's fill-in-the-blank format.

Demonstrations never include the example under test, neither by identity nor by a duplicate
of its text (LAMBADA has no training split, so its demonstrations come from the tested
split itself). Each example draws its own permutation of the pool from (seed, its id), so its
prompt does not depend on which other examples are evaluated, and the demonstrations of
K = 1 are the first of those of K = 8.

Multiple-choice scoring rules (`RULES`), each an argmax over the choices of:
  sum            the summed log-probability of the completion's tokens;
  per_token      that sum over the completion's token count (GPT-3's default);
  per_char       that sum over the completion's characters, without the separator
                 (lm-evaluation-harness's `acc_norm`);
  per_byte       over its UTF-8 bytes instead (lm-evaluation-harness's `acc_bytes`);
  unconditional  log P(completion | context) - log P(completion | answer context), the
                 answer context being "Answer:" (GPT-3 on ARC, OpenBookQA and RACE).

A cloze (LAMBADA) counts when greedy decoding spells its target word, every target token the
argmax (lm-evaluation-harness's LAMBADA `acc`); a free-form answer is the greedy continuation
up to a stop string, scored by SQuAD's exact match and token F1.

Every choice of an example shares the prompt up to the completion: with `reuse_prefix`, that
prefix is run once into a KV cache, and the completions of all choices are scored from copies
of it, as many tokens as the completions have instead of the whole prompt per choice. Shapes
are bucketed (batch rows fixed, lengths rounded up to powers of two), so a task compiles once
per bucket, not per example.
"""

import collections
import dataclasses
import functools
import re
import string
import time
import zlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from lineage.decode import generate, sampling, text as decode_text
from lineage.eval import lm_metrics, scoring
from lineage.models import gpt

RULES = ("sum", "per_token", "per_char", "per_byte", "unconditional")
KINDS = ("choice", "free_form", "cloze")
ON_TOO_FEW = ("error", "clip")


@dataclasses.dataclass(frozen=True)
class Example:
  """One example: `uid` is unique within its task; a demonstration shows `completion`.

  choice: `choices` and the right one's index `label`; cloze: `choices` = (the target,);
  free form: the accepted `answers`, the first of which a demonstration shows.
  """
  uid: str
  context: str
  choices: tuple = ()
  label: int = 0
  answers: tuple = ()

  @property
  def completion(self):
    return self.answers[0] if self.answers else self.choices[self.label]


@dataclasses.dataclass(frozen=True)
class Task:
  """A few-shot task: where demonstrations come from, what is tested, and the prompt format."""
  name: str
  kind: str
  demonstrations: tuple
  tests: tuple
  demo_split: str
  test_split: str
  target_delimiter: str = " "  # between a context and its completion
  fewshot_delimiter: str = "\n\n"  # between demonstrations
  description: str = ""
  answer_context: str = "Answer:"  # the `unconditional` rule's context
  primary_rule: str = "per_token"  # choice tasks: the rule a table shows
  max_new_tokens: int = 16  # free form
  stop_strings: tuple = ("\n",)  # free form

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"task {self.name}: kind={self.kind!r}; choose one of {', '.join(KINDS)}")
    if not self.tests:
      raise ValueError(f"task {self.name}: its {self.test_split} split has no examples")
    if self.primary_rule not in RULES:
      raise ValueError(f"task {self.name}: primary_rule={self.primary_rule!r}; choose one of "
                       f"{', '.join(RULES)}")

  @property
  def primary(self):
    """The metric key a table shows for this task."""
    return {"choice": f"acc_{self.primary_rule}", "free_form": "f1", "cloze": "acc"}[self.kind]


@dataclasses.dataclass(frozen=True)
class Prompt:
  """The tokens every completion of one example follows, and what went into them."""
  tokens: tuple
  demonstrations: tuple  # uids of the demonstrations shown, in order
  dropped: int  # demonstrations dropped from the front to fit the context
  truncated: int  # tokens cut from the left when the example alone does not fit


def _same_text(text):
  return " ".join(text.split()).lower()


def demonstrations(task, example, k, seed, on_too_few="error"):
  """The `k` demonstrations of `example`: a permutation of the pool drawn from (seed, uid),
  without the example itself or any demonstration whose context is the same text."""
  if on_too_few not in ON_TOO_FEW:
    raise ValueError(f"on_too_few={on_too_few!r}; choose one of {', '.join(ON_TOO_FEW)}")
  if k < 0:
    raise ValueError(f"K={k}: the number of demonstrations must be >= 0")
  if k == 0:
    return []
  pool = task.demonstrations
  rng = np.random.default_rng([seed, zlib.crc32(example.uid.encode("utf-8"))])
  own = _same_text(example.context)
  chosen = []
  for i in rng.permutation(len(pool)):
    candidate = pool[i]
    if candidate.uid != example.uid and _same_text(candidate.context) != own:
      chosen.append(candidate)
      if len(chosen) == k:
        return chosen
  if on_too_few == "error":
    raise ValueError(f"task {task.name}: K={k} demonstrations asked for, but its {task.demo_split} "
                     f"split has only {len(chosen)} besides example {example.uid}; lower K or "
                     "set on_too_few='clip' to use as many as there are")
  return chosen


def prompt_text(task, shown, example, description=None):
  """The prompt as text: description, demonstrations and the example's context."""
  description = task.description if description is None else description
  parts = [description] if description else []
  parts += [d.context + task.target_delimiter + d.completion for d in shown]
  return task.fewshot_delimiter.join(parts + [example.context])


def build_prompt(task, example, shown, tokenizer, max_len, reserve, *, description=None,
                 eot_prefix=True):
  """The prompt's tokens, with room for `reserve` completion tokens within `max_len`: the
  first demonstrations are dropped until it fits, then the context is cut from the left."""
  if reserve >= max_len:
    raise ValueError(f"task {task.name}: a completion of {reserve} tokens leaves no room for a "
                     f"prompt in a context of {max_len}; raise max_len or shorten the completion")
  prefix = [tokenizer.eot_id] if eot_prefix else []
  room = max_len - reserve
  encode = lambda dropped: prefix + tokenizer.encode(
      prompt_text(task, shown[dropped:], example, description))
  tokens, dropped = encode(0), 0
  if len(tokens) > room:
    # The fewest dropped that fit, by bisection (fewer drops, longer prompts): a few encodings
    # rather than one per demonstration.
    low, high = 0, len(shown)  # low does not fit; high fits or is all of them
    while high - low > 1:
      middle = (low + high) // 2
      low, high = (low, middle) if len(encode(middle)) <= room else (middle, high)
    tokens, dropped = encode(high), high
  truncated = max(0, len(tokens) - room)
  return Prompt(tuple(tokens[truncated:]), tuple(d.uid for d in shown[dropped:]), dropped,
                truncated)


@dataclasses.dataclass
class Model:
  """What the harness evaluates: a GPT config, its parameters and the tokenizer its vocabulary
  comes from. `max_len`: the most tokens a prompt and its completion may take (default: the
  model's context); `batch_size`: examples a compiled call scores together."""
  cfg: gpt.GPTConfig
  params: object
  tokenizer: object
  max_len: int = 0
  batch_size: int = 8

  def __post_init__(self):
    self.max_len = self.max_len or self.cfg.context
    if self.max_len > self.cfg.context:
      raise ValueError(f"max_len={self.max_len} exceeds the model's context {self.cfg.context}")
    if self.tokenizer.vocab_size > self.cfg.vocab_size:
      raise ValueError(f"the tokenizer has {self.tokenizer.vocab_size} ids but the model only "
                       f"{self.cfg.vocab_size}; they do not belong together")
    self.params = jax.device_put(nn.unbox(self.params))

  @functools.cached_property
  def scorer(self):
    """The whole-prompt scorer (`lineage.eval.scoring.Scorer`): no prefix reuse."""
    return scoring.Scorer(self.cfg, self.params, batch_size=self.batch_size,
                          max_len=self.max_len, valid_vocab=self.tokenizer.vocab_size)

  @functools.cached_property
  def generator(self):
    return generate.Generator(*gpt.decoding(self.cfg), context=self.max_len)


def _bucket(n, smallest):
  return max(smallest, 1 << max(0, n - 1).bit_length())


@functools.partial(jax.jit, static_argnames=("cfg", "valid_vocab"))
def _choices_from_prefix(params, prefix, positions, segment_ids, completions, *, cfg,
                         valid_vocab):
  """(summed log-prob, all tokens greedy) [batch, choices] of each completion [batch, choices,
  length] (-1 = padding) after its row's left-padded prefix [batch, prefix_len]."""
  batch, choices, length = completions.shape
  model = gpt.GPT(cfg)
  cache = gpt.init_cache(cfg, batch, prefix.shape[1] + length)
  hidden, cache = model.apply({"params": params}, prefix, positions=positions,
                              segment_ids=segment_ids, cache=cache, method="hidden_states")
  # Each choice continues from its own copy of the prefix's cache.
  tiled = {**cache, "layers": jax.tree.map(lambda x: jnp.repeat(x, choices, axis=0),
                                           cache["layers"]),
           "valid": jnp.repeat(cache["valid"], choices, axis=0)}
  flat = completions.reshape(batch * choices, length)
  starts = jnp.repeat(segment_ids.sum(1), choices)
  # Padding after a completion is fed too (no real token attends to it); its positions are
  # held within the position table.
  comp_positions = jnp.minimum(starts[:, None] + jnp.arange(length), cfg.context - 1)
  comp_hidden, _ = model.apply({"params": params}, jnp.maximum(flat, 0), positions=comp_positions,
                               segment_ids=jnp.ones_like(flat), cache=tiled,
                               method="hidden_states")
  # Token j is predicted by the prefix's last position (j = 0) or by completion token j - 1.
  first = jnp.repeat(hidden[:, -1:], choices, axis=0)
  predicting = jnp.concatenate([first, comp_hidden[:, :-1]], axis=1).astype(jnp.float32)
  logits = jnp.dot(predicting, params["wte"]["embedding"].astype(jnp.float32).T,
                   precision=jax.lax.Precision.HIGHEST)
  if valid_vocab < logits.shape[-1]:
    logits = jnp.where(jnp.arange(logits.shape[-1]) < valid_vocab, logits, -jnp.inf)
  real = flat >= 0
  targets = jnp.maximum(flat, 0)
  logprobs = -optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  sums = jnp.where(real, logprobs, 0.0).sum(-1)
  greedy = jnp.all((logits.argmax(-1) == targets) | ~real, axis=-1)
  return sums.reshape(batch, choices), greedy.reshape(batch, choices)


def score_completions(model, prefixes, completions, reuse_prefix=True):
  """(log-probs, greedy flags): for each prefix (token ids), one array over its completions
  (lists of token ids) of their summed log-probability and whether greedy decoding spells
  them. With `reuse_prefix`, each prefix runs once into a KV cache that all its completions
  continue from; else every prefix + completion is scored whole by `model.scorer`."""
  for i, options in enumerate(completions):
    if not options or any(len(c) == 0 for c in options):
      raise ValueError(f"prompt {i} has an empty completion or none; every choice needs tokens")
  if not reuse_prefix:
    requests = [lm_metrics.Request(np.asarray(p + tuple(c), np.int32), len(c))
                for p, options in zip(prefixes, completions) for c in options]
    scores = model.scorer.score(requests)
    splits = np.cumsum([len(o) for o in completions])[:-1]
    return np.split(scores.logprob, splits), np.split(scores.greedy, splits)
  logprob, greedy = [None] * len(prefixes), [None] * len(prefixes)
  order = sorted(range(len(prefixes)), key=lambda i: -len(prefixes[i]))
  pending = []
  for first in range(0, len(order), model.batch_size):
    rows = order[first:first + model.batch_size]
    prefix_len = _bucket(max(len(prefixes[i]) for i in rows), 16)
    choices = max(len(completions[i]) for i in rows)
    length = _bucket(max(len(c) for i in rows for c in completions[i]), 4)
    comp = np.full((model.batch_size, choices, length), -1, np.int32)
    for row, i in enumerate(rows):
      for j, c in enumerate(completions[i]):
        comp[row, j, :len(c)] = c
    padded = [prefixes[i] for i in rows] + [prefixes[rows[0]]] * (model.batch_size - len(rows))
    ids = np.concatenate([np.asarray(p) for p in padded] + [comp.ravel()])
    if ids.max() >= model.tokenizer.vocab_size or ids.min() < -1:
      raise ValueError("token ids outside the tokenizer's vocabulary; the tokenizer does not "
                       "match the model")
    tokens, segment_ids, positions = generate.left_pad(padded, prefix_len)
    pending.append((rows, _choices_from_prefix(
        model.params, tokens, positions, segment_ids, comp, cfg=model.cfg,
        valid_vocab=model.tokenizer.vocab_size)))
  for rows, (sums, flags) in pending:
    sums, flags = np.asarray(sums), np.asarray(flags)
    for row, i in enumerate(rows):
      logprob[i] = sums[row, :len(completions[i])]
      greedy[i] = flags[row, :len(completions[i])]
  return logprob, greedy


def choose(rule, logprob, unconditional, choices, num_tokens):
  """The index a rule picks among one example's choices (see the module docstring)."""
  logprob = np.asarray(logprob, np.float64)
  if rule == "sum":
    return int(np.argmax(logprob))
  if rule == "per_token":
    return int(np.argmax(logprob / np.asarray(num_tokens)))
  if rule == "per_char":
    return int(np.argmax(logprob / np.array([len(c) for c in choices])))
  if rule == "per_byte":
    return int(np.argmax(logprob / np.array([len(c.encode("utf-8")) for c in choices])))
  if rule == "unconditional":
    return int(np.argmax(logprob - np.asarray(unconditional)))
  raise ValueError(f"rule={rule!r}; choose one of {', '.join(RULES)}")


def normalize_answer(text):
  """SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces."""
  text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
  return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def exact_match(prediction, answers):
  return float(any(normalize_answer(prediction) == normalize_answer(a) for a in answers))


def f1(prediction, answers):
  """SQuAD's token F1, the best over the accepted answers."""
  def one(answer):
    pred, gold = normalize_answer(prediction).split(), normalize_answer(answer).split()
    if not pred or not gold:
      return float(pred == gold)
    common = sum((collections.Counter(pred) & collections.Counter(gold)).values())
    if common == 0:
      return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)
  return max(one(a) for a in answers)


def greedy_answers(model, prompts, max_new_tokens, stop_strings=("\n",)):
  """The greedy continuation of each prompt (token ids) as text, cut at the first stop string
  and stripped: the free-form answer. Batches are full and their lengths powers of two, so
  the Generator compiles once per length bucket."""
  tok = model.tokenizer
  answers = []
  for first in range(0, len(prompts), model.batch_size):
    batch = [list(p) for p in prompts[first:first + model.batch_size]]
    padded = batch + [batch[0]] * (model.batch_size - len(batch))
    out = model.generator.generate(model.params, padded, max_new_tokens,
                                   sampling=sampling.Sampling(temperature=0.0),
                                   stop_strings=stop_strings, detokenize=tok.decode,
                                   bucket=_bucket(max(len(p) for p in batch), 16))
    answers += [decode_text.cut_at_stop(tok.decode(ids), stop_strings).strip()
                for ids in out[:len(batch)]]
  return answers


def _completion_ids(task, tokenizer, example):
  return [tuple(tokenizer.encode(task.target_delimiter + c)) for c in example.choices]


def _unconditional(model, task, examples, reuse_prefix, eot_prefix):
  """log P(completion | answer context) of every distinct completion among `examples`."""
  prefix = tuple(([model.tokenizer.eot_id] if eot_prefix else [])
                 + model.tokenizer.encode(task.answer_context))
  texts = sorted({c for e in examples for c in e.choices})
  ids = [[tuple(model.tokenizer.encode(task.target_delimiter + t))] for t in texts]
  logprob, _ = score_completions(model, [prefix] * len(texts), ids, reuse_prefix)
  return {t: float(lp[0]) for t, lp in zip(texts, logprob)}


def _score_shot(model, task, examples, prompts, rules, reuse_prefix, unconditional):
  """The metrics of one K: accuracies per rule (choice), accuracy (cloze), EM and F1."""
  if task.kind == "free_form":
    predictions = greedy_answers(model, [p.tokens for p in prompts], task.max_new_tokens,
                                 task.stop_strings)
    return {"exact_match": float(np.mean([exact_match(p, e.answers)
                                          for p, e in zip(predictions, examples)])),
            "f1": float(np.mean([f1(p, e.answers) for p, e in zip(predictions, examples)]))}
  completions = [_completion_ids(task, model.tokenizer, e) for e in examples]
  logprob, greedy = score_completions(model, [p.tokens for p in prompts], completions,
                                      reuse_prefix)
  if task.kind == "cloze":
    return {"acc": float(np.mean([g[0] for g in greedy]))}
  metrics = {}
  for rule in rules:
    picks = [choose(rule, lp, [unconditional.get(c) for c in e.choices] if unconditional else
                    None, e.choices, [len(c) for c in comp])
             for lp, e, comp in zip(logprob, examples, completions)]
    metrics[f"acc_{rule}"] = float(np.mean([p == e.label for p, e in zip(picks, examples)]))
  return metrics


def evaluate(model, task, shots=(0, 1, 8), *, seed=0, rules=None, max_examples=None,
             on_too_few="error", reuse_prefix=True, description=None, eot_prefix=True):
  """K-shot results of `model` on `task` for each K in `shots`, as plain dicts.

  rules: the multiple-choice rules to score (default all of `RULES`); max_examples: the first
  so many test examples; on_too_few: "error" when a K exceeds the demonstrations available,
  "clip" to use all there are (with a warning); description: replaces the task's own ("" for
  none); eot_prefix: prompts start after `<|endoftext|>`, as a document does in pre-training.
  Per K: the metrics, the demonstrations dropped to fit the context, and examples/s (the
  first K also pays for compilation).
  """
  rules = tuple(RULES if rules is None else rules)
  for rule in rules:
    if rule not in RULES:
      raise ValueError(f"rule={rule!r}; choose among {', '.join(RULES)}")
  if not shots:
    raise ValueError("shots is empty; give the K values to evaluate, e.g. (0, 1, 8)")
  if max_examples is not None and max_examples < 1:
    raise ValueError(f"max_examples={max_examples}: evaluate at least 1, or None for all")
  examples = list(task.tests[:max_examples])
  tok = model.tokenizer
  unconditional = None
  if task.kind == "choice" and "unconditional" in rules:
    unconditional = _unconditional(model, task, examples, reuse_prefix, eot_prefix)
  by_k = {}
  for k in shots:
    start = time.perf_counter()
    shown = [demonstrations(task, e, k, seed, on_too_few) for e in examples]
    used = min(len(s) for s in shown)
    if used < k:
      logging.warning("%s: K=%d asked for, only %d demonstrations available for some examples; "
                      "using as many as there are (on_too_few='clip')", task.name, k, used)
    if task.kind == "free_form":
      reserve = [task.max_new_tokens] * len(examples)
    else:
      reserve = [max(len(c) for c in _completion_ids(task, tok, e)) for e in examples]
    prompts = [build_prompt(task, e, s, tok, model.max_len, r, description=description,
                            eot_prefix=eot_prefix)
               for e, s, r in zip(examples, shown, reserve)]
    metrics = _score_shot(model, task, examples, prompts, rules, reuse_prefix, unconditional)
    seconds = time.perf_counter() - start
    dropped = sum(p.dropped for p in prompts)
    with_dropped = sum(p.dropped > 0 for p in prompts)
    if dropped:
      logging.info("%s K=%d: %d demonstrations dropped from the front in %d of %d examples to "
                   "fit %d tokens", task.name, k, dropped, with_dropped, len(prompts),
                   model.max_len)
    by_k[k] = {"k": k, "shots_used": used, **metrics, "dropped_demonstrations": dropped,
               "examples_with_dropped": with_dropped,
               "truncated_examples": sum(p.truncated > 0 for p in prompts),
               "mean_prompt_tokens": float(np.mean([len(p.tokens) for p in prompts])),
               "examples_per_sec": len(examples) / seconds, "seconds": seconds}
  return {"task": task.name, "kind": task.kind, "demo_split": task.demo_split,
          "test_split": task.test_split, "num_examples": len(examples), "seed": seed,
          "rules": list(rules) if task.kind == "choice" else [], "primary": task.primary,
          "reuse_prefix": reuse_prefix, "by_k": by_k}
