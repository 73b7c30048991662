"""lineage.decode: KV-cache generation against full recomputation, compilation counts, stop
tokens and strings, per-example lengths, streaming, and the sampling filters on hand-made logits."""

import contextlib
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lineage import decode
from lineage.data import tokenizers
from lineage.decode import generate as generate_lib
from lineage.models import gpt

CFG = gpt.GPTConfig(vocab_size=64, context=48, num_layers=2, num_heads=4, embed_dim=32,
                    mlp_dim=128, dropout=0.0, local_window=4)
PROMPTS = [[1, 2, 3], [5], [7, 8, 9, 10, 11, 12, 13], [20, 21]]
NEW = 10
GREEDY = decode.Sampling(temperature=0)
# The one sampling configuration of these tests (both filters on), so that they share one
# executable: top_k, top_p and temperature are traced values.
HOT = decode.Sampling(temperature=1.5, top_k=20, top_p=0.95)


def perturbed_params(seed):
  """Weights moved well off their init, so greedy decoding does not repeat one token."""
  boxed = gpt.GPT(CFG).init(jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32))["params"]
  leaves, tree = jax.tree.flatten(nn.unbox(boxed))
  keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
  return jax.tree.unflatten(tree, [p + 0.3 * jax.random.normal(k, p.shape)
                                   for p, k in zip(leaves, keys)])


@pytest.fixture(scope="module")
def params():
  return perturbed_params(1)


@pytest.fixture(scope="module")
def gen():
  return decode.Generator(*gpt.decoding(CFG), CFG.context)


@pytest.fixture(scope="module")
def greedy_tokens(gen, params):
  return gen.generate(params, PROMPTS, NEW, sampling=GREEDY)


@jax.jit
def greedy_by_recomputation(params, seq, lengths):
  """Greedy continuations of right-padded prompts (causal: the padding is never seen), rerunning
  the whole sequence per token: the slow reference, sharing no code with the decoder."""
  rows = jnp.arange(seq.shape[0])

  def body(i, seq):
    logits = gpt.GPT(CFG).apply({"params": params}, seq)
    return seq.at[rows, lengths + i].set(logits[rows, lengths + i - 1].argmax(-1))

  return jax.lax.fori_loop(0, seq.shape[1] - lengths.max(), body, seq)


def test_greedy_kv_cache_equals_recomputation(params, greedy_tokens):
  lengths = np.array([len(p) for p in PROMPTS])
  seq = np.zeros((len(PROMPTS), lengths.max() + NEW), np.int32)
  for row, prompt in enumerate(PROMPTS):
    seq[row, :len(prompt)] = prompt
  seq = np.asarray(greedy_by_recomputation(params, seq, lengths))
  want = [seq[row, n:n + NEW].tolist() for row, n in enumerate(lengths)]
  assert greedy_tokens == want
  assert all(len(set(w)) > 3 for w in want)  # the check is not about a constant sequence


def test_batched_prompts_decode_as_each_alone(gen, params, greedy_tokens):
  assert greedy_tokens == [gen.generate(params, [p], NEW, sampling=GREEDY)[0] for p in PROMPTS]


@contextlib.contextmanager
def compilations():
  """The tracing, lowering and compiling events JAX records inside the block."""
  events = []
  listener = lambda event, secs, **kw: event.startswith("/jax/core/compile") and events.append(
      (event, kw.get("fun_name")))
  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    yield events
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)


@pytest.mark.slow
def test_compiles_once_per_shape_whatever_the_params_or_sampling_values(gen, params):
  """PPO, pass@k over checkpoints and a chat's /temp reuse the executables."""
  prompts = [[1, 2, 3], [4]]
  gen.generate(params, prompts, NEW, sampling=HOT)
  gen.generate(params, prompts, NEW, sampling=GREEDY)
  sizes = generate_lib._prefill._cache_size(), generate_lib._steps._cache_size()
  new_params, rng = perturbed_params(2), jax.random.PRNGKey(4)
  other_gen = decode.Generator(*gpt.decoding(dataclasses.replace(CFG)), CFG.context)
  assert gpt.decoding(dataclasses.replace(CFG)) == gpt.decoding(CFG)
  with compilations() as events:
    gen.generate(new_params, prompts, NEW, sampling=HOT, rng=rng)
    other_gen.generate(params, prompts, NEW, sampling=HOT, rng=rng)
    colder = decode.Sampling(temperature=0.7, top_k=5, top_p=0.5)
    gen.generate(new_params, [[5, 6, 7, 8, 9, 10, 11, 12], [13, 14]], NEW, sampling=colder,
                 rng=rng, stop_tokens=(3, 4))  # other lengths within the bucket
    gen.generate(new_params, prompts, [NEW, 4], sampling=GREEDY, on_tokens=lambda t: None,
                 stop_strings=("never",), detokenize=_detokenize)  # a call per step
  assert events == []
  assert (generate_lib._prefill._cache_size(), generate_lib._steps._cache_size()) == sizes


def test_on_tokens_streams_the_tokens_of_generate(gen, params):
  rng = jax.random.PRNGKey(3)
  generated = gen.generate(params, PROMPTS, NEW, sampling=HOT, rng=rng)
  streamed = []
  assert gen.generate(params, PROMPTS, NEW, sampling=HOT, rng=rng,
                      on_tokens=streamed.append) == generated
  assert [row.tolist() for row in np.stack(streamed, axis=1)] == generated


def test_temperature_sampling_is_reproducible_per_rng(gen, params):
  first = gen.generate(params, PROMPTS, NEW, sampling=HOT, rng=jax.random.PRNGKey(7))
  assert gen.generate(params, PROMPTS, NEW, sampling=HOT, rng=jax.random.PRNGKey(7)) == first
  assert gen.generate(params, PROMPTS, NEW, sampling=HOT, rng=jax.random.PRNGKey(8)) != first


def _first_new_token_after_start(tokens):
  """(index, token): the first token after index 0 that has not occurred before it."""
  return next((j, t) for j, t in enumerate(tokens) if j and t not in tokens[:j])


def test_stop_tokens_end_a_sequence_and_are_excluded(gen, params, greedy_tokens):
  index, stop = _first_new_token_after_start(greedy_tokens[0])
  want = [seq[:seq.index(stop)] if stop in seq else seq for seq in greedy_tokens]
  assert want[0] == greedy_tokens[0][:index] and any(len(w) == NEW for w in want)
  assert gen.generate(params, PROMPTS, NEW, sampling=GREEDY, stop_tokens=(stop,)) == want
  streamed = []
  gen.generate(params, PROMPTS[:1], NEW, sampling=GREEDY, stop_tokens=(stop,),
               on_tokens=lambda t: streamed.append(int(t[0])))
  assert streamed == want[0] + [-1]  # the stop token is marked, not passed on; then it ends


def test_per_example_lengths(gen, params, greedy_tokens):
  limits = [3, NEW, 0, 5]
  want = [seq[:n] for seq, n in zip(greedy_tokens, limits)]
  streamed = []
  assert gen.generate(params, PROMPTS, limits, sampling=GREEDY, on_tokens=streamed.append) == want
  assert [row.tolist() for row in np.stack(streamed, axis=1)] == [
      w + [-1] * (NEW - len(w)) for w in want]
  assert gen.generate(params, PROMPTS, [0] * 4) == [[]] * 4


def _detokenize(ids):
  return "".join(f"<{i}>" for i in ids)


@pytest.mark.parametrize("check_every", [1, 3, 16])
def test_stop_strings_end_a_row_at_the_token_that_completes_them(gen, params, greedy_tokens,
                                                                  monkeypatch, check_every):
  """Host checks between chunks of `check_every` steps: however the steps are chunked, a row
  ends where its text first holds a stop string, that token included."""
  monkeypatch.setattr(generate_lib, "STOP_CHECK_EVERY", check_every)
  first, third = greedy_tokens[0], greedy_tokens[2]
  stops = (f"<{first[4]}><{first[5]}", f"<{third[1]}>")  # the first ends inside token 5's text
  want = []
  for seq in greedy_tokens:
    ends = [n for n in range(1, NEW + 1) if decode.cut_at_stop(_detokenize(seq[:n]), stops)
            != _detokenize(seq[:n])]
    want.append(seq[:ends[0]] if ends else seq)
  assert len(want[0]) <= 6 and len(want[2]) <= 2 and any(len(w) == NEW for w in want)
  got = gen.generate(params, PROMPTS, NEW, sampling=GREEDY, stop_strings=stops,
                     detokenize=_detokenize)
  assert got == want
  assert decode.cut_at_stop(_detokenize(got[0]), stops) == _detokenize(first[:4])


def test_cut_at_stop_cuts_at_the_earliest_stop_string():
  stops = ("\ndef", "\nclass")
  assert decode.cut_at_stop("  return 1\nclass A:\ndef f():", stops) == "  return 1"
  assert decode.cut_at_stop("  return 1\n", stops) == "  return 1\n"
  assert decode.cut_at_stop("", stops) == ""


def test_incremental_text_holds_back_a_character_split_across_tokens():
  tokenizer = tokenizers.ByteTokenizer()
  text = "h€é!"
  ids = tokenizer.encode(text)
  assert len(ids) == 7  # "€" is three bytes, "é" two
  stream = decode.IncrementalText(tokenizer.decode_bytes)
  pieces = [stream.push([i]) for i in ids]
  assert pieces == ["h", "", "", "€", "", "é", "!"]
  assert stream.flush() == ""
  stream.push(ids[:2])  # "h" and the first byte of "€"
  assert stream.flush() == "\ufffd"


def test_top_k_1_is_greedy(gen, params, greedy_tokens):
  top1 = dataclasses.replace(HOT, temperature=2.0, top_k=1)
  assert gen.generate(params, PROMPTS, NEW, sampling=top1, rng=jax.random.PRNGKey(5)) == (
      greedy_tokens)


# Probabilities 0.1, 0.4, 0.05, 0.3, 0.15: in order, tokens 1, 3, 4, 0, 2.
PROBS = np.array([0.1, 0.4, 0.05, 0.3, 0.15])


@pytest.mark.parametrize("top_k,top_p,kept", [
    (2, None, {1, 3}),
    (3, None, {1, 3, 4}),
    (9, None, {0, 1, 2, 3, 4}),  # more than the vocabulary: all of it
    (None, 0.3, {1}),
    (None, 0.5, {1, 3}),
    (None, 0.72, {1, 3, 4}),
    (None, 0.9, {0, 1, 3, 4}),
    (3, 0.5, {1, 3}),  # top-p applies to the renormalised top-k: 0.47, 0.35, 0.18
    (2, 0.9, {1, 3}),
])
def test_filters_keep_exactly_the_right_tokens(top_k, top_p, kept):
  logits = np.log(np.stack([PROBS, PROBS[::-1]]))
  filtered = np.asarray(decode.filter_logits(jnp.asarray(logits), top_k=top_k, top_p=top_p))
  for row, kept_row in ((0, kept), (1, {4 - t for t in kept})):
    mask = np.isin(np.arange(5), list(kept_row))
    np.testing.assert_array_equal(filtered[row, mask], logits[row, mask].astype(np.float32))
    assert np.all(filtered[row, ~mask] == -np.inf)


def _draws(sampling, n, logits=jnp.log(jnp.asarray(PROBS, jnp.float32))[None]):
  keys = jax.random.split(jax.random.PRNGKey(0), n)
  draw = lambda k: decode.next_token(logits, k, sampling.flags, sampling.values())
  return np.asarray(jax.vmap(draw)(keys))[:, 0]


def test_sampling_draws_only_kept_tokens_in_proportion():
  draws = _draws(decode.Sampling(top_k=2), 4000)
  assert set(draws.tolist()) == {1, 3}
  assert abs((draws == 1).mean() - 0.4 / 0.7) < 0.03
  assert set(_draws(decode.Sampling(temperature=1e-3), 100).tolist()) == {1}


def test_temperature_0_is_greedy_whatever_the_filters():
  sampling = decode.Sampling(temperature=0, top_k=3, top_p=0.5)
  assert sampling.flags.greedy and not decode.Sampling(temperature=1e-3).flags.greedy
  assert set(_draws(sampling, 100).tolist()) == {1}


@pytest.mark.parametrize("kwargs,message", [
    (dict(temperature=-0.5), r"temperature=-0.5: it must be >= 0"),
    (dict(temperature=float("nan")), r"it must be >= 0"),
    (dict(top_p=0.0), r"top_p=0.0: it must lie in \(0, 1\]"),
    (dict(top_p=1.5), r"it must lie in \(0, 1\]"),
    (dict(top_k=-1), r"top_k=-1: it must be an integer >= 0"),
    (dict(top_k=2.5), r"it must be an integer >= 0"),
])
def test_bad_sampling_settings_are_clear_errors(kwargs, message):
  with pytest.raises(ValueError, match=message):
    decode.Sampling(**kwargs)


def test_left_pad_keeps_each_prompts_own_positions():
  tokens, real, positions = decode.left_pad([[1, 2], [3, 4, 5], []], 4, pad_id=9)
  np.testing.assert_array_equal(tokens, [[9, 9, 1, 2], [9, 3, 4, 5], [9, 9, 9, 9]])
  np.testing.assert_array_equal(real, [[0, 0, 1, 1], [0, 1, 1, 1], [0, 0, 0, 0]])
  np.testing.assert_array_equal(positions, [[0, 0, 0, 1], [0, 0, 1, 2], [0, 0, 0, 0]])


def test_bad_requests_are_clear_errors(gen, params):
  with pytest.raises(ValueError, match="exceeds the model's context of 48"):
    gen.generate(params, [[1] * 40, [2]], 9)
  with pytest.raises(ValueError, match="exceeds the model's context of 48"):
    gen.generate(params, [[1] * 48], 1)
  with pytest.raises(ValueError, match="prompt 1 is empty"):
    gen.generate(params, [[1], []], 4)
  with pytest.raises(ValueError, match="2 max_new_tokens for 1 prompts"):
    gen.generate(params, [[1]], [4, 4])
  with pytest.raises(ValueError, match="stop_strings need detokenize"):
    gen.generate(params, [[1]], 4, stop_strings=("\n",))
  with pytest.raises(ValueError, match="bucket=0"):
    gen.generate(params, [[1]], 4, bucket=0)
  # Exactly the context is fine, and a long prompt may go with a short limit.
  assert [len(c) for c in gen.generate(params, [[1] * 40, [2]], [8, NEW], sampling=GREEDY)] == [
      8, NEW]
