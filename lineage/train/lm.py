"""Next-token prediction: the loss function every language model in the lineage trains with."""

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lineage import sample as sample_lib
from lineage.data import lm_batches
from lineage.models import gpt
from lineage.train import checkpoint as ckpt_lib
from lineage.train import loop


def lm_loss_fn(model):
  """Cross-entropy of `batch["targets"]` under `model` applied to `batch["inputs"]`.

  Optional batch keys: "weights" (0 for padding or for targets that must not be
  scored), "positions" and "segment_ids" (packed documents).
  """
  def loss_fn(params, batch, rng, deterministic):
    logits = model.apply({"params": params}, batch["inputs"], positions=batch.get("positions"),
                         segment_ids=batch.get("segment_ids"), deterministic=deterministic,
                         rngs=None if deterministic else {"dropout": rng})
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
    weights = batch.get("weights")
    weights = jnp.ones_like(losses) if weights is None else weights.astype(losses.dtype)
    correct = (logits.argmax(-1) == batch["targets"]) * weights
    return (losses * weights).sum(), {"weight": weights.sum(), "accuracy": correct.sum()}
  return loss_fn


@dataclasses.dataclass
class LMParts:
  """A configured language model with its data, ready for the loop or the sampler."""
  model_cfg: gpt.GPTConfig
  model: gpt.GPT
  tokenizer: object
  task: loop.Task
  train_tokens: np.ndarray
  eval_tokens: np.ndarray


def model_config(cfg) -> gpt.GPTConfig:
  return gpt.GPTConfig(**cfg.model.to_dict())


def build(cfg) -> LMParts:
  """Model, tokenizer, data and loop Task for a GPT config (configs/gpt2.py)."""
  model_cfg = model_config(cfg)
  model = gpt.GPT(model_cfg)
  train_tokens, eval_tokens, tokenizer = lm_batches.load_corpus(cfg.data)
  if tokenizer.vocab_size > model_cfg.vocab_size:
    raise ValueError(f"the {cfg.data.tokenizer} tokenizer has {tokenizer.vocab_size} tokens but "
                     f"model.vocab_size is {model_cfg.vocab_size}; raise --config.model.vocab_size")
  if cfg.data.seq_len > model_cfg.context:
    raise ValueError(f"data.seq_len={cfg.data.seq_len} exceeds model.context={model_cfg.context}")
  seq_len, batch_size = cfg.data.seq_len, cfg.train.batch_size
  process = dict(process_index=jax.process_index(), process_count=jax.process_count())
  train_data = lm_batches.RandomWindows(train_tokens, seq_len, batch_size, cfg.train.seed,
                                        **process)
  eval_data = lambda: lm_batches.sequential_windows(eval_tokens, seq_len, batch_size,
                                                    cfg.train.eval_batches, **process)
  dummy = jnp.zeros((1, seq_len), jnp.int32)
  init_params = lambda rng: model.init(rng, dummy)["params"]
  abstract = jax.eval_shape(init_params, jax.random.PRNGKey(0))
  task = loop.Task(init_params=init_params, loss_fn=lm_loss_fn(model), train_data=train_data,
                   eval_data=eval_data, flops_per_token=gpt.flops_per_token(model_cfg, abstract),
                   tokens_per_batch=seq_len * batch_size, model_dim=model_cfg.embed_dim)
  return LMParts(model_cfg, model, tokenizer, task, train_tokens, eval_tokens)


def restore_params(cfg, workdir, parts: LMParts):
  """The parameters of the latest checkpoint in `workdir`."""
  checkpoints = ckpt_lib.Checkpoints(os.path.join(workdir, "checkpoints"))
  latest = checkpoints.latest_step()
  if latest is None:
    raise FileNotFoundError(f"no checkpoint in {workdir}/checkpoints; train first with "
                            f"--mode=train --workdir={workdir}")
  trainer = loop.build_trainer(cfg, parts.task)
  state, _ = checkpoints.restore(latest, trainer.abstract_state)
  checkpoints.close()
  return state.params


def sample_texts(cfg, parts: LMParts, params, prompts):
  """Decoded completions of text prompts under the config's sampling settings."""
  s = cfg.sample
  decoder = sample_lib.Decoder(parts.model_cfg, params, sample_lib.SamplingConfig(
      temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, greedy=s.greedy,
      stop_tokens=(parts.tokenizer.eot_id,)))
  completions = decoder.generate([parts.tokenizer.encode(p) for p in prompts], s.max_new_tokens,
                                 rng=jax.random.PRNGKey(s.seed))
  return [parts.tokenizer.decode(c) for c in completions]
