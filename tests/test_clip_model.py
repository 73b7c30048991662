"""CLIP's model: the contrastive loss against a brute-force loop, the clipped temperature, the
end-token readout, bad input, and the batch pipeline."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lineage.data import image_batches, tokenizers
from lineage.models import clip

CFG = clip.CLIPConfig(image_size=16, channels=3, patch_size=4, vision_layers=1, vision_width=32,
                      vision_heads=2, vocab_size=257, context=12, text_layers=1, text_width=32,
                      text_heads=2, embed_dim=16)


@pytest.fixture(scope="module")
def params():
  init = jax.jit(lambda rng: clip.CLIP(CFG).init(rng, jnp.zeros((2, 16, 16, 3), jnp.uint8),
                                                  jnp.zeros((2, 12), jnp.int32),
                                                  jnp.zeros((2,), jnp.int32))["params"])
  return nn.unbox(init(jax.random.PRNGKey(0)))


def _brute_force_loss(images, texts, scale):
  """The paper's pseudo-code, one cross-entropy at a time, in float64."""
  images, texts = np.asarray(images, np.float64), np.asarray(texts, np.float64)
  n = len(images)
  logits = [[scale * sum(images[i][d] * texts[j][d] for d in range(images.shape[1]))
             for j in range(n)] for i in range(n)]
  total = 0.0
  for i in range(n):
    row = [logits[i][j] for j in range(n)]
    column = [logits[j][i] for j in range(n)]
    total += -row[i] + math.log(sum(math.exp(v) for v in row))
    total += -column[i] + math.log(sum(math.exp(v) for v in column))
  return total / (2 * n)


def test_contrastive_loss_equals_brute_force():
  rng = np.random.default_rng(0)
  images, texts = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
  images /= np.linalg.norm(images, axis=1, keepdims=True)
  texts /= np.linalg.norm(texts, axis=1, keepdims=True)
  for scale in (1.0, 14.3, 100.0):
    got = clip.contrastive_loss(jnp.asarray(images, jnp.float32), jnp.asarray(texts, jnp.float32),
                                scale)
    np.testing.assert_allclose(got, _brute_force_loss(images, texts, scale), rtol=2e-5)
  # Matching pairs lower the loss: each image's own caption is the positive.
  assert clip.contrastive_loss(images, images, 10.0) < clip.contrastive_loss(images, texts, 10.0)


def test_temperature_initialised_and_clipped(params):
  model = clip.CLIP(CFG)
  assert params["logit_scale"].shape == ()
  np.testing.assert_allclose(params["logit_scale"], math.log(1 / 0.07), rtol=1e-6)
  np.testing.assert_allclose(model.apply({"params": params}, method=clip.CLIP.scale), 1 / 0.07,
                             rtol=1e-5)
  for log_scale, expected in ((math.log(1000.0), 100.0), (math.log(100.0), 100.0),
                              (math.log(50.0), 50.0)):
    moved = {**params, "logit_scale": jnp.float32(log_scale)}
    np.testing.assert_allclose(model.apply({"params": moved}, method=clip.CLIP.scale), expected,
                               rtol=1e-5)


def test_embeddings_are_normalised_and_read_at_the_end_token(params):
  model = clip.CLIP(CFG)
  images = np.random.default_rng(1).integers(0, 256, (3, 16, 16, 3)).astype(np.uint8)
  tokens = np.random.default_rng(2).integers(0, 256, (3, 12)).astype(np.int32)
  ends = np.array([3, 7, 11], np.int32)
  image_emb, text_emb, _ = jax.jit(model.apply)({"params": params}, images, tokens, ends)
  np.testing.assert_allclose(np.linalg.norm(image_emb, axis=1), 1, rtol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(text_emb, axis=1), 1, rtol=1e-5)
  encode = jax.jit(lambda t: model.apply({"params": params}, t, ends,
                                         method=clip.CLIP.encode_text))
  after = tokens.copy()
  after[0, 4:] = 5  # tokens after the end token: causal attention never lets them in
  np.testing.assert_allclose(encode(after)[0], text_emb[0], atol=1e-6)
  before = tokens.copy()
  before[0, 1] = (tokens[0, 1] + 1) % 256
  assert np.abs(encode(before)[0] - text_emb[0]).max() > 1e-4
  # The text encoder is the GPT trunk, under GPT-2's parameter names.
  assert {"wte", "wpe", "h_0", "ln_f"} <= set(params["text"])


def test_wrong_image_shape_is_a_clear_error(params):
  model = clip.CLIP(CFG)
  for shape in ((2, 32, 32, 3), (2, 16, 16, 1), (16, 16, 3)):
    with pytest.raises(ValueError, match=r"expects \[batch, 16, 16, 3\]"):
      model.apply({"params": params}, np.zeros(shape, np.uint8), method=clip.CLIP.encode_image)
  with pytest.raises(ValueError, match="expected \\[batch, length <= 12\\]"):
    model.apply({"params": params}, np.zeros((2, 20), np.int32), np.zeros(2, np.int32),
                method=clip.CLIP.encode_text)


def test_encode_captions():
  tok = tokenizers.ByteTokenizer()
  tokens, ends = image_batches.encode_captions(tok, ["ab", b"xyz", "a" * 30], context=8)
  assert tokens.shape == (3, 8) and list(ends) == [2, 3, 7]
  assert list(tokens[0, :4]) == [97, 98, 256, 0]
  assert tokens[2, 7] == tok.eot_id  # cut to context - 1 tokens, the end token kept
  for empty in ("", "   "):
    with pytest.raises(ValueError, match="caption 1 is empty"):
      image_batches.encode_captions(tok, ["fine", empty], context=8)


def test_batches_resume_and_cover_each_epoch():
  n = 10
  images = np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 1), np.uint8)
  tokens, ends = np.arange(n)[:, None].astype(np.int32), np.zeros(n, np.int32)
  batches = image_batches.ImageTextBatches(images, tokens, ends, batch_size=3, seed=0)
  first_epoch = [next(batches) for _ in range(3)]
  seen = np.concatenate([b["tokens"][:, 0] for b in first_epoch])
  assert len(set(seen.tolist())) == 9  # 3 full batches of a permutation; one row dropped
  np.testing.assert_array_equal(first_epoch[0]["images"][:, 0, 0, 0], first_epoch[0]["tokens"][:, 0])
  state = batches.get_state()
  expected = [next(batches)["tokens"] for _ in range(4)]
  again = image_batches.ImageTextBatches(images, tokens, ends, batch_size=3, seed=0)
  again.set_state(state)
  for want in expected:
    np.testing.assert_array_equal(next(again)["tokens"], want)
  with pytest.raises(ValueError, match="batch_size=11 is larger than the 10"):
    image_batches.ImageTextBatches(images, tokens, ends, batch_size=11)
  chunks = image_batches.fixed_batches(images, tokens, ends, 4)
  assert len(chunks) == 2 and list(chunks[1]["tokens"][:, 0]) == [4, 5, 6, 7]


def test_flops_per_example(params):
  # By hand: a block holds 32x96+96 + 32x32+32 + 32x128+128 + 128x32+32 + 2x64 = 12,704
  # parameters; the ViT adds its patch embedding (48x32), class token and two LayerNorms
  # (14,400 without positions) and reads 16 patches + the class token; the text trunk adds
  # ln_f (12,768 without embeddings) over 12 tokens. Attention: 12 x width x length^2.
  dense = 6 * (14_400 * 17 + 12_768 * 12)
  attention = 12 * (32 * 17 ** 2 + 32 * 12 ** 2)
  assert clip.flops_per_example(CFG, params) == dense + attention
  with pytest.raises(ValueError, match="not a multiple of patch_size"):
    clip.CLIPConfig(image_size=30, patch_size=4)


def test_greyscale_pairs_grey_images_with_colourless_captions():
  from lineage.data import shapes
  data = shapes.generate(40, seed=0, mention=("colour",))
  tok = tokenizers.ByteTokenizer()
  tokens, ends = image_batches.encode_captions(tok, data.captions, 40)
  plain = image_batches.without_words(data.captions, shapes.COLOURS)
  assert plain[0] == data.captions[0].replace(shapes.names(data.labels, 0)["colour"] + " ", "")
  grey = image_batches.Greyscale(0.5, *image_batches.encode_captions(tok, plain, 40))
  batches = image_batches.ImageTextBatches(data.images, tokens, ends, 20, grey=grey)
  batch = next(batches)
  texts = [tok.decode(t[:e]) for t, e in zip(batch["tokens"], batch["ends"])]
  is_grey = np.ptp(batch["images"].astype(int), axis=-1).max((1, 2)) == 0
  assert 3 < is_grey.sum() < 17
  for text, g in zip(texts, is_grey):
    assert any(c in text for c in shapes.COLOURS) != g, text
  batches.set_state({"epoch": 0, "position": 0})
  np.testing.assert_array_equal(next(batches)["images"], batch["images"])  # resumes exactly
  with pytest.raises(ValueError, match="not in \\[0, 1\\]"):
    image_batches.Greyscale(1.5, tokens, ends)
