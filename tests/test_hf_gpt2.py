"""Hugging Face GPT-2 interop: transformers computes the same logits as our GPT on imported and
exported weights, and every bad checkpoint is one error naming the offending tensors."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors import numpy as safetensors_np

from configs import gpt2 as gpt2_config
from lineage.interop import hf_gpt2
from lineage.milestones.gpt1 import pretrain
from lineage.milestones.gpt2 import task as gpt2_task
from lineage.models import gpt
from lineage.train import loop

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def _hf_model(n_embd=60, n_head=3, n_layer=2, vocab=100, positions=32, seed=0, **kw):
  """A random transformers GPT-2 whose every tensor (LayerNorms and biases too) is non-trivial,
  so that a wrong mapping of any of them changes the logits."""
  config = transformers.GPT2Config(n_embd=n_embd, n_head=n_head, n_layer=n_layer,
                                   vocab_size=vocab, n_positions=positions,
                                   bos_token_id=vocab - 1, eos_token_id=vocab - 1, **kw)
  torch.manual_seed(seed)
  model = transformers.GPT2LMHeadModel(config).eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      p.copy_(0.1 * torch.randn_like(p) + (1.0 if ".ln_" in name and "weight" in name else 0.0))
  return model


def _torch_logits(model, tokens):
  with torch.no_grad():
    return model(torch.tensor(np.asarray(tokens))).logits.numpy()


def _tokens(cfg, batch=2, seed=0):
  return np.random.RandomState(seed).randint(0, cfg.vocab_size, (batch, cfg.context))


@pytest.fixture(scope="module")
def saved_hf(tmp_path_factory):
  path = tmp_path_factory.mktemp("hf")
  model = _hf_model()
  model.save_pretrained(path)
  return path, model


@pytest.mark.parametrize("shape", [
    dict(n_embd=60, n_head=3, n_layer=2),  # odd head count
    dict(n_embd=64, n_head=4, n_layer=3, n_inner=96, layer_norm_epsilon=1e-6, vocab=50),
], ids=["60d_3heads", "64d_4heads_inner96"])
def test_import_gives_transformers_logits(tmp_path, shape):
  model = _hf_model(**shape)
  model.save_pretrained(tmp_path)
  cfg, params = hf_gpt2.import_hf(tmp_path)
  assert (cfg.embed_dim, cfg.num_heads, cfg.num_layers) == (
      shape["n_embd"], shape["n_head"], shape["n_layer"])
  assert cfg.mlp_dim == shape.get("n_inner", 4 * shape["n_embd"])
  tokens = _tokens(cfg)
  ours = np.asarray(gpt.GPT(cfg).apply({"params": params}, tokens))
  theirs = _torch_logits(model, tokens)
  assert np.abs(theirs).max() > 1.0  # logits large enough for a mapping error to show
  np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4)


def test_released_layout_without_prefix_with_buffers_and_tied_head(saved_hf, tmp_path):
  """The released gpt2 files: bare names, causal-mask buffers and a stored lm_head."""
  path, _ = saved_hf
  tensors = safetensors_np.load_file(str(path / "model.safetensors"))
  bare = {k.removeprefix("transformer."): v for k, v in tensors.items()}
  bare["h.0.attn.bias"] = np.tril(np.ones((1, 1, 32, 32), np.float32))
  bare["lm_head.weight"] = bare["wte.weight"]
  safetensors_np.save_file(bare, str(tmp_path / "model.safetensors"))
  (tmp_path / "config.json").write_text((path / "config.json").read_text())
  _, expected = hf_gpt2.import_hf(path)
  _, params = hf_gpt2.import_hf(tmp_path)
  jax.tree.map(np.testing.assert_array_equal, params, expected)


@pytest.fixture(scope="module")
def trained_tiny(tmp_path_factory):
  """(GPTConfig, params) of a tiny GPT-2 trained a few steps through the loop."""
  cfg = gpt2_config.get_config("tiny")
  cfg.model.update(num_layers=2, embed_dim=48, num_heads=3, mlp_dim=96, context=32)
  cfg.data.update(seq_len=32, num_docs=200)
  cfg.train.update(steps=3, batch_size=8, log_every=1, eval_every=100, checkpoint_every=3)
  state, _ = loop.train(cfg, str(tmp_path_factory.mktemp("run")), gpt2_task.build(cfg).task)
  return pretrain.model_config(cfg), jax.device_get(state.params)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_export_of_trained_run_loads_in_transformers(trained_tiny, tmp_path, dtype):
  cfg, params = trained_tiny
  params = jax.tree.map(lambda p: np.asarray(p).astype(jnp.dtype(dtype)), params)
  out = hf_gpt2.export_hf(cfg, params, tmp_path / "hf", eot_id=256)
  model, info = transformers.GPT2LMHeadModel.from_pretrained(out, output_loading_info=True)
  assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
  assert (model.config.eos_token_id, model.config.n_ctx) == (256, 32)
  exact = jax.tree.map(lambda p: np.asarray(p, np.float32), params)
  tokens = _tokens(cfg)
  ours = np.asarray(gpt.GPT(cfg).apply({"params": exact}, tokens))
  np.testing.assert_allclose(_torch_logits(model.eval(), tokens), ours, rtol=0, atol=1e-4)
  reimported_cfg, reimported = hf_gpt2.import_hf(out)
  assert reimported_cfg == cfg
  jax.tree.map(np.testing.assert_array_equal, reimported, exact)


def _copy_with(path, tmp_path, edit_tensors=None, edit_config=None):
  tensors = safetensors_np.load_file(str(path / "model.safetensors"))
  config = json.loads((path / "config.json").read_text())
  if edit_tensors:
    edit_tensors(tensors)
  if edit_config:
    edit_config(config)
  safetensors_np.save_file(tensors, str(tmp_path / "model.safetensors"))
  (tmp_path / "config.json").write_text(json.dumps(config))
  return tmp_path


def test_bad_tensors_are_one_error_naming_each(saved_hf, tmp_path):
  path, _ = saved_hf

  def damage(tensors):
    del tensors["transformer.h.1.mlp.c_fc.bias"]
    tensors["transformer.h.0.attn.c_attn.weight"] = np.zeros((60, 60), np.float32)
    tensors["transformer.h.0.attn.rotary.weight"] = np.zeros((3,), np.float32)

  bad = _copy_with(path, tmp_path, edit_tensors=damage)
  with pytest.raises(hf_gpt2.HFCheckpointError) as error:
    hf_gpt2.import_hf(bad)
  message = str(error.value)
  assert "h.1.mlp.c_fc.bias: missing (expected [240])" in message
  assert "h.0.attn.c_attn.weight: expected [60, 180], found [60, 60]" in message
  assert "h.0.attn.rotary.weight: unexpected tensor of shape [3]" in message


@pytest.mark.parametrize("edit, expected", [
    (lambda c: c.update(model_type="llama", architectures=["LlamaForCausalLM"]),
     "describes a 'llama' model (architectures ['LlamaForCausalLM']); only GPT-2"),
    (lambda c: c.update(activation_function="relu"), "activation_function='relu'"),
    (lambda c: c.update(tie_word_embeddings=False), "tie_word_embeddings=false"),
], ids=["llama", "relu", "untied"])
def test_non_gpt2_configs_are_refused(saved_hf, tmp_path, edit, expected):
  bad = _copy_with(saved_hf[0], tmp_path, edit_config=edit)
  with pytest.raises(hf_gpt2.HFCheckpointError, match="config.json") as error:
    hf_gpt2.import_hf(bad)
  assert expected in str(error.value)


def test_pickles_and_empty_directories_are_refused(saved_hf, tmp_path):
  (tmp_path / "config.json").write_text((saved_hf[0] / "config.json").read_text())
  with pytest.raises(hf_gpt2.HFCheckpointError, match="has no model.safetensors"):
    hf_gpt2.import_hf(tmp_path)
  (tmp_path / "pytorch_model.bin").write_bytes(b"not unpickled")
  with pytest.raises(hf_gpt2.HFCheckpointError,
                     match=r"pytorch_model.bin.*safetensors only.*save_pretrained"):
    hf_gpt2.import_hf(tmp_path)
  with pytest.raises(hf_gpt2.HFCheckpointError, match="has no config.json"):
    hf_gpt2.import_hf(tmp_path / "nowhere")


@pytest.mark.parametrize("preset, expected", [
    ("gpt1", "post-LN blocks"), ("gpt3_125m", "locally banded layers"),
    ("gpt2_117m_head_size_32", "head_size=32 x num_heads=12 != embed_dim=768"),
])
def test_export_refuses_what_gpt2_cannot_represent(tmp_path, preset, expected):
  cfg = (dataclasses.replace(gpt.PRESETS["gpt2_117m"], head_size=32)
         if preset == "gpt2_117m_head_size_32" else gpt.PRESETS[preset])
  with pytest.raises(hf_gpt2.HFCheckpointError, match="cannot represent") as error:
    hf_gpt2.export_hf(cfg, {}, tmp_path)
  assert expected in str(error.value)
  assert not any(tmp_path.iterdir())


def test_export_names_parameters_that_do_not_fit_the_config(saved_hf, tmp_path):
  cfg, params = hf_gpt2.import_hf(saved_hf[0])
  params["h_1"]["mlp"]["c_fc"]["kernel"] = np.zeros((60, 7), np.float32)
  with pytest.raises(hf_gpt2.HFCheckpointError,
                     match=r"h.1.mlp.c_fc.weight: expected \[60, 240\], found \[60, 7\]"):
    hf_gpt2.export_hf(cfg, params, tmp_path)


def test_sharded_checkpoint_imports(saved_hf, tmp_path):
  path, model = saved_hf
  model.save_pretrained(tmp_path, max_shard_size="100KB")
  assert (tmp_path / "model.safetensors.index.json").is_file()
  _, expected = hf_gpt2.import_hf(path)
  _, params = hf_gpt2.import_hf(tmp_path)
  jax.tree.map(np.testing.assert_array_equal, params, expected)
