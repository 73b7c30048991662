"""Training memory: per-device figures for the paper presets against hand calculation, and
mixed precision (bf16 compute, bf16 first moment) against fp32."""

import json
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import gpt2 as gpt2_config
from lineage.milestones.gpt1 import pretrain
from lineage.milestones.gpt2 import task as gpt2_task
from lineage.models import gpt
from lineage.train import loop, memory, metrics

TRAIN = gpt2_config.get_config("117m").train


def _hand_params(cfg, fsdp, tensor):
  """Parameter count per device: every matrix splits its width over fsdp and its heads, MLP
  units or vocabulary over tensor (a vocabulary tensor does not divide stays whole); a bias
  splits like its output axis; LayerNorms are replicated."""
  d, a, m, v = cfg.embed_dim, cfg.num_heads * cfg.head_dim, cfg.mlp_dim, cfg.vocab_size
  vocab_split = tensor if v % tensor == 0 else 1
  embeddings = v * d / (fsdp * vocab_split) + cfg.context * d / fsdp
  matrices = (4 * d * a + 2 * d * m) / (fsdp * tensor)
  biases = (3 * a + m) / tensor + 2 * d / fsdp
  norms = 2 * 2 * d
  return embeddings + cfg.num_layers * (matrices + biases + norms) + 2 * d  # + ln_f


@pytest.mark.parametrize("preset, count", [
    ("gpt2_117m", 124e6), ("gpt2_345m", 355e6),
    pytest.param("gpt2_762m", 774e6, marks=pytest.mark.slow), ("gpt2_1542m", 1558e6),
    pytest.param("gpt3_175b", 175e9, marks=pytest.mark.slow)])  # the same sums, larger
@pytest.mark.parametrize("data, fsdp, tensor", [(1, 1, 1), (8, 1, 1), (1, 8, 1), (2, 4, 2),
                                                (1, 64, 8)])
def test_params_and_adam_moments_per_device_match_hand_calculation(preset, count, data, fsdp,
                                                                   tensor):
  cfg = gpt.PRESETS[preset]
  result = memory.analyse(gpt2_task.gpt_task(cfg), TRAIN, cfg.context, data, fsdp, tensor)
  assert result.num_params == pytest.approx(count, rel=0.01)  # the papers' (HF's) counts
  expected = 4 * _hand_params(cfg, fsdp, tensor)  # fp32
  assert result.params == pytest.approx(expected, rel=0.05)
  assert result.optimizer == pytest.approx(2 * expected, rel=0.05)  # AdamW's mu and nu, fp32
  if data * fsdp * tensor == 1:
    assert result.params == 4 * result.num_params


def test_bf16_first_moment_saves_a_quarter_of_the_optimizer():
  cfg = gpt.PRESETS["gpt2_117m"]
  fp32 = memory.analyse(gpt2_task.gpt_task(cfg), TRAIN, 1024, 1, 4, 2)
  train = TRAIN.copy_and_resolve_references()
  train.mu_dtype = "bfloat16"
  bf16 = memory.analyse(gpt2_task.gpt_task(cfg), train, 1024, 1, 4, 2)
  assert bf16.params == fp32.params
  assert bf16.optimizer == pytest.approx(0.75 * fp32.optimizer, rel=0.001)


@pytest.mark.slow
def test_compiled_step_reports_its_arguments_and_temporaries():
  # A small model on 4 of conftest's 8 CPU devices: the compiled arguments are the sharded
  # state the abstract figures predict (plus the batch and a few scalars).
  config = gpt2_config.get_config("tiny")
  config.model.update(num_layers=2, embed_dim=64, mlp_dim=256, context=32)
  config.train.batch_size = 8
  cfg = pretrain.model_config(config)
  result = memory.analyse(gpt2_task.gpt_task(cfg), config.train, 32, 1, 2, 2, compile=True)
  state = result.params + result.optimizer
  assert state < result.compiled_arguments < state * 1.01 + 8 * 32 * 4 * 2 + 1024
  assert result.temporaries > 0
  with pytest.raises(ValueError, match="needs 16 devices"):
    memory.analyse(gpt2_task.gpt_task(cfg), config.train, 32, 4, 2, 2, compile=True)
  assert jax.device_count() == 8


def _train_losses(workdir, dtype, mu_dtype):
  config = gpt2_config.get_config("tiny")
  config.model.update(num_layers=2, embed_dim=64, mlp_dim=256, context=32, dtype=dtype)
  config.data.update(seq_len=32, num_docs=300)
  config.train.update(steps=200, batch_size=8, log_every=10, eval_every=1000,
                      checkpoint_every=1000, mu_dtype=mu_dtype)
  loop.train(config, str(workdir), gpt2_task.build(config).task)
  return np.array([r["loss"] for r in metrics.read_metrics(workdir) if "loss" in r])


@pytest.mark.slow
def test_bf16_compute_and_first_moment_track_fp32_over_200_steps(tmp_path):
  fp32 = _train_losses(tmp_path / "fp32", "float32", "")
  bf16 = _train_losses(tmp_path / "bf16", "bfloat16", "bfloat16")
  assert len(fp32) == len(bf16) == 20
  assert np.abs(bf16 - fp32).max() > 1e-3  # bf16 really ran
  assert fp32[-1] < 0.3 * fp32[0]  # and there was a descent to track
  # Every logged loss within 5% (about 0.03 nats at the end), the last five within 3% on average.
  np.testing.assert_allclose(bf16, fp32, rtol=0.05)
  assert abs(bf16[-5:].mean() - fp32[-5:].mean()) < 0.03 * fp32[-5:].mean()


def test_paper_presets_compute_in_bf16_on_accelerators_only(monkeypatch):
  assert gpt2_config.get_config("tiny").model.dtype == "float32"
  cpu = gpt2_config.get_config("345m")
  gpt2_config.resolve_dtype(cpu)
  assert cpu.model.dtype == "float32"  # this machine
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  gpu = gpt2_config.get_config("345m")
  gpt2_config.resolve_dtype(gpu)
  assert gpu.model.dtype == "bfloat16"


@pytest.mark.slow
def test_bench_prints_the_table_and_json():
  result = subprocess.run(
      [sys.executable, "-m", "experiments.bench", "--what=memory",
       "--config=configs/gpt2.py:117m", "--meshes=1x1x1,1x8x1", "--model_preset=gpt2_345m"],
      cwd=pathlib.Path(__file__).resolve().parent.parent, capture_output=True, text=True,
      timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.splitlines()
  assert lines[0].startswith("gpt2_345m: 355M parameters")
  assert lines[2].split() == ["1x1x1", "1.32", "2.64", "n/a"]
  rows = json.loads(lines[-1])["results"]
  expected = memory.analyse(gpt2_task.gpt_task(gpt.PRESETS["gpt2_345m"]), TRAIN, 1024, 1, 8,
                            1)
  assert rows[1]["params_bytes"] == expected.params
  assert rows[1]["optimizer_bytes"] == expected.optimizer
