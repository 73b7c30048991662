"""The DALL-E transformer: caption padding and its bad inputs, the 1/8-7/8 loss weighting,
causality across the text/image boundary, separate position embeddings, and sampling through
lineage.decode (KV cache) against the no-cache baseline."""

import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lineage.decode import Generator, Sampling
from lineage.models import dalle

CFG = dalle.DALLEConfig(text_vocab=10, text_len=5, image_vocab=12, image_grid=3, num_layers=2,
                        num_heads=2, embed_dim=32, mlp_dim=64)


# Jitted: one compiled call each instead of hundreds of eager ops (the fast tier's CPU time).
_apply = jax.jit(lambda p, text, image: dalle.DALLE(CFG).apply({"params": p}, text, image))
_loss_terms = jax.jit(lambda p, text, image: dalle.loss_terms(CFG, p, text, image))


@pytest.fixture(scope="module")
def params():
  return nn.unbox(jax.jit(lambda rng: dalle.init_params(CFG, rng))(jax.random.PRNGKey(0)))


def _batch(seed=0, n=3):
  rng = np.random.default_rng(seed)
  text = dalle.text_tokens(CFG, [rng.integers(0, 10, rng.integers(1, 6)).tolist()
                                 for _ in range(n)])
  return text, jnp.asarray(rng.integers(0, 12, (n, CFG.image_len)), jnp.int32)


def test_text_tokens_pad_each_position_with_its_own_token():
  rows = dalle.text_tokens(CFG, [[3, 4], [1, 2, 3, 4, 5]])
  np.testing.assert_array_equal(rows, [[3, 4, 12, 13, 14], [1, 2, 3, 4, 5]])


def test_text_tokens_bad_input():
  with pytest.raises(ValueError, match="caption 1 is empty"):
    dalle.text_tokens(CFG, [[1], []])
  with pytest.raises(ValueError, match=r"outside \[0, 10\)"):
    dalle.text_tokens(CFG, [[1, 10]])
  with pytest.warns(UserWarning, match="7 tokens, more than the text context of 5; it is "
                    "truncated"):
    rows = dalle.text_tokens(CFG, [[1, 2, 3, 4, 5, 6, 7]])
  np.testing.assert_array_equal(rows, [[1, 2, 3, 4, 5]])
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    dalle.text_tokens(CFG, [[1, 2, 3, 4, 5]])  # exactly the context: no warning


def test_parts_have_their_own_embeddings(params):
  assert params["text_wte"]["embedding"].shape == (10 + 5, 32)  # tokens, then a pad per slot
  assert params["text_wpe"]["embedding"].shape == (5, 32)
  assert params["image_wte"]["embedding"].shape == (12, 32)
  assert params["image_row"]["embedding"].shape == params["image_col"]["embedding"].shape == (
      3, 32)
  assert params["text_head"]["kernel"].shape == (32, 15)
  assert params["image_head"]["kernel"].shape == (32, 12)
  assert set(params["h_0"]) == {"ln_1", "attn", "ln_2", "mlp"}  # GPT's blocks


def test_loss_weights_text_by_an_eighth_and_image_by_seven_eighths(params):
  text, image = _batch()
  total, text_ce, image_ce = _loss_terms(params, text, image)
  text_logits, image_logits = _apply(params, text, image)
  assert text_logits.shape == (3, 4, 15) and image_logits.shape == (3, 9, 12)
  def log_softmax(x):
    x = np.asarray(x, np.float64)
    return x - x.max() - np.log(np.exp(x - x.max()).sum())
  text, image = np.asarray(text), np.asarray(image)
  brute_text = -np.mean([[log_softmax(text_logits[b, i])[text[b, i + 1]]
                          for i in range(4)] for b in range(3)], axis=1)
  brute_image = -np.mean([[log_softmax(image_logits[b, i])[image[b, i]]
                           for i in range(9)] for b in range(3)], axis=1)
  np.testing.assert_allclose(text_ce, brute_text, rtol=1e-5)
  np.testing.assert_allclose(image_ce, brute_image, rtol=1e-5)
  np.testing.assert_allclose(total, brute_text / 8 + 7 * brute_image / 8, rtol=1e-5)


def test_image_logits_see_only_the_caption_and_earlier_cells(params):
  text, image = _batch()
  _, base = _apply(params, text, image)
  changed = image.at[:, 4].set((image[:, 4] + 1) % 12)
  _, after = _apply(params, text, changed)
  np.testing.assert_allclose(after[:, :5], base[:, :5], atol=1e-6)  # predicting cells 0..4
  assert not np.allclose(after[:, 5:], base[:, 5:])
  other_text = text.at[:, 0].set((text[:, 0] + 1) % 10)
  _, after = _apply(params, other_text, image)
  assert not np.allclose(after[:, 0], base[:, 0])  # the first cell is drawn from the caption


@pytest.mark.slow
def test_cached_sampling_matches_the_no_cache_baseline(params):
  text, _ = _batch(1, n=4)
  generator = Generator(*dalle.decoding(CFG), CFG.context)
  for sampling, rng in ((Sampling(temperature=0), None), (Sampling(temperature=1.0, top_k=5),
                                                          jax.random.PRNGKey(7))):
    cached = generator.generate(params, np.asarray(text).tolist(), CFG.image_len,
                                sampling=sampling, rng=rng)
    baseline = dalle.sample_without_cache(CFG, params, text,
                                          jax.random.PRNGKey(0) if rng is None else rng,
                                          sampling.values(), sampling.flags)
    np.testing.assert_array_equal(np.asarray(cached), baseline)
    assert np.asarray(cached).min() >= 0 and np.asarray(cached).max() < 12
