"""--config.init_from: a run starts from another run's parameters (checkpoint ablations)."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from configs import gpt2 as gpt2_config
from lineage.train import checkpoint as ckpt_lib
from lineage.train import init_from, lm, loop


def _config(layers=2, embed=32, steps=4):
  cfg = gpt2_config.get_config("tiny")
  cfg.model.update(num_layers=layers, embed_dim=embed, mlp_dim=4 * embed, num_heads=4, context=32)
  cfg.data.update(seq_len=32, num_docs=200)
  cfg.train.update(steps=steps, batch_size=8, log_every=1, eval_every=100, checkpoint_every=2)
  return cfg


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("source"))
  state, _ = _train(_config(), workdir)
  return workdir, jax.device_get(state.params)


def _train(cfg, workdir):
  return loop.train(cfg, workdir, lm.build(cfg).task)


def _fresh_params(cfg):
  """Freshly initialised parameters, unboxed, for a model of this config."""
  init = lm.build(cfg).task.init_params
  return jax.device_get(nn.unbox(init(jax.random.PRNGKey(1))))


def test_loads_latest_and_named_step(source_run):
  workdir, final = source_run
  cfg = _config()
  fresh = _fresh_params(cfg)
  loaded = init_from.load_params(workdir, fresh)
  for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(final)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  at_two = init_from.load_params(f"{workdir}@2", fresh)
  assert any(not np.array_equal(a, b) for a, b in
             zip(jax.tree.leaves(at_two), jax.tree.leaves(final)))


def test_extra_layers_stay_fresh_and_are_named(source_run, capsys):
  workdir, final = source_run
  cfg = _config(layers=3)
  fresh = _fresh_params(cfg)
  loaded = init_from.load_params(workdir, fresh)
  np.testing.assert_array_equal(loaded["h_2"]["mlp"]["c_fc"]["kernel"],
                                fresh["h_2"]["mlp"]["c_fc"]["kernel"])
  np.testing.assert_array_equal(loaded["h_1"]["mlp"]["c_fc"]["kernel"],
                                final["h_1"]["mlp"]["c_fc"]["kernel"])
  assert "freshly initialised: h_2/attn/c_attn/bias" in capsys.readouterr().out


def test_shape_mismatch_and_bad_sources_are_clear_errors(source_run):
  workdir, _ = source_run
  fresh = _fresh_params(_config(embed=64))
  with pytest.raises(ckpt_lib.CheckpointMismatchError, match=r"wte/embedding: checkpoint"):
    init_from.load_params(workdir, fresh)
  with pytest.raises(FileNotFoundError, match="step 3 is not in"):
    init_from.load_params(f"{workdir}@3", fresh)
  with pytest.raises(ValueError, match="step number"):
    init_from.parse_source(f"{workdir}@last")
  with pytest.raises(ValueError, match="Hugging Face"):
    init_from.parse_source("hf:/models/gpt2")


def test_training_run_starts_from_source(source_run, tmp_path):
  workdir, final = source_run
  cfg = _config(steps=1)
  cfg.train.lr = 0.0
  cfg.init_from = workdir
  state, _ = _train(cfg, str(tmp_path))
  for a, b in zip(jax.tree.leaves(jax.device_get(state.params)), jax.tree.leaves(final)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=0)
