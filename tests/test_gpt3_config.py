"""configs/gpt3.py: Table 2.1's presets (parameter counts by jax.eval_shape, never allocated),
the paper's schedule in steps, banded attention as wide as the context equal to dense, and
the config's bad input."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import gpt3 as gpt3_config
from lineage.milestones.gpt1 import pretrain
from lineage.milestones.gpt3 import emergence
from lineage.models import gpt
from lineage.train import optim

# Rows whose count is not within 1% of the size Table 2.1 names them by, with the count our
# model gives their printed shapes: 350M and 2.7B are nominal sizes (their shapes are
# self-consistent and count 355.9M and 2.65B), and the 1.3B row prints 24 heads of 128 on
# d_model 2048 (attention 3072 wide), which counts 1.52B.
OFF_BY_MORE_THAN_1_PERCENT = {"350m": 355_871_744, "1.3b": 1_517_123_584, "2.7b": 2_651_553_280}


def preset_params(preset):
  """The preset's parameter count from abstract shapes."""
  model_cfg = pretrain.model_config(gpt3_config.get_config(preset))
  init = pretrain.gpt_task(model_cfg).init_params
  return gpt.count_params(jax.eval_shape(init, jax.random.PRNGKey(0)))


def test_125m_counts_table_2_1_within_one_percent():
  count = preset_params("125m")
  assert count == 125_226_240
  assert abs(count / gpt3_config.REPORTED_PARAMS["125m"] - 1) < 0.01


@pytest.mark.slow
def test_every_preset_counts_table_2_1_or_is_a_listed_exception():
  for preset, reported in gpt3_config.REPORTED_PARAMS.items():
    count = preset_params(preset)
    if preset in OFF_BY_MORE_THAN_1_PERCENT:
      assert count == OFF_BY_MORE_THAN_1_PERCENT[preset]
      assert abs(count / reported - 1) > 0.01
    else:
      assert abs(count / reported - 1) < 0.01, (preset, count)
  assert abs(preset_params("175b") / 175.0e9 - 1) < 0.005


def test_presets_carry_table_2_1_and_the_paper_recipe():
  c = gpt3_config.get_config("175b")
  assert (c.model.num_layers, c.model.embed_dim, c.model.num_heads, c.model.head_size) == (
      96, 12288, 96, 128)
  assert c.model.context == 2048 and c.model.local_window > 0
  assert c.train.batch_size * 2048 == 3_145_728 and c.train.lr == 0.6e-4
  assert (c.train.b2, c.train.grad_clip, c.train.weight_decay, c.train.min_lr_ratio) == (
      0.95, 1.0, 0.1, 0.1)
  # 375M warmup tokens, decay over 260B, train 300B, in steps of 3.1M-token batches.
  assert (c.train.warmup_steps, c.train.decay_steps, c.train.steps) == (120, 82_652, 95_368)
  small = gpt3_config.get_config("125m")
  assert small.train.batch_size == 256 and small.train.warmup_steps == 716
  with pytest.raises(ValueError, match="unknown preset '1b'"):
    gpt3_config.get_config("1b")


def test_the_schedule_warms_up_decays_to_a_tenth_at_decay_steps_then_stays():
  train = gpt3_config.get_config("tiny").train
  train.update(steps=100, warmup_steps=10, decay_steps=60, lr=1.0)
  schedule = optim.make_schedule(train)
  lrs = np.asarray(schedule(np.array([0, 10, 35, 60, 80, 100])))
  np.testing.assert_allclose(lrs, [0.0, 1.0, 0.55, 0.1, 0.1, 0.1], rtol=1e-5)


def test_banded_attention_as_wide_as_the_context_equals_dense():
  cfg = gpt.GPTConfig(vocab_size=50, context=16, num_layers=2, num_heads=2, embed_dim=16,
                      mlp_dim=32, dropout=0.0, attention_impl="xla")
  params = jax.jit(gpt.GPT(cfg).init)(jax.random.PRNGKey(0), jnp.zeros((1, 1), jnp.int32))["params"]
  tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 16), 0, 50)
  forward = lambda window: jax.jit(gpt.GPT(dataclasses.replace(cfg, local_window=window)).apply)(
      {"params": params}, tokens)
  dense = forward(0)
  for window in (16, 40):
    np.testing.assert_array_equal(forward(window), dense)
  assert np.abs(forward(4) - dense).max() > 1e-4


def test_bad_icl_configs_are_clear_errors():
  cfg = gpt3_config.get_config("tiny")
  cfg.icl.window = 0
  with pytest.raises(ValueError, match="icl.window=0"):
    emergence.model_config(cfg, "banded")
  assert emergence.model_config(cfg, "dense").local_window == 0
  cfg.icl.window = 40
  with pytest.raises(ValueError, match="covers the longest prompt"):
    emergence.model_config(cfg, "banded")
  for shots, match in (("", "empty"), ("0,a", "integers"), ("1,1", "appear once"),
                       ("-1", ">= 0")):
    with pytest.raises(ValueError, match=match):
      emergence.parse_shots(shots)
  cfg = gpt3_config.get_config("tiny")
  cfg.icl.variants = "dense,sparse"
  with pytest.raises(ValueError, match="choose one or both of dense, banded"):
    emergence.variants(cfg.icl)
  cfg = gpt3_config.get_config("tiny")
  cfg.model.vocab_size = 100
  with pytest.raises(ValueError, match="must equal icl.num_items"):
    emergence.model_config(cfg, "dense")
