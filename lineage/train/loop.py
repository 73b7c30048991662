"""The training loop: logging, evaluation, checkpointing, resume and the NaN guard.

It is generic over the loss function, so every milestone (an RNN carrying state
across chunks, an encoder-decoder, a classifier, PPO) trains through it. What a
milestone supplies is a `Task`; what the loop guarantees is that rerunning the
same command on the same workdir continues from the latest checkpoint and ends
with the same parameters, bit for bit, as an uninterrupted run.
"""

import dataclasses
import json
import os
import time
from typing import Any, Callable, Iterable, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from lineage.train import checkpoint as ckpt_lib
from lineage.train import metrics as metrics_lib
from lineage.train import optim, sharding, step as step_lib
from lineage.train import weights


class NonFiniteLossError(FloatingPointError):
  pass


@dataclasses.dataclass
class Task:
  """What a milestone hands the loop.

  init_params(rng) -> params with nn.Partitioned leaves (their logical axes).
  loss_fn: see lineage.train.step.
  train_data: an iterator of numpy batch dicts with get_state() / set_state(state); or, for
    data that depends on the parameters being trained (PPO's rollouts), an object with
    next_batch(params, step) -> batch and the same get_state() / set_state(). The loop hands
    it the current parameters before every step; it samples from them (lineage.decode,
    compiled once) and keeps whatever it needs across steps (a rollout buffer, a KL
    coefficient) in its state, which is checkpointed with the run.
  eval_data: () -> iterable of batches, a fresh pass over the held-out set (the eval loss).
  evaluate(params, step) -> {name: scalar}: metrics that are not a loss (BLEU, pass@k,
    few-shot accuracy, a probe, reward-model accuracy), run every train.eval_every steps and
    at the end, logged as eval_<name> beside the eval loss.
  param_groups: how the optimizer treats each parameter (frozen, learning-rate scale, weight
    decay); see lineage.train.optim.ParamGroups. Default: matrices decay.
  import_params: {kind: import_fn} for `--config.init_from=KIND:PATH`; import_fn(path) ->
    a parameter tree, after checking the source's architecture (lineage.train.weights).
  flops_per_token: model FLOPs per trained token, for MFU; 0 to skip MFU.
  tokens_per_batch: tokens in one global batch, for tokens/s.
  init_carry(batch_size) -> a pytree of arrays with a leading batch dimension: set for a
    stateful loss_fn (see lineage.train.step), e.g. an RNN trained by truncated
    backpropagation. The loop keeps the carry in the train state from step to step,
    shards it like the batch rows and checkpoints it; evaluation threads a fresh one
    through the eval batches in order, so eval_data must yield continuing rows.
  """
  init_params: Callable[[jax.Array], Any]
  loss_fn: Callable
  train_data: Any = None
  eval_data: Optional[Callable[[], Iterable[dict]]] = None
  evaluate: Optional[Callable[[Any, int], dict]] = None
  param_groups: optim.ParamGroups = dataclasses.field(default_factory=optim.ParamGroups)
  import_params: Mapping[str, Callable[[str], Any]] = dataclasses.field(default_factory=dict)
  flops_per_token: float = 0.0
  tokens_per_batch: int = 0
  init_carry: Optional[Callable[[int], Any]] = None


@dataclasses.dataclass
class Trainer:
  """Everything built from a config and a task: mesh, shardings, jitted steps."""
  mesh: Any
  state_shardings: Any
  abstract_state: Any
  init_state: Callable
  train_step: Callable
  eval_step: Callable
  schedule: Callable
  init_carry: Optional[Callable[[int], Any]] = None  # jitted, sharded like the batch rows


def train_state_shardings(tx, boxed_params, mesh, abstract_carry=None):
  """TrainState shardings: parameters by their logical axes, optimizer moments like their
  parameters, counters and the rng replicated, the carry (if any) like the batch rows.
  `mesh` may be an AbstractMesh."""
  param_shardings = sharding.logical_shardings(boxed_params, mesh)
  params = nn.unbox(boxed_params)
  opt_shardings = _like_their_params(jax.eval_shape(tx.init, params), params, param_shardings,
                                     sharding.replicated(mesh))
  carry_shardings = jax.tree.map(lambda _: sharding.batch_sharding(mesh), abstract_carry)
  return step_lib.TrainState(step=sharding.replicated(mesh), params=param_shardings,
                             opt_state=opt_shardings, rng=sharding.replicated(mesh),
                             carry=carry_shardings)


def _like_their_params(opt_state, params, param_shardings, replicated):
  """Shardings of an optimizer state: a leaf whose path ends with a parameter's path and has
  its shape (an Adam moment, in whichever parameter group holds it) is sharded like that
  parameter; counters and the rest are replicated."""
  flat = lambda tree: {tuple(path): leaf
                       for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}
  shapes = {path: leaf.shape for path, leaf in flat(params).items()}
  shardings = flat(param_shardings)

  def leaf_sharding(path, leaf):
    for start in range(len(path)):
      suffix = tuple(path[start:])
      if shapes.get(suffix) == leaf.shape:
        return shardings[suffix]
    return replicated
  return jax.tree_util.tree_map_with_path(leaf_sharding, opt_state)


def build_trainer(cfg, task: Task) -> Trainer:
  mesh = sharding.make_mesh(cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor)
  sharding.check_batch_divisible(cfg.train.batch_size, mesh, cfg.train.micro_batches)
  tx, schedule = optim.make_optimizer(cfg.train, task.param_groups)
  rng = jax.random.PRNGKey(cfg.train.seed)
  stateful = task.init_carry is not None
  batch_size = cfg.train.batch_size
  abstract_carry = jax.eval_shape(lambda: task.init_carry(batch_size)) if stateful else None
  state_shardings = train_state_shardings(tx, jax.eval_shape(task.init_params, rng), mesh,
                                          abstract_carry)
  param_shardings = state_shardings.params

  def init_state(rng):
    params = nn.unbox(task.init_params(rng))
    return step_lib.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                               opt_state=tx.init(params), rng=rng,
                               carry=task.init_carry(batch_size) if stateful else None)

  abstract_state = ckpt_lib.abstract_like(jax.eval_shape(init_state, rng), state_shardings)
  batch_sharding = sharding.batch_sharding(mesh)
  train_step = jax.jit(
      step_lib.make_train_step(task.loss_fn, tx, cfg.train.micro_batches,
                               cfg.debug.nan_at_step, stateful=stateful),
      in_shardings=(state_shardings, batch_sharding), out_shardings=(state_shardings, None),
      donate_argnums=0)
  eval_shardings = (param_shardings, batch_sharding) + ((batch_sharding,) if stateful else ())
  eval_step = jax.jit(step_lib.make_eval_step(task.loss_fn, stateful),
                      in_shardings=eval_shardings)
  init_carry = (jax.jit(task.init_carry, static_argnums=0, out_shardings=batch_sharding)
                if stateful else None)
  return Trainer(mesh=mesh, state_shardings=state_shardings, abstract_state=abstract_state,
                 init_state=jax.jit(init_state, out_shardings=state_shardings),
                 train_step=train_step, eval_step=eval_step, schedule=schedule,
                 init_carry=init_carry)


def device_batch(batch, mesh):
  """This process's rows of the global batch -> one global array sharded over data axes."""
  target = sharding.batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(target, np.asarray(v))
          for k, v in batch.items()}


def evaluate(trainer, params, batches):
  """Mean loss (and aux metrics) over an iterable of batches.

  A stateful task's carry starts fresh and runs through the batches in order: row r of
  each batch continues row r of the one before.
  """
  totals, carry = None, None
  with jax.set_mesh(trainer.mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    for batch in batches:
      batch = device_batch(batch, trainer.mesh)
      if trainer.init_carry is None:
        sums = trainer.eval_step(params, batch)
      else:
        if carry is None:
          carry = trainer.init_carry(_global_rows(batch))
        sums, carry = trainer.eval_step(params, batch, carry)
      totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  if totals is None:
    raise ValueError("the evaluation set yielded no batches; make it larger than one batch")
  return step_lib.finish_eval(totals)


def _global_rows(batch):
  rows = {x.shape[0] for x in jax.tree.leaves(batch)}
  if len(rows) != 1:
    raise ValueError(f"the batch's arrays disagree on the number of rows ({sorted(rows)}); "
                     "every field of a batch needs one row per example")
  return rows.pop()


def restore_or_init(cfg, trainer, checkpoints, task):
  """The latest checkpoint in the workdir, or a freshly initialised state."""
  latest = checkpoints.latest_step()
  if latest is None:
    state = trainer.init_state(jax.random.PRNGKey(cfg.train.seed))
    if cfg.init_from:
      state = state.replace(params=weights.load_params(cfg.init_from, state.params,
                                                       task.import_params))
    return state
  state, data_state = checkpoints.restore(latest, trainer.abstract_state)
  if data_state is not None:
    task.train_data.set_state(_own_data_state(data_state))
  metrics_lib.console(f"resumed from {checkpoints.directory} step {latest}")
  return state


def _all_data_states(train_data):
  """Every process's iterator state: the checkpoint's JSON is written by process 0 alone.

  One process saves its state as is; with several, {"processes": [state_0, ...]}.
  """
  state = train_data.get_state()
  if jax.process_count() == 1:
    return state
  encoded = np.frombuffer(json.dumps(state).encode(), np.uint8)
  lengths = multihost_utils.process_allgather(np.int32(len(encoded)))
  padded = np.zeros(int(lengths.max()), np.uint8)
  padded[:len(encoded)] = encoded
  gathered = multihost_utils.process_allgather(padded)
  return {"processes": [json.loads(row[:n].tobytes()) for row, n in zip(gathered, lengths)]}


def _own_data_state(saved):
  """This process's part of what `_all_data_states` saved."""
  if "processes" not in saved:
    if jax.process_count() > 1:
      raise ValueError("the checkpoint holds one process's data state; resume with the process "
                       "count it was written with")
    return saved
  if len(saved["processes"]) != jax.process_count():
    raise ValueError(f"the checkpoint holds the data states of {len(saved['processes'])} "
                     f"processes, but this run has {jax.process_count()}; resume with as many")
  return saved["processes"][jax.process_index()]


def write_config(cfg, workdir):
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(cfg.to_json_best_effort(indent=2, sort_keys=True))


def next_batch(task, params, step):
  """The next host batch: from the iterator, or made from the current parameters."""
  if hasattr(task.train_data, "next_batch"):
    return task.train_data.next_batch(params, step)
  return next(task.train_data)


def check_finite(loss, step, checkpoints, last_saved):
  """The NaN guard: a non-finite loss stops training, keeping the last good checkpoint."""
  if np.isfinite(loss):
    return
  checkpoints.wait()
  raise NonFiniteLossError(
      f"loss is {loss} at step {step}; training stopped. The last good checkpoint "
      f"is step {last_saved} in {checkpoints.directory} (rerun to resume from it). "
      "Try a lower --config.train.lr, a smaller --config.train.grad_clip, or fp32.")


def run_evaluation(trainer, task, params, step):
  """The held-out loss (if the task has eval data) and the task's evaluation hook, as
  {"eval_<name>": value}."""
  result = {}
  if task.eval_data:
    result.update({f"eval_{k}": v for k, v in evaluate(trainer, params, task.eval_data()).items()})
  if task.evaluate:
    extra = {f"eval_{k}": float(v) for k, v in task.evaluate(params, step).items()}
    clash = sorted(set(extra) & set(result))
    if clash:
      raise ValueError(f"the task's evaluate hook returns {clash}, which the eval loss already "
                       "reports; rename them")
    result.update(extra)
  return result


def _eval_line(step, total, result):
  return f"step {step}/{total}  " + "  ".join(
      f"{k.replace('_', ' ', 1)} {v:.4f}" for k, v in result.items())


def train(cfg, workdir, task: Task):
  """Trains to `cfg.train.steps`, resuming from `workdir` if it holds checkpoints.

  Returns (state, summary); the summary is also written to `workdir/summary.json`.
  """
  os.makedirs(workdir, exist_ok=True)
  is_main = jax.process_index() == 0
  trainer = build_trainer(cfg, task)
  checkpoints = ckpt_lib.Checkpoints(os.path.join(workdir, "checkpoints"),
                                     max_to_keep=cfg.train.keep_checkpoints)
  state = restore_or_init(cfg, trainer, checkpoints, task)
  if is_main:
    write_config(cfg, workdir)
  first_step = int(state.step)
  writer = metrics_lib.MetricWriter(workdir, enabled=is_main, resume_step=first_step)
  peak = metrics_lib.peak_flops_per_device(cfg.peak_flops)
  total = cfg.train.steps
  evaluates = bool(task.eval_data or task.evaluate)
  eval_result = {}
  window_start, window_tokens = time.perf_counter(), 0
  run_start = time.perf_counter()
  last_saved = checkpoints.latest_step()

  try:
    with jax.set_mesh(trainer.mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
      for step in range(first_step + 1, total + 1):
        batch = device_batch(next_batch(task, state.params, step), trainer.mesh)
        state, metrics = trainer.train_step(state, batch)
        loss = float(metrics["loss"])
        check_finite(loss, step, checkpoints, last_saved)
        window_tokens += task.tokens_per_batch
        if step % cfg.train.log_every == 0 or step == total:
          elapsed = time.perf_counter() - window_start
          tokens_per_sec = window_tokens / elapsed
          record = {k: float(v) for k, v in metrics.items()}
          record.update(lr=float(trainer.schedule(step - 1)), tokens_per_sec=tokens_per_sec,
                        mfu=metrics_lib.mfu(tokens_per_sec, task.flops_per_token, peak,
                                            jax.device_count()))
          writer.write(step, record)
          eta = (time.perf_counter() - run_start) / (step - first_step) * (total - step)
          metrics_lib.console(
              f"step {step}/{total}  loss {loss:.4f}  {tokens_per_sec:,.0f} tok/s  "
              f"MFU {100 * record['mfu']:.1f}%  ETA {metrics_lib.format_duration(eta)}")
          window_start, window_tokens = time.perf_counter(), 0
        if evaluates and (step % cfg.train.eval_every == 0 or step == total):
          eval_result = run_evaluation(trainer, task, state.params, step)
          writer.write(step, eval_result)
          metrics_lib.console(_eval_line(step, total, eval_result))
          window_start = time.perf_counter()
        if step % cfg.train.checkpoint_every == 0 or step == total:
          checkpoints.save(step, state, _all_data_states(task.train_data))
          last_saved = step
  finally:
    checkpoints.close()
    writer.close()

  if evaluates and first_step >= total:
    # A rerun of a finished run trains nothing; evaluate so its summary keeps the eval results.
    with jax.set_mesh(trainer.mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
      eval_result = run_evaluation(trainer, task, state.params, total)
  summary = {"steps": total, "final_train_loss": _last_train_loss(workdir), **eval_result}
  if is_main:
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f, indent=2)
  return state, summary


def _last_train_loss(workdir):
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return None
  losses = [r["loss"] for r in metrics_lib.read_metrics(workdir) if "loss" in r]
  return losses[-1] if losses else None
