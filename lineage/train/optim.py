"""AdamW over parameter groups, global-norm clipping, and the papers' schedules.

A milestone says how its parameters are treated through `ParamGroups`: a function
that labels every leaf with a group name, and per group a learning-rate scale, a
weight decay, or `frozen`. The default decays matrices (kernels, embeddings) and
nothing else. Fine-tuning a new head at ten times the rate, freezing a trunk, or
decaying an mLSTM's weight-norm gains are each a different `ParamGroups`, not a
different loop.
"""

import dataclasses
from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp
import optax

SCHEDULES = ("cosine", "linear", "noam", "constant")


def make_schedule(train_cfg):
  """Learning rate as a function of the step.

  cosine:   linear warmup to `lr`, then cosine decay to `lr * min_lr_ratio` at `steps`
            (GPT-2/3, nanoGPT).
  linear:   linear warmup, then linear decay to `lr * min_lr_ratio` (GPT-1, the 2017 mLSTM).
  noam:     `lr * min(step**-0.5, step * warmup**-1.5)` (Vaswani et al. 2017, whose `lr` is
            d_model**-0.5: a config sets it from its model width).
  constant: linear warmup, then flat.
  An optional `decay_steps` ends the cosine or linear decay there instead of at `steps`,
  and the rate stays at the floor after it (GPT-3: decay over 260B of its 300B tokens).
  """
  lr, warmup, steps = train_cfg.lr, train_cfg.warmup_steps, train_cfg.steps
  floor = lr * train_cfg.min_lr_ratio
  name = train_cfg.schedule
  if name == "noam":
    warmup = max(warmup, 1)

    def noam(step):
      step = jnp.maximum(step, 1).astype(jnp.float32)
      return lr * jnp.minimum(step ** -0.5, step * warmup ** -1.5)
    return noam
  warm = optax.linear_schedule(0.0, lr, warmup) if warmup else optax.constant_schedule(lr)
  decay_steps = max((getattr(train_cfg, "decay_steps", 0) or steps) - warmup, 1)
  if name == "cosine":
    decay = optax.cosine_decay_schedule(lr, decay_steps, alpha=floor / lr if lr else 0.0)
  elif name == "linear":
    decay = optax.linear_schedule(lr, floor, decay_steps)
  elif name == "constant":
    decay = optax.constant_schedule(lr)
  else:
    raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
  return optax.join_schedules([warm, decay], [warmup])


@dataclasses.dataclass(frozen=True)
class ParamGroup:
  """How the optimizer treats one group of parameters.

  lr_scale multiplies the schedule (a freshly initialised head often trains faster);
  weight_decay None takes train.weight_decay; frozen parameters get no update, their
  gradients do not count towards the clipping norm, and they hold no Adam moments.
  """
  lr_scale: float = 1.0
  weight_decay: Optional[float] = None
  frozen: bool = False


def matrices_decay(params):
  """The default labels: "decay" for matrices (kernels, embeddings), "no_decay" for biases
  and LayerNorm parameters."""
  return jax.tree.map(lambda p: "decay" if p.ndim >= 2 else "no_decay", params)


@dataclasses.dataclass(frozen=True)
class ParamGroups:
  """label(params) -> a pytree of group names, one per leaf; groups: name -> ParamGroup."""
  label: Callable[[Any], Any] = matrices_decay
  groups: Mapping[str, ParamGroup] = dataclasses.field(default_factory=lambda: {
      "decay": ParamGroup(), "no_decay": ParamGroup(weight_decay=0.0)})

  @classmethod
  def from_decay_mask(cls, mask_fn):
    """Groups "decay" / "no_decay" from a function returning a pytree of bools."""
    return cls(label=lambda params: jax.tree.map(lambda d: "decay" if d else "no_decay",
                                                 mask_fn(params)))

  def labels(self, params):
    """The label tree, checked: every label names a group."""
    labels = self.label(params)
    unknown = sorted(set(jax.tree.leaves(labels)) - set(self.groups))
    if unknown:
      raise ValueError(f"parameters are labelled {unknown}, which are not among the groups "
                       f"{sorted(self.groups)}; add a ParamGroup for each label")
    return labels

  def frozen_mask(self, params):
    return jax.tree.map(lambda name: self.groups[name].frozen, self.labels(params))


def make_optimizer(train_cfg, param_groups: Optional[ParamGroups] = None):
  """Frozen groups zeroed, global-norm clipping, then AdamW per group; returns
  (optimizer, schedule).

  `train_cfg.mu_dtype` ("bfloat16") keeps Adam's first moment in that dtype, saving a
  quarter of the optimizer's memory. The second moment stays in the parameters' dtype:
  optax offers no dtype for it, and its square root scales every update.
  """
  groups = param_groups or ParamGroups()
  schedule = make_schedule(train_cfg)

  def group_optimizer(group):
    if group.frozen:
      return optax.set_to_zero()
    rate = schedule if group.lr_scale == 1.0 else (lambda step: group.lr_scale * schedule(step))
    decay = train_cfg.weight_decay if group.weight_decay is None else group.weight_decay
    return optax.adamw(rate, b1=train_cfg.b1, b2=train_cfg.b2, eps=train_cfg.eps,
                       weight_decay=decay, mu_dtype=train_cfg.mu_dtype or None)

  any_frozen = any(g.frozen for g in groups.groups.values())
  tx = optax.chain(
      optax.masked(optax.set_to_zero(), groups.frozen_mask) if any_frozen else optax.identity(),
      optax.clip_by_global_norm(train_cfg.grad_clip) if train_cfg.grad_clip else optax.identity(),
      optax.multi_transform({name: group_optimizer(g) for name, g in groups.groups.items()},
                            groups.labels),
  )
  return tx, schedule
