"""AdamW with decoupled weight decay on matrices only, clipping, and the papers' schedules."""

import jax
import jax.numpy as jnp
import optax

SCHEDULES = ("cosine", "linear", "noam", "constant")


def make_schedule(train_cfg, model_dim=None):
  """Learning rate as a function of the step.

  cosine:   linear warmup to `lr`, then cosine decay to `lr * min_lr_ratio` at `steps`
            (GPT-2/3, nanoGPT).
  linear:   linear warmup, then linear decay to `lr * min_lr_ratio` (GPT-1, the 2017 mLSTM).
  noam:     `lr * model_dim**-0.5 * min(step**-0.5, step * warmup**-1.5)`
            (Vaswani et al. 2017; `lr` is the paper's multiplier, 1.0 there).
  constant: linear warmup, then flat.
  """
  lr, warmup, steps = train_cfg.lr, train_cfg.warmup_steps, train_cfg.steps
  floor = lr * train_cfg.get("min_lr_ratio", 0.0)
  name = train_cfg.schedule
  if name == "noam":
    if not model_dim:
      raise ValueError("the noam schedule needs the model width; pass model_dim")
    warmup = max(warmup, 1)

    def noam(step):
      step = jnp.maximum(step, 1).astype(jnp.float32)
      return lr * model_dim ** -0.5 * jnp.minimum(step ** -0.5, step * warmup ** -1.5)
    return noam
  warm = optax.linear_schedule(0.0, lr, warmup) if warmup else optax.constant_schedule(lr)
  decay_steps = max(steps - warmup, 1)
  if name == "cosine":
    decay = optax.cosine_decay_schedule(lr, decay_steps, alpha=floor / lr if lr else 0.0)
  elif name == "linear":
    decay = optax.linear_schedule(lr, floor, decay_steps)
  elif name == "constant":
    decay = optax.constant_schedule(lr)
  else:
    raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
  return optax.join_schedules([warm, decay], [warmup])


def decay_mask(params):
  """Weight decay applies to matrices (kernels, embeddings), not to biases or LayerNorm."""
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(train_cfg, model_dim=None, decay_mask_fn=None):
  """Global-norm clipping followed by AdamW; returns (optimizer, schedule).

  `decay_mask_fn(params)` names the leaves weight decay shrinks (None: `decay_mask`, the
  matrices); a model whose matrices are weight-normalised decays its gains instead
  (lineage.models.mlstm.decay_mask).

  `train_cfg.mu_dtype` ("bfloat16") keeps Adam's first moment in that dtype, saving a
  quarter of the optimizer's memory. The second moment stays in the parameters' dtype:
  optax offers no dtype for it, and its square root scales every update.
  """
  schedule = make_schedule(train_cfg, model_dim)
  tx = optax.chain(
      optax.clip_by_global_norm(train_cfg.grad_clip) if train_cfg.grad_clip else optax.identity(),
      optax.adamw(schedule, b1=train_cfg.b1, b2=train_cfg.b2, eps=train_cfg.eps,
                  weight_decay=train_cfg.weight_decay, mask=decay_mask_fn or decay_mask,
                  mu_dtype=train_cfg.get("mu_dtype") or None),
  )
  return tx, schedule
