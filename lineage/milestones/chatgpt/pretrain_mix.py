"""GPT-3.5's first stage in small: pre-training on text plus a share of code, and two probes
of what code is said to bring (reasoning over several steps, and reading long inputs).

The corpus is one token stream of a fixed length, `code_share` of it from code (the Codex
milestone's solved problems) and the rest from text (the embedded synthetic documents),
whole documents interleaved at random; runs with different shares see the same number of
tokens (the loop's steps x batch x sequence length), so only the mixture differs.

The probes are scored zero-shot by which digit the model finds most likely next:
  multi_step  "a=3;b=a+4;c=b+1;c=" -> 8: values carried through a chain of assignments
              (sums mod 10), the answer needs every step;
  retrieval   "k41=7;k12=3;...;k41=" -> 7: a key's value read back from the far start of a
              long list of key=value pairs (the answer's pair is always the first).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from lineage.data import lm_batches, synthetic
from lineage.decode import generate
from lineage.milestones.codex import problems as code_problems
from lineage.models import gpt

DIGITS = "0123456789"


def mixed_stream(tokenizer, total_tokens, code_share, seed):
  """(tokens [total_tokens] int32, the code share measured in tokens)."""
  if not 0 <= code_share < 1:
    raise ValueError(f"pretrain.code_share={code_share}: it must lie in [0, 1)")
  rng = np.random.default_rng(seed)
  want = {"code": int(total_tokens * code_share)}
  want["text"] = total_tokens - want["code"]
  # Enough documents of each kind, generated in rounds until their tokens cover the want.
  docs = {"text": [], "code": []}
  have = {"text": 0, "code": 0}
  make = {"text": lambda n, s: synthetic.synthetic_documents(n, s),
          "code": lambda n, s: code_problems.training_texts(n, s)}
  for kind in docs:
    round_ = 0
    while have[kind] < want[kind]:
      for doc in make[kind](200, seed * 1000 + round_):
        if have[kind] >= want[kind]:
          break
        ids = tokenizer.encode(doc) + [tokenizer.eot_id]
        docs[kind].append(ids)
        have[kind] += len(ids)
      round_ += 1
  pieces = docs["text"] + docs["code"]
  order = rng.permutation(len(pieces))
  stream = np.concatenate([np.asarray(pieces[i], np.int32) for i in order])[:total_tokens]
  code_tokens = min(have["code"], len(stream))
  return stream, code_tokens / max(len(stream), 1)


def batches(tokenizer, data_cfg, pre_cfg, batch_size, seed, eval_batches):
  """(train windows, a fresh-eval-pass function, measured code share)."""
  stream, share = mixed_stream(tokenizer, pre_cfg.corpus_tokens, pre_cfg.code_share,
                               pre_cfg.seed)
  train, held_out = lm_batches.split_tokens(stream, data_cfg.eval_fraction)
  windows = lm_batches.RandomWindows(train, data_cfg.seq_len, batch_size, seed)
  evaluation = lambda: lm_batches.sequential_windows(held_out, data_cfg.seq_len, batch_size,
                                                        eval_batches)
  return windows, evaluation, share


def multi_step_examples(n, steps, seed):
  """(prompt, answer digit) of chains of `steps` assignments."""
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    names = rng.permutation(list("abcdefghjkmnpqrstuvwxyz"))[:steps]
    value = int(rng.integers(10))
    parts = [f"{names[0]}={value}"]
    for prev, name in zip(names, names[1:]):
      add = int(rng.integers(1, 10))
      value = (value + add) % 10
      parts.append(f"{name}={prev}+{add}")
    out.append((";".join(parts) + f";{names[-1]}=", str(value)))
  return out


def retrieval_examples(n, pairs, seed):
  """(prompt, answer digit): `pairs` key=value pairs, the first one's key asked at the end."""
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    keys = rng.choice(90, pairs, replace=False) + 10
    values = rng.integers(10, size=pairs)
    body = ";".join(f"k{k}={v}" for k, v in zip(keys, values))
    out.append((f"{body};k{keys[0]}=", str(values[0])))
  return out


@functools.partial(jax.jit, static_argnums=0)
def _last_logits(cfg, params, tokens, positions, segment_ids):
  logits = gpt.GPT(cfg).apply({"params": params}, tokens, positions=positions,
                              segment_ids=segment_ids, deterministic=True)
  return logits[:, -1]


def digit_accuracy(model_cfg, tokenizer, params, examples, batch_size=32):
  """Fraction of examples whose answer is the most likely of the ten digits next."""
  digit_ids = [tokenizer.encode(d)[0] for d in DIGITS]
  prompts = [tokenizer.encode(p) for p, _ in examples]
  width = max(len(p) for p in prompts)
  if width > model_cfg.context:
    raise ValueError(f"a probe prompt has {width} tokens, more than the context "
                     f"{model_cfg.context}; lower probes.retrieval_pairs or probes.steps")
  right = 0
  for start in range(0, len(prompts), batch_size):
    chunk = prompts[start:start + batch_size]
    chunk = chunk + [chunk[0]] * (batch_size - len(chunk))
    tokens, real, positions = generate.left_pad(chunk, width)
    logits = np.asarray(_last_logits(model_cfg, params, jnp.asarray(tokens),
                                     jnp.asarray(positions), jnp.asarray(real)))
    picked = logits[:, digit_ids].argmax(-1)
    for (_, answer), choice in zip(examples[start:start + batch_size], picked):
      right += DIGITS[choice] == answer
  return right / len(examples)


def probes(model_cfg, tokenizer, params, probe_cfg):
  """{multi_step, retrieval}: zero-shot digit accuracy on each probe (chance 0.1)."""
  return {
      "multi_step": digit_accuracy(model_cfg, tokenizer, params, multi_step_examples(
          probe_cfg.num, probe_cfg.steps, probe_cfg.seed)),
      "retrieval": digit_accuracy(model_cfg, tokenizer, params, retrieval_examples(
          probe_cfg.num, probe_cfg.retrieval_pairs, probe_cfg.seed))}
