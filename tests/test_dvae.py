"""The discrete VAE: shapes and errors of encode/decode, the Gumbel-softmax relaxation, the
KL to the uniform prior, the annealing schedules, and that a few steps of training lower the
loss. The trained model's reconstruction bound and token round trip are checked in
tests/test_dalle_milestone.py, on the run the binary makes."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lineage.models import dvae

CFG = dvae.DVAEConfig(image_size=16, downsample=4, num_codes=16, hidden=16, code_dim=8)


@pytest.fixture(scope="module")
def params():
  return jax.jit(lambda rng: dvae.init_params(CFG, rng))(jax.random.PRNGKey(0))


def _images(n, seed=0):
  """Flat-coloured squares on a dark background: a stand-in for the shapes renderer."""
  rng = np.random.default_rng(seed)
  images = np.full((n, 16, 16, 3), 0.1, np.float32)
  for i in range(n):
    y, x = rng.integers(0, 10, 2)
    images[i, y:y + 6, x:x + 6] = rng.uniform(0.3, 1.0, 3)
  return images


def test_config_rejects_a_downsample_that_is_not_a_power_of_two():
  with pytest.raises(ValueError, match="power of two"):
    dvae.DVAEConfig(image_size=32, downsample=3)
  with pytest.raises(ValueError, match="divides the image size"):
    dvae.DVAEConfig(image_size=12, downsample=8)


def test_encode_gives_a_row_major_grid_of_codes(params):
  tokens = dvae.encode(CFG, params, _images(3))
  assert tokens.shape == (3, CFG.grid ** 2) and tokens.dtype == jnp.int32
  assert int(tokens.min()) >= 0 and int(tokens.max()) < CFG.num_codes
  logits = dvae.DVAE(CFG).apply({"params": params}, _images(3), method=dvae.DVAE.logits)
  assert logits.shape == (3, CFG.grid, CFG.grid, CFG.num_codes)
  np.testing.assert_array_equal(tokens.reshape(3, CFG.grid, CFG.grid), logits.argmax(-1))


def test_decode_reads_one_codebook_vector_per_cell(params):
  tokens = jnp.asarray(np.random.default_rng(0).integers(0, CFG.num_codes, (2, CFG.grid ** 2)))
  images = dvae.decode(CFG, params, tokens)
  assert images.shape == (2, 16, 16, 3)
  assert float(images.min()) >= 0 and float(images.max()) <= 1
  # Changing one cell's code changes the image; decoding is deterministic.
  other = tokens.at[0, 0].set((tokens[0, 0] + 1) % CFG.num_codes)
  assert not np.allclose(dvae.decode(CFG, params, other)[0], images[0])
  np.testing.assert_array_equal(dvae.decode(CFG, params, tokens), images)


def test_bad_shapes_are_clear_errors(params):
  with pytest.raises(ValueError, match=r"expects \[batch, 16, 16, 3\]"):
    dvae.encode(CFG, params, np.zeros((2, 32, 32, 3), np.float32))
  with pytest.raises(ValueError, match=r"decodes \[batch, 16\] grids"):
    dvae.decode(CFG, params, jnp.zeros((2, 15), jnp.int32))


def test_gumbel_softmax_is_a_distribution_that_hardens_as_tau_falls():
  logits = jax.random.normal(jax.random.PRNGKey(1), (64, 16))
  rng = jax.random.PRNGKey(2)
  soft = dvae.gumbel_softmax(logits, rng, 1.0)
  np.testing.assert_allclose(soft.sum(-1), 1.0, rtol=1e-5)
  hard = dvae.gumbel_softmax(logits, rng, 1 / 64)
  # The same noise: at a low temperature the sample is (nearly) the one-hot of its argmax,
  # and that argmax is the same at every temperature.
  np.testing.assert_array_equal(hard.argmax(-1), soft.argmax(-1))
  assert float(hard.max(-1).mean()) > 0.95 > float(soft.max(-1).mean())
  # Argmax of logits + noise follows softmax(logits): the most likely code wins most often.
  many = dvae.gumbel_softmax(jnp.broadcast_to(jnp.array([2.0, 0.0, 0.0]), (4000, 3)),
                             jax.random.PRNGKey(3), 0.1).argmax(-1)
  expected = math.exp(2) / (math.exp(2) + 2)
  assert abs(float((many == 0).mean()) - expected) < 0.03


def test_kl_to_uniform():
  assert np.allclose(dvae.kl_to_uniform(jnp.zeros((2, 4, 4, 16))), 0.0, atol=1e-5)
  peaked = jnp.zeros((1, 2, 2, 16)).at[..., 3].set(100.0)
  np.testing.assert_allclose(dvae.kl_to_uniform(peaked), 4 * math.log(16), rtol=1e-4)
  q = jax.nn.softmax(jnp.array([1.0, 2.0, 3.0]))
  brute = float(jnp.sum(q * jnp.log(q * 3)))
  np.testing.assert_allclose(dvae.kl_to_uniform(jnp.log(q).reshape(1, 1, 1, 3)), [brute],
                             rtol=1e-5)


def test_schedules_anneal_the_temperature_and_raise_the_kl_weight():
  steps = 100
  taus = np.array([dvae.temperature(s, steps) for s in range(0, 150, 10)])
  betas = np.array([dvae.kl_weight(s, steps, 6.6) for s in range(0, 150, 10)])
  assert taus[0] == pytest.approx(1.0) and taus[-1] == pytest.approx(1 / 16)
  assert betas[0] == pytest.approx(0.0) and betas[-1] == pytest.approx(6.6)
  assert np.all(np.diff(taus) <= 1e-7) and np.all(np.diff(betas) >= -1e-7)
  assert dvae.kl_weight(50, steps, 6.6) == pytest.approx(3.3, abs=1e-5)


@pytest.mark.slow
def test_a_few_steps_lower_the_loss(params):
  images = jnp.asarray(_images(16))
  tx = optax.adam(3e-3)

  @jax.jit
  def step(p, opt, key):
    def loss(p):
      total, nll, kl, mse = dvae.loss_terms(CFG, p, images, key, 1.0, 0.1)
      assert total.shape == nll.shape == kl.shape == mse.shape == (16,)
      return total.mean()
    value, grads = jax.value_and_grad(loss)(p)
    updates, opt = tx.update(grads, opt, p)
    return optax.apply_updates(p, updates), opt, value

  opt, losses = tx.init(params), []
  p = params
  for i in range(30):
    p, opt, value = step(p, opt, jax.random.PRNGKey(i))
    losses.append(float(value))
  assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
