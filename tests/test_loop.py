"""The training loop: through the gpt2 binary (a killed run resumes bit for bit, learning, what
a run writes: slow), and in process: the NaN guard, mismatched checkpoints, a stateful task
(truncated BPTT), the evaluation hook, parameter groups and data made from the parameters."""

import dataclasses
import hashlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from jax.sharding import PartitionSpec as P

from configs import common
from configs import gpt2 as gpt2_config
from lineage.data import byte_streams
from lineage.milestones.gpt1 import pretrain
from lineage.milestones.gpt2 import task as gpt2_task
from lineage.train import checkpoint as ckpt_lib
from lineage.train import loop, optim, sharding

REPO = pathlib.Path(__file__).resolve().parent.parent
# A 2-layer model on a short corpus: a step takes milliseconds, start-up dominates.
SMALL = ["--config.model.num_layers=2", "--config.model.embed_dim=64",
         "--config.model.mlp_dim=256", "--config.model.context=32", "--config.data.seq_len=32",
         "--config.train.batch_size=8", "--config.data.num_docs=300"]


def _env():
  """The binary on one CPU device, as a user runs it (conftest forces 8 for this process)."""
  flags = os.environ.get("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count=8", "")
  return {**os.environ, "XLA_FLAGS": flags.strip()}


def _command(workdir, *overrides):
  return [sys.executable, "-m", "experiments.gpt2", "--config=configs/gpt2.py:tiny",
          f"--workdir={workdir}", *overrides]


def _run(workdir, *overrides):
  return subprocess.run(_command(workdir, *overrides), cwd=REPO, env=_env(), capture_output=True,
                        text=True, timeout=600)


def _check_ok(result):
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def _steps(workdir):
  return ocp.CheckpointManager(os.path.join(workdir, "checkpoints")).all_steps()


def _restore(workdir, step):
  manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))
  state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
  manager.close()
  return jax.tree_util.tree_flatten_with_path(jax.device_get(state))[0]


def _snapshot(directory):
  """{relative path: sha256} of every file under `directory`."""
  return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(pathlib.Path(directory).rglob("*")) if p.is_file()}


def _logged_steps(workdir):
  path = pathlib.Path(workdir) / "metrics.jsonl"
  if not path.exists():
    return []
  return [json.loads(line)["step"] for line in path.read_text().splitlines()
          if line.endswith("}")]


@pytest.mark.slow
def test_killed_run_resumes_bit_for_bit(tmp_path):
  # The tiny preset's own model, slow enough (tens of ms a step) to be killed mid-run.
  overrides = ["--config.train.steps=20", "--config.train.checkpoint_every=5",
               "--config.train.log_every=1", "--config.data.num_docs=300"]
  reference, resumed = tmp_path / "reference", tmp_path / "resumed"
  _check_ok(_run(reference, *overrides))

  process = subprocess.Popen(_command(resumed, *overrides), cwd=REPO, env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.monotonic() + 300
  while max(_logged_steps(resumed), default=0) < 12:
    assert process.poll() is None, "the run ended before it logged step 12"
    assert time.monotonic() < deadline, "the run never logged step 12"
    time.sleep(0.005)
  process.send_signal(signal.SIGKILL)
  assert process.wait() == -signal.SIGKILL
  assert 20 not in _steps(resumed), "the kill came too late to interrupt the run"

  result = _run(resumed, *overrides)
  _check_ok(result)
  assert "resumed from" in result.stdout
  train_steps = [json.loads(line)["step"] for line in
                 (resumed / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
  assert train_steps == list(range(1, 21)), "each step is logged once after resume"
  expected, actual = _restore(reference, 20), _restore(resumed, 20)
  assert [path for path, _ in actual] == [path for path, _ in expected]
  for (path, a), (_, b) in zip(actual, expected):
    assert np.array_equal(a, b), jax.tree_util.keystr(path)


def _small_gpt(**train):
  """A 2-layer GPT-2 on a short corpus: a step takes milliseconds."""
  cfg = gpt2_config.get_config("tiny")
  cfg.model.update(num_layers=2, embed_dim=64, mlp_dim=256, context=32)
  cfg.data.update(seq_len=32, num_docs=300)
  cfg.train.update(batch_size=8, log_every=1, **train)
  return cfg


def _train_small(workdir, cfg):
  return loop.train(cfg, str(workdir), gpt2_task.build(cfg).task)


@pytest.mark.slow
def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
  cfg = _small_gpt(steps=10, checkpoint_every=5)
  cfg.debug.nan_at_step = 7
  with pytest.raises(loop.NonFiniteLossError, match="at step 7.*last good checkpoint is step 5"):
    _train_small(tmp_path, cfg)
  assert _steps(tmp_path) == [5]
  assert max(_logged_steps(tmp_path)) == 6  # the NaN step is never logged as a result
  state = dict((jax.tree_util.keystr(p), v) for p, v in _restore(tmp_path, 5))
  assert int(state["['step']"]) == 5
  assert all(np.isfinite(v).all() for v in state.values() if v.dtype.kind == "f")

  cfg.debug.nan_at_step = -1
  _train_small(tmp_path, cfg)
  assert max(_steps(tmp_path)) == 10
  assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 10


@pytest.mark.slow
def test_checkpoint_of_another_shape_is_refused_and_left_alone(tmp_path):
  _train_small(tmp_path, _small_gpt(steps=2, checkpoint_every=1))
  before = _snapshot(tmp_path)
  assert any(name.startswith("checkpoints/2/") for name in before)
  other = _small_gpt(steps=4)
  other.model.update(embed_dim=32, mlp_dim=128)
  with pytest.raises(ckpt_lib.CheckpointMismatchError) as error:
    _train_small(tmp_path, other)
  message = str(error.value)
  assert "does not fit this model" in message
  assert "wte/embedding: checkpoint [257, 64] vs model [257, 32]" in message
  assert "h_0/mlp/c_fc/kernel: checkpoint [64, 256] vs model [32, 128]" in message
  assert _snapshot(tmp_path) == before


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  """The tiny preset exactly as documented: 300 steps on the embedded corpus."""
  workdir = tmp_path_factory.mktemp("gpt2_tiny")
  _check_ok(_run(workdir))
  return workdir


@pytest.mark.slow
def test_tiny_preset_learns_far_below_the_unigram_entropy(tiny_run):
  entropy = pretrain.train_unigram_entropy(gpt2_task.build(gpt2_config.get_config("tiny")))
  summary = json.loads((tiny_run / "summary.json").read_text())
  assert summary["steps"] == 300
  assert summary["eval_loss"] < 0.5 * entropy, (summary, entropy)


@pytest.mark.slow
def test_run_writes_metrics_config_summary_and_events(tiny_run):
  records = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
  train = [r for r in records if "loss" in r]
  assert [r["step"] for r in train] == list(range(25, 301, 25))
  for record in train:
    assert {"step", "loss", "lr", "tokens_per_sec", "mfu"} <= set(record)
    assert record["tokens_per_sec"] > 0 and 0 < record["mfu"] < 1
  assert train[-1]["lr"] == pytest.approx(3e-4, rel=1e-3)  # cosine floor: lr * min_lr_ratio
  assert [r["step"] for r in records if "eval_loss" in r] == [100, 200, 300]

  config = json.loads((tiny_run / "config.json").read_text())
  assert config["train"]["steps"] == 300 and config["model"]["embed_dim"] == 128
  summary = json.loads((tiny_run / "summary.json").read_text())
  assert summary["final_train_loss"] == train[-1]["loss"]
  events = list((tiny_run / "tb").glob("events.out.tfevents.*"))
  assert events and events[0].stat().st_size > 0


@pytest.mark.slow
def test_rerun_of_a_finished_run_changes_nothing(tiny_run):
  # TensorBoard starts a new (empty) events file per process; everything else must stay.
  results = lambda: {k: v for k, v in _snapshot(tiny_run).items() if not k.startswith("tb/")}
  before = results()
  result = _run(tiny_run)
  _check_ok(result)
  assert "resumed from" in result.stdout and "step 300" in result.stdout
  assert results() == before


# Truncated BPTT: a stateful task (a toy byte RNN carrying its state across chunks) through
# the loop on 8 CPU devices, against a plain one-device computation of the same equations.

RNN_HIDDEN, RNN_SEQ, RNN_BATCH = 8, 8, 16
RNN_DOCS = [f"\n review {i}: {'great ' * (i % 4)}{'awful ' * (i % 3)}done. ".encode()
            for i in range(80)]


def _rnn_init_params(rng):
  embed, recur, out = jax.random.normal(rng, (3, 256, RNN_HIDDEN))
  return {"embed": 0.5 * embed, "recur": 0.5 * recur[:RNN_HIDDEN],
          "out": 0.3 * out.T, "bias": jnp.zeros(256)}


def _rnn_init_carry(batch_size):
  """h, and an int32 count of bytes read per row: a carry is any pytree of row-major arrays."""
  return {"h": jnp.zeros((batch_size, RNN_HIDDEN)),
          "bytes_read": jnp.zeros(batch_size, jnp.int32)}


def _rnn_run(params, inputs, h):
  """Hidden states [b, t, hidden] of h' = tanh(embed[x] + h recur), and the last one."""
  def cell(h, x):
    h = jnp.tanh(params["embed"][x] + h @ params["recur"])
    return h, h
  h, hs = jax.lax.scan(cell, h, inputs.T)
  return jnp.swapaxes(hs, 0, 1), h


def _rnn_loss_fn(params, batch, rng, deterministic, carry):
  hs, h = _rnn_run(params, batch["inputs"], carry["h"])
  logits = hs @ params["out"] + params["bias"]
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
  new_carry = {"h": h, "bytes_read": carry["bytes_read"] + batch["inputs"].shape[1]}
  return losses.sum(), ({"weight": jnp.float32(losses.size)}, new_carry)


def _rnn_config(**train):
  cfg = common.get_config()
  cfg.peak_flops = 1.0
  cfg.train.update(steps=6, batch_size=RNN_BATCH, lr=0.05, schedule="constant", b2=0.99,
                   eps=1e-3, grad_clip=0.0, log_every=1, eval_every=1000, checkpoint_every=3,
                   keep_checkpoints=10)
  cfg.train.update(train)
  return cfg


class _Crash(Exception):
  pass


class _CrashingStreams(byte_streams.ByteStreams):
  """Dies on its `crash_at`-th batch, like a run killed mid-way."""

  def __init__(self, crash_at, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.crash_at = crash_at

  def __next__(self):
    if self.step + 1 == self.crash_at:
      raise _Crash(f"killed at batch {self.crash_at}")
    return super().__next__()


def _rnn_task(train_data):
  return loop.Task(init_params=_rnn_init_params, loss_fn=_rnn_loss_fn, train_data=train_data,
                   tokens_per_batch=RNN_BATCH * RNN_SEQ, init_carry=_rnn_init_carry)


def _streams(cls=byte_streams.ByteStreams, *args):
  return cls(*args, RNN_DOCS, RNN_BATCH, RNN_SEQ, seed=5)


def _checkpoint(workdir, step):
  checkpoints = ckpt_lib.Checkpoints(os.path.join(workdir, "checkpoints"))
  abstract = loop.build_trainer(_rnn_config(), _rnn_task(None)).abstract_state
  state, data_state = checkpoints.restore(step, abstract)
  checkpoints.close()
  return jax.device_get(state), data_state


@pytest.fixture(scope="module")
def rnn_run(tmp_path_factory):
  """Six steps of the toy RNN through loop.train on 8 devices, uninterrupted."""
  assert jax.device_count() == 8, "conftest forces 8 CPU devices"
  workdir = tmp_path_factory.mktemp("rnn")
  state, _ = loop.train(_rnn_config(), str(workdir), _rnn_task(_streams()))
  return workdir, state


def test_carry_crosses_steps_as_truncated_bptt_on_8_devices_as_on_one(rnn_run):
  cfg = _rnn_config()
  tx, _ = optim.make_optimizer(cfg.train)
  params = _rnn_init_params(jax.random.PRNGKey(cfg.train.seed))
  opt_state, carry = tx.init(params), _rnn_init_carry(RNN_BATCH)

  @jax.jit
  def manual_step(params, opt_state, batch, carry):
    # The previous chunk's state enters as a constant: no gradient flows across the boundary.
    carry = jax.lax.stop_gradient(carry)
    chunk_loss = lambda p: _rnn_loss_fn(p, batch, None, False, carry)
    (loss_sum, (aux, new_carry)), grads = jax.value_and_grad(chunk_loss, has_aux=True)(params)
    grads = jax.tree.map(lambda g: g / aux["weight"], grads)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, new_carry

  data = _streams()
  for _ in range(cfg.train.steps):
    params, opt_state, carry = manual_step(params, opt_state, next(data), carry)

  state = jax.device_get(rnn_run[1])
  assert int(state.step) == 6
  np.testing.assert_array_equal(state.carry["bytes_read"], np.full(RNN_BATCH, 6 * RNN_SEQ))
  np.testing.assert_allclose(state.carry["h"], carry["h"], rtol=1e-5, atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               state.params, jax.device_get(params))
  moved = jax.tree.map(lambda new, old: np.abs(new - old).max(), state.params,
                       _rnn_init_params(jax.random.PRNGKey(cfg.train.seed)))
  assert min(jax.tree.leaves(moved)) > 1e-3


def test_carry_is_sharded_like_the_batch_rows(rnn_run):
  state = rnn_run[1]
  for leaf in jax.tree.leaves(state.carry):
    assert leaf.sharding.spec == P(("data", "fsdp"))
    assert {s.data.shape[0] for s in leaf.addressable_shards} == {RNN_BATCH // 8}
  assert [str(p[0]) for p, _ in jax.tree_util.tree_flatten_with_path(state)[0]][-2:] == [
      ".carry", ".carry"]


def test_interrupted_stateful_run_resumes_bit_for_bit(rnn_run, tmp_path):
  with pytest.raises(_Crash):
    loop.train(_rnn_config(), str(tmp_path), _rnn_task(_streams(_CrashingStreams, 5)))
  assert _steps(tmp_path) == [3]
  loop.train(_rnn_config(), str(tmp_path), _rnn_task(_streams()))
  (expected, expected_data), (actual, actual_data) = (_checkpoint(rnn_run[0], 6),
                                                      _checkpoint(tmp_path, 6))
  assert actual_data == expected_data == {"step": 6}
  flat_expected = jax.tree_util.tree_flatten_with_path(expected)[0]
  flat_actual = jax.tree_util.tree_flatten_with_path(actual)[0]
  assert [p for p, _ in flat_actual] == [p for p, _ in flat_expected]
  for (path, a), (_, b) in zip(flat_actual, flat_expected):
    assert np.array_equal(a, b), jax.tree_util.keystr(path)


def test_two_micro_batches_split_the_carry_by_rows_and_match_one(rnn_run, tmp_path):
  state, _ = loop.train(_rnn_config(micro_batches=2), str(tmp_path), _rnn_task(_streams()))
  expected = jax.device_get(rnn_run[1])
  np.testing.assert_allclose(jax.device_get(state.carry["h"]), expected.carry["h"], rtol=1e-5,
                             atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               jax.device_get(state.params), expected.params)


def test_evaluation_threads_a_fresh_carry_through_the_batches(rnn_run):
  params = rnn_run[1].params
  trainer = loop.build_trainer(_rnn_config(), _rnn_task(None))
  batches = byte_streams.eval_streams(RNN_DOCS, RNN_BATCH, RNN_SEQ, max_batches=5)
  result = loop.evaluate(trainer, params, batches)
  # The same rows read in one go, from a fresh state: what carrying across chunks must give.
  inputs = np.concatenate([b["inputs"] for b in batches], axis=1)
  targets = np.concatenate([b["targets"] for b in batches], axis=1)
  hs, _ = _rnn_run(params, inputs, jnp.zeros((RNN_BATCH, RNN_HIDDEN)))
  logits = hs @ params["out"] + params["bias"]
  expected = optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()
  np.testing.assert_allclose(result["loss"], expected, rtol=1e-5)
  # Restarting the state at every chunk would give another loss: the test sees the carry.
  fresh = np.mean([loop.evaluate(trainer, params, [b])["loss"] for b in batches])
  assert abs(fresh - float(expected)) > 1e-3


@pytest.mark.slow
def test_weight_decay_follows_the_tasks_param_groups():
  """Decay is the only difference between two trainers, and it hits the leaves the task names."""
  decay_recur = optim.ParamGroups.from_decay_mask(lambda params: {k: k == "recur" for k in params})
  lr, decay = 0.05, 0.5
  stepped = []
  for groups, weight_decay in ((decay_recur, decay), (decay_recur, 0.0),
                               (optim.ParamGroups(), decay)):
    task = dataclasses.replace(_rnn_task(None), param_groups=groups)
    trainer = loop.build_trainer(_rnn_config(lr=lr, weight_decay=weight_decay), task)
    with jax.set_mesh(trainer.mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
      state = trainer.init_state(jax.random.PRNGKey(0))
      init = jax.device_get(state.params)
      batch = loop.device_batch(next(_streams()), trainer.mesh)
      stepped.append(jax.device_get(trainer.train_step(state, batch)[0].params))
  masked, undecayed, default = stepped
  for name in init:
    shrink = lr * decay * init[name] if name == "recur" else 0.0
    np.testing.assert_allclose(undecayed[name] - masked[name], shrink, atol=1e-6, err_msg=name)
  # By default matrices decay (optim.matrices_decay): the bias is left alone.
  np.testing.assert_allclose(default["bias"], undecayed["bias"], atol=1e-7)


def test_frozen_group_is_unchanged_after_training(tmp_path):
  frozen_embed = optim.ParamGroups(
      label=lambda params: {k: "frozen" if k == "embed" else "train" for k in params},
      groups={"frozen": optim.ParamGroup(frozen=True), "train": optim.ParamGroup()})
  task = dataclasses.replace(_rnn_task(_streams()), param_groups=frozen_embed)
  state, _ = loop.train(_rnn_config(), str(tmp_path), task)
  init = _rnn_init_params(jax.random.PRNGKey(0))
  trained = jax.device_get(state.params)
  np.testing.assert_array_equal(trained["embed"], init["embed"])
  assert np.abs(trained["recur"] - init["recur"]).max() > 1e-3


def test_evaluation_hook_is_logged_and_summarised(tmp_path):
  """The task's evaluate(params, step) runs at eval_every and at the end, beside the eval loss."""
  calls = []

  def evaluate(params, step):
    calls.append(step)
    return {"recur_norm": float(jnp.linalg.norm(params["recur"])), "step_seen": step}

  task = dataclasses.replace(_rnn_task(_streams()), evaluate=evaluate)
  state, summary = loop.train(_rnn_config(eval_every=2), str(tmp_path), task)
  assert calls == [2, 4, 6]
  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  hooked = [r for r in records if "eval_recur_norm" in r]
  assert [(r["step"], r["eval_step_seen"]) for r in hooked] == [(2, 2), (4, 4), (6, 6)]
  final_norm = float(jnp.linalg.norm(jax.device_get(state.params)["recur"]))
  assert hooked[-1]["eval_recur_norm"] == pytest.approx(final_norm, rel=1e-6)
  assert summary["eval_recur_norm"] == pytest.approx(final_norm, rel=1e-6)
  assert json.loads((tmp_path / "summary.json").read_text())["eval_step_seen"] == 6


class _GreedyRollouts:
  """Data made from the parameters being trained, as PPO's rollouts are: each batch is the
  toy RNN's own greedy continuation of a fixed prompt under the current parameters."""

  def __init__(self):
    self.made, self.seen = 0, []

  def next_batch(self, params, step):
    self.seen.append((step, np.asarray(jax.device_get(params["out"])).sum()))
    tokens = np.zeros((RNN_BATCH, RNN_SEQ + 1), np.int32)
    tokens[:, 0] = np.arange(RNN_BATCH) + 97
    h = np.zeros((RNN_BATCH, RNN_HIDDEN), np.float32)
    p = jax.device_get(params)
    for t in range(RNN_SEQ):
      h = np.tanh(p["embed"][tokens[:, t]] + h @ p["recur"])
      tokens[:, t + 1] = (h @ p["out"] + p["bias"]).argmax(-1)
    self.made += 1
    return {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}

  def get_state(self):
    return {"made": self.made}

  def set_state(self, state):
    self.made = state["made"]


@pytest.mark.slow
def test_data_made_from_the_current_parameters(tmp_path):
  """Task.train_data with next_batch(params, step): the loop hands it each step's parameters
  (checkpointing, metrics and the NaN guard unchanged), and its state resumes."""
  rollouts = _GreedyRollouts()
  loop.train(_rnn_config(steps=4, checkpoint_every=2), str(tmp_path), _rnn_task(rollouts))
  assert [step for step, _ in rollouts.seen] == [1, 2, 3, 4]
  sums = [total for _, total in rollouts.seen]
  assert len(set(sums)) == 4, "each batch was made with the parameters of its step"
  resumed = _GreedyRollouts()
  loop.train(_rnn_config(steps=6, checkpoint_every=2), str(tmp_path), _rnn_task(resumed))
  assert [step for step, _ in resumed.seen] == [5, 6] and resumed.made == 6


def test_resuming_with_other_param_groups_is_a_clear_error(tmp_path):
  """An optimizer state of another structure cannot resume; the error says how to start from
  the checkpoint's parameters instead, and the checkpoint is left alone."""
  loop.train(_rnn_config(steps=3), str(tmp_path), _rnn_task(_streams()))
  before = _snapshot(tmp_path / "checkpoints")
  frozen = optim.ParamGroups(label=lambda params: {k: "frozen" for k in params},
                             groups={"frozen": optim.ParamGroup(frozen=True)})
  task = dataclasses.replace(_rnn_task(_streams()), param_groups=frozen)
  with pytest.raises(ckpt_lib.CheckpointMismatchError,
                     match=f"optimizer state of another structure.*init_from={tmp_path}@3"):
    loop.train(_rnn_config(steps=6), str(tmp_path), task)
  assert _snapshot(tmp_path / "checkpoints") == before
