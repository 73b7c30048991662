"""Hugging Face GPT-1 interop: transformers' OpenAIGPTLMHeadModel computes the same logits as
our post-LN GPT on imported and exported weights, the init_from=hf: importer extends the
vocabulary for fine-tuning tokens, and every bad directory is one clear error."""

import dataclasses
import functools
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors import numpy as safetensors_np

from lineage.interop import hf_gpt1
from lineage.models import gpt
from lineage.train import weights

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def _hf_model(n_embd=48, n_head=3, n_layer=2, vocab=100, positions=32, seed=0, **kw):
  """A random transformers GPT-1 whose every tensor (LayerNorms and biases too) is
  non-trivial, so that a wrong mapping of any of them changes the logits."""
  config = transformers.OpenAIGPTConfig(n_embd=n_embd, n_head=n_head, n_layer=n_layer,
                                        vocab_size=vocab, n_positions=positions, **kw)
  torch.manual_seed(seed)
  model = transformers.OpenAIGPTLMHeadModel(config).eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      p.copy_(0.1 * torch.randn_like(p) + (1.0 if ".ln_" in name and "weight" in name else 0.0))
  return model


def _torch_logits(model, tokens):
  with torch.no_grad():
    return model(torch.tensor(np.asarray(tokens))).logits.numpy()


def _tokens(cfg, batch=2, seed=0):
  return np.random.RandomState(seed).randint(0, cfg.vocab_size, (batch, cfg.context))


def _logits(cfg, params, tokens):
  return np.asarray(gpt.GPT(cfg).apply({"params": params}, tokens))


@pytest.fixture(scope="module")
def saved_hf(tmp_path_factory):
  path = tmp_path_factory.mktemp("hf")
  model = _hf_model()
  model.save_pretrained(path)
  return path, model


@pytest.mark.parametrize("shape", [
    dict(n_embd=48, n_head=3, n_layer=2),  # odd head count
    dict(n_embd=64, n_head=4, n_layer=3, layer_norm_epsilon=1e-6, vocab=50, positions=24),
], ids=["48d_3heads", "64d_4heads_eps1e-6"])
@pytest.mark.slow
def test_import_gives_transformers_logits(tmp_path, shape):
  model = _hf_model(**shape)
  model.save_pretrained(tmp_path)
  cfg, params = hf_gpt1.import_hf(tmp_path)
  assert (cfg.embed_dim, cfg.num_heads, cfg.num_layers, cfg.mlp_dim) == (
      shape["n_embd"], shape["n_head"], shape["n_layer"], 4 * shape["n_embd"])
  assert not cfg.pre_ln and cfg.layer_norm_eps == shape.get("layer_norm_epsilon", 1e-5)
  tokens = _tokens(cfg)
  theirs = _torch_logits(model, tokens)
  assert np.abs(theirs).max() > 1.0  # logits large enough for a mapping error to show
  np.testing.assert_allclose(_logits(cfg, params, tokens), theirs, rtol=0, atol=1e-4)


def test_released_layout_without_prefix_with_buffers_and_tied_head(saved_hf, tmp_path):
  """Older exports: bare names, causal-mask and position buffers, a stored lm_head."""
  path, _ = saved_hf
  tensors = safetensors_np.load_file(str(path / "model.safetensors"))
  bare = {k.removeprefix("transformer."): v for k, v in tensors.items()}
  bare["h.0.attn.bias"] = np.tril(np.ones((1, 1, 32, 32), np.float32))
  bare["position_ids"] = np.arange(32)
  bare["lm_head.weight"] = bare["tokens_embed.weight"]
  safetensors_np.save_file(bare, str(tmp_path / "model.safetensors"))
  (tmp_path / "config.json").write_text((path / "config.json").read_text())
  _, expected = hf_gpt1.import_hf(path)
  _, params = hf_gpt1.import_hf(tmp_path)
  jax.tree.map(np.testing.assert_array_equal, params, expected)


@functools.cache
def _our_gpt1():
  """(GPTConfig, params) of a small GPT-1 of ours, every parameter perturbed off its init."""
  cfg = dataclasses.replace(gpt.PRESETS["gpt1"], vocab_size=103, context=32, num_layers=2,
                            num_heads=3, embed_dim=48, mlp_dim=192)
  params = nn.unbox(gpt.GPT(cfg).init(jax.random.PRNGKey(0), jnp.zeros((1, 1), jnp.int32)))
  leaves, tree = jax.tree.flatten(jax.device_get(params["params"]))
  rng = np.random.RandomState(1)
  leaves = [np.asarray(p) + 0.1 * rng.randn(*p.shape).astype(np.float32) for p in leaves]
  return cfg, jax.tree.unflatten(tree, leaves)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_export_loads_in_transformers_with_our_logits(tmp_path, dtype):
  cfg, params = _our_gpt1()
  params = jax.tree.map(lambda p: np.asarray(p).astype(jnp.dtype(dtype)), params)
  out = hf_gpt1.export_hf(cfg, params, tmp_path / "hf")
  model, info = transformers.OpenAIGPTLMHeadModel.from_pretrained(out, output_loading_info=True)
  assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
  assert (model.config.vocab_size, model.config.n_positions, model.config.afn) == (103, 32, "gelu")
  exact = jax.tree.map(lambda p: np.asarray(p, np.float32), params)
  tokens = _tokens(cfg)
  ours = _logits(cfg, exact, tokens)
  assert np.abs(ours).max() > 1.0
  np.testing.assert_allclose(_torch_logits(model.eval(), tokens), ours, rtol=0, atol=1e-4)
  reimported_cfg, reimported = hf_gpt1.import_hf(out)
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
    tensors["transformer.h.0.attn.c_attn.weight"] = np.zeros((48, 48), np.float32)
    tensors["transformer.ln_f.weight"] = np.zeros((48,), np.float32)

  with pytest.raises(hf_gpt1.HFCheckpointError, match="does not match its GPT-1 config") as error:
    hf_gpt1.import_hf(_copy_with(path, tmp_path, edit_tensors=damage))
  message = str(error.value)
  assert "h.1.mlp.c_fc.bias: missing (expected [192])" in message
  assert "h.0.attn.c_attn.weight: expected [48, 144], found [48, 48]" in message
  assert "ln_f.weight: unexpected tensor of shape [48]" in message


def test_untied_head_is_refused(saved_hf, tmp_path):
  def untie(tensors):
    tensors["lm_head.weight"] = tensors["transformer.tokens_embed.weight"] + 1.0

  with pytest.raises(hf_gpt1.HFCheckpointError, match="untied LM head"):
    hf_gpt1.import_hf(_copy_with(saved_hf[0], tmp_path, edit_tensors=untie))


def test_a_gpt2_directory_is_refused_with_a_pointer_to_hf_gpt2(tmp_path):
  config = transformers.GPT2Config(n_embd=48, n_head=3, n_layer=2, vocab_size=100,
                                   n_positions=32, bos_token_id=99, eos_token_id=99)
  transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path)
  with pytest.raises(hf_gpt1.HFCheckpointError,
                     match=r"describes a 'gpt2' model .*use lineage.interop.hf_gpt2"):
    hf_gpt1.import_hf(tmp_path)


@pytest.mark.parametrize("edit, expected", [
    (lambda c: c.update(afn="relu"), "afn='relu'"),
    (lambda c: c.update(tie_word_embeddings=False), "tie_word_embeddings=false"),
    (lambda c: c.update(architectures=["OpenAIGPTDoubleHeadsModel"]),
     "architectures ['OpenAIGPTDoubleHeadsModel']"),
], ids=["relu", "untied", "double_heads"])
def test_other_gpt1_variants_are_refused(saved_hf, tmp_path, edit, expected):
  bad = _copy_with(saved_hf[0], tmp_path, edit_config=edit)
  with pytest.raises(hf_gpt1.HFCheckpointError, match="config.json") as error:
    hf_gpt1.import_hf(bad)
  assert expected in str(error.value)


def test_pickles_and_empty_directories_are_refused(saved_hf, tmp_path):
  (tmp_path / "config.json").write_text((saved_hf[0] / "config.json").read_text())
  with pytest.raises(hf_gpt1.HFCheckpointError, match="has no model.safetensors"):
    hf_gpt1.import_hf(tmp_path)
  (tmp_path / "pytorch_model.bin").write_bytes(b"not unpickled")
  with pytest.raises(hf_gpt1.HFCheckpointError,
                     match=r"pytorch_model.bin.*safetensors only.*OpenAIGPTLMHeadModel"):
    hf_gpt1.import_hf(tmp_path)
  with pytest.raises(hf_gpt1.HFCheckpointError, match="has no config.json"):
    hf_gpt1.import_hf(tmp_path / "nowhere")


@pytest.mark.parametrize("change, expected", [
    (dict(pre_ln=True), "pre-LN blocks"), (dict(local_window=8), "locally banded layers"),
    (dict(head_size=8), "head_size=8 x num_heads=3 != embed_dim=48"),
    (dict(mlp_dim=96), "mlp_dim=96 (its MLP is 4 x embed_dim = 192)"),
], ids=["pre_ln", "local", "head_size", "mlp_dim"])
@pytest.mark.slow
def test_export_refuses_what_gpt1_cannot_represent(tmp_path, change, expected):
  cfg = dataclasses.replace(_our_gpt1()[0], **change)
  with pytest.raises(hf_gpt1.HFCheckpointError, match="cannot represent") as error:
    hf_gpt1.export_hf(cfg, {}, tmp_path)
  assert expected in str(error.value)
  assert not any(tmp_path.iterdir())


def test_export_names_parameters_that_do_not_fit_the_config(tmp_path):
  cfg, params = _our_gpt1()
  params = jax.tree.map(np.copy, params)
  params["h_1"]["mlp"]["c_fc"]["kernel"] = np.zeros((48, 7), np.float32)
  with pytest.raises(hf_gpt1.HFCheckpointError,
                     match=r"h.1.mlp.c_fc.weight: expected \[48, 192\], found \[48, 7\]"):
    hf_gpt1.export_hf(cfg, params, tmp_path)


def test_init_from_hf_adds_fine_tuning_tokens_after_the_vocabulary(saved_hf):
  """Through the loop's loader, as `--config.init_from=hf:PATH` runs it: a run with three
  more tokens than the source (GPT-1's _start_, _delimiter_, _classify_)."""
  path, model = saved_hf
  source_cfg, source = hf_gpt1.import_hf(path)
  run_cfg = dataclasses.replace(source_cfg, vocab_size=source_cfg.vocab_size + 3)
  fresh = nn.unbox(gpt.GPT(run_cfg).init(jax.random.PRNGKey(0), jnp.zeros((1, 1), jnp.int32)))
  importers = {"hf": functools.partial(hf_gpt1.import_for, run_cfg)}
  params = weights.load_params(f"hf:{path}", fresh["params"], importers, allow_fresh=False)
  wte = np.asarray(params["wte"]["embedding"])
  assert wte.shape == (103, 48)
  np.testing.assert_array_equal(wte[:100], source["wte"]["embedding"])
  assert 0.015 < wte[100:].std() < 0.025  # N(0, 0.02), GPT-1's init for added tokens
  again = hf_gpt1.import_for(run_cfg, path)["wte"]["embedding"]
  np.testing.assert_array_equal(again, wte)  # the same seed gives the same new rows
  assert not np.array_equal(hf_gpt1.import_for(run_cfg, path, seed=1)["wte"]["embedding"], wte)
  tokens = _tokens(source_cfg)  # source tokens only: the new rows change no logit of theirs
  np.testing.assert_allclose(_logits(run_cfg, params, tokens)[..., :100],
                             _torch_logits(model, tokens), rtol=0, atol=1e-4)


@pytest.mark.parametrize("change, expected", [
    (dict(num_layers=3), "model.num_layers: run has 3, hf has 2"),
    (dict(vocab_size=99), "model.vocab_size: run has 99, hf has 100"),
    (dict(pre_ln=True), "model.pre_ln: run has True, hf has False"),
], ids=["layers", "smaller_vocab", "pre_ln"])
def test_init_from_hf_refuses_another_architecture(saved_hf, change, expected):
  run_cfg = dataclasses.replace(hf_gpt1.import_hf(saved_hf[0])[0], **change)
  with pytest.raises(hf_gpt1.HFCheckpointError, match="another architecture") as error:
    hf_gpt1.import_for(run_cfg, saved_hf[0])
  assert expected in str(error.value)


def test_sharded_checkpoint_imports(saved_hf, tmp_path):
  path, model = saved_hf
  model.save_pretrained(tmp_path, max_shard_size="50KB")
  assert (tmp_path / "model.safetensors.index.json").is_file()
  _, expected = hf_gpt1.import_hf(path)
  _, params = hf_gpt1.import_hf(tmp_path)
  jax.tree.map(np.testing.assert_array_equal, params, expected)
