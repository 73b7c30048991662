"""Parameters from checkpoints: --config.init_from starts a run from another run's parameters
(checkpoint ablations) or from a Hugging Face GPT-2 directory through the task's importer, and
restore_params reads a run's own without building a trainer."""


import flax.linen as nn
import jax
import numpy as np
import pytest

from configs import gpt2 as gpt2_config
from lineage.interop import hf_gpt2
from lineage.milestones.gpt1 import pretrain
from lineage.milestones.gpt2 import task as gpt2_task
from lineage.milestones.gpt2 import weights as gpt2_weights
from lineage.train import checkpoint as ckpt_lib
from lineage.train import lm_loss, loop, weights
from lineage.train import metrics as metrics_lib


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
  return loop.train(cfg, workdir, gpt2_task.build(cfg).task)


def _fresh_params(cfg):
  """Freshly initialised parameters, unboxed, for a model of this config."""
  init = gpt2_task.build(cfg).task.init_params
  return jax.device_get(nn.unbox(init(jax.random.PRNGKey(1))))


def test_loads_latest_and_named_step(source_run):
  workdir, final = source_run
  cfg = _config()
  fresh = _fresh_params(cfg)
  loaded = weights.load_params(workdir, fresh)
  for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(final)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  at_two = weights.load_params(f"{workdir}@2", fresh)
  assert any(not np.array_equal(a, b) for a, b in
             zip(jax.tree.leaves(at_two), jax.tree.leaves(final)))


def test_extra_layers_stay_fresh_and_are_named(source_run, capsys):
  workdir, final = source_run
  cfg = _config(layers=3)
  fresh = _fresh_params(cfg)
  loaded = weights.load_params(workdir, fresh)
  np.testing.assert_array_equal(loaded["h_2"]["mlp"]["c_fc"]["kernel"],
                                fresh["h_2"]["mlp"]["c_fc"]["kernel"])
  np.testing.assert_array_equal(loaded["h_1"]["mlp"]["c_fc"]["kernel"],
                                final["h_1"]["mlp"]["c_fc"]["kernel"])
  assert "freshly initialised: h_2/attn/c_attn/bias" in capsys.readouterr().out


def test_shape_mismatch_and_bad_sources_are_clear_errors(source_run):
  workdir, _ = source_run
  fresh = _fresh_params(_config(embed=64))
  with pytest.raises(ckpt_lib.CheckpointMismatchError, match=r"wte/embedding: checkpoint"):
    weights.load_params(workdir, fresh)
  with pytest.raises(FileNotFoundError, match="step 3 is not in"):
    weights.load_params(f"{workdir}@3", fresh)
  with pytest.raises(ValueError, match="step number"):
    weights.parse_source(f"{workdir}@last")
  with pytest.raises(ValueError, match="unknown source kind 'hf'"):
    weights.load_params("hf:/models/gpt2", fresh)  # no importer given: not a source kind here


@pytest.mark.slow
def test_training_run_starts_from_source(source_run, tmp_path):
  workdir, final = source_run
  cfg = _config(steps=1)
  cfg.train.lr = 0.0
  cfg.init_from = workdir
  state, _ = _train(cfg, str(tmp_path))
  for a, b in zip(jax.tree.leaves(jax.device_get(state.params)), jax.tree.leaves(final)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=0)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
  """A random transformers GPT-2 of _config()'s shape, saved as transformers saves it; its
  weights are far from a fresh model's, whose loss is about log(vocab)."""
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  path = tmp_path_factory.mktemp("hf")
  config = transformers.GPT2Config(n_embd=32, n_head=4, n_layer=2, n_positions=32,
                                   vocab_size=257, bos_token_id=256, eos_token_id=256)
  torch.manual_seed(0)
  model = transformers.GPT2LMHeadModel(config)
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.2 * torch.randn_like(p))
  model.save_pretrained(path)
  return path


@pytest.mark.slow
def test_training_run_starts_from_hf_weights(hf_dir, tmp_path):
  """The first logged loss is the loss of the imported weights on the first batch."""
  cfg = _config(steps=2)
  cfg.init_from = f"hf:{hf_dir}"
  _train(cfg, str(tmp_path))
  first_loss = metrics_lib.read_metrics(str(tmp_path))[0]["loss"]
  _, hf_params = hf_gpt2.import_hf(hf_dir)
  parts = gpt2_task.build(cfg)
  batch = next(parts.task.train_data)
  total, aux = lm_loss.lm_loss_fn(parts.model)(hf_params, batch, None, True)
  assert first_loss == pytest.approx(float(total / aux["weight"]), rel=1e-5)
  assert abs(first_loss - np.log(257)) > 0.3  # far from a fresh, near-uniform model


def test_hf_architecture_mismatch_lists_the_fields(hf_dir):
  cfg = _config(layers=3)
  cfg.model.layer_norm_eps = 1e-6
  with pytest.raises(hf_gpt2.HFCheckpointError) as error:
    weights.load_params(f"hf:{hf_dir}", _fresh_params(cfg), _importers(cfg))
  message = str(error.value)
  assert "model.num_layers: run has 3, hf has 2" in message
  assert "model.layer_norm_eps: run has 1e-06, hf has 1e-05" in message


def _importers(cfg):
  return gpt2_task.build(cfg).task.import_params


def test_hf_params_load_with_shapes_checked(hf_dir):
  cfg = _config()
  loaded = weights.load_params(f"hf:{hf_dir}", _fresh_params(cfg), _importers(cfg))
  _, expected = hf_gpt2.import_hf(hf_dir)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(loaded), expected)
  # A shape check stands behind the importer's architecture check.
  importers = {"hf": lambda path: hf_gpt2.import_hf(path)[1]}
  with pytest.raises(ckpt_lib.CheckpointMismatchError, match=r"wte/embedding: checkpoint"):
    weights.load_params(f"hf:{hf_dir}", _fresh_params(_config(embed=64)), importers)


def test_load_model_reads_the_run_strictly(source_run, tmp_path):
  workdir, final = source_run
  model_cfg, params = gpt2_weights.load_model(_config(), workdir)
  assert model_cfg == pretrain.model_config(_config())
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(params), final)
  with pytest.raises(ckpt_lib.CheckpointMismatchError,
                     match="model.num_layers: run has 3, .* has 2"):
    gpt2_weights.load_model(_config(layers=3), workdir)
  (tmp_path / "checkpoints").symlink_to(f"{workdir}/checkpoints")
  with pytest.raises(ckpt_lib.CheckpointMismatchError, match="h_2/attn/c_attn/bias: in the model"):
    gpt2_weights.load_model(_config(layers=3), str(tmp_path))


def test_restore_params_reads_a_run_without_a_trainer(source_run, tmp_path):
  workdir, final = source_run
  cfg = _config()
  task = gpt2_task.build(cfg).task
  restored = weights.restore_params(cfg, workdir, task)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored), final)
  at_two = weights.restore_params(cfg, workdir, task, step=2)
  assert any(not np.array_equal(a, b) for a, b in
             zip(jax.tree.leaves(jax.device_get(at_two)), jax.tree.leaves(final)))
  with pytest.raises(FileNotFoundError, match="no trained checkpoint.*--mode=train"):
    weights.restore_params(cfg, str(tmp_path), task)
  with pytest.raises(ckpt_lib.CheckpointMismatchError, match="h_2/attn/c_attn/bias"):
    weights.restore_params(_config(layers=3), workdir, gpt2_task.build(_config(layers=3)).task)
