"""InstructGPT's chain through its binary: SFT -> reward model -> PPO and DPO -> win rates, a
killed PPO run resuming bit for bit, bad input, and the real data (hh-rlhf, self-instruct)."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from absl import app

from configs import instructgpt as config_lib
from lineage.milestones.instructgpt import data as data_lib
from lineage.milestones.instructgpt import stages
from tests.binaries import run_in_process

REPO = pathlib.Path(__file__).resolve().parent.parent
CONFIG = "--config=configs/instructgpt.py:tiny"
# A chain small enough for a test: every batch a multiple of the 8 test devices.
SMALL = ["--config.sft.steps=30", "--config.rm.steps=30", "--config.rm.eval_every=30",
         "--config.data.num_demonstrations=400", "--config.data.num_comparisons=80",
         "--config.data.num_eval_comparisons=16", "--config.sft.batch_size=16",
         "--config.rm.batch_size=16", "--config.ppo.rollout_batch=16",
         "--config.ppo.minibatch=8", "--config.ppo.epochs=1", "--config.ppo.train.steps=8",
         "--config.ppo.train.checkpoint_every=4", "--config.ppo.train.log_every=1",
         "--config.ppo.ptx_coef=0.5", "--config.ppo.ptx_batch=8",
         "--config.dpo.train.steps=10", "--config.dpo.train.batch_size=16",
         "--config.eval.samples_per_prompt=1", "--config.eval.batch_size=50"]


def _run(mode, workdir, *extra):
  return run_in_process("instructgpt", CONFIG, f"--mode={mode}", f"--workdir={workdir}",
                        *SMALL, *extra)


def _summary(workdir):
  return json.loads((pathlib.Path(workdir) / "summary.json").read_text())


def test_modes_say_what_they_need(tmp_path):
  with pytest.raises(app.UsageError, match="choose one of sft, rm, ppo, dpo, eval"):
    _run("train", tmp_path)
  with pytest.raises(ValueError, match="needs --config.init_from=DIR, the SFT run"):
    _run("ppo", tmp_path)
  with pytest.raises(ValueError, match="needs --config.init_from=DIR, the SFT run"):
    _run("dpo", tmp_path)
  with pytest.raises(ValueError, match="needs --config.init_from=DIR .* --config.eval.policy"):
    _run("eval", tmp_path)
  with pytest.raises(FileNotFoundError, match="holds no run"):
    _run("ppo", tmp_path / "ppo", f"--config.init_from={tmp_path}/missing",
         f"--config.ppo.reward_model={tmp_path}/missing")


def test_bad_input_is_reported():
  cfg = config_lib.get_config("tiny")
  cfg.data.prompt_len = 3
  with pytest.raises(ValueError, match="a prompt of 4 tokens does not fit data.prompt_len=3"):
    data_lib.load(cfg)
  with pytest.raises(ValueError, match="not a multiple of the updates per rollout"):
    stages._check_ppo_steps({"steps": 10, "checkpoint_every": 4},
                            stages.ppo_settings(config_lib.get_config("tiny")))
  prompt, chosen, rejected = data_lib.split_dialogue(
      "\n\nHuman: hi\n\nAssistant: hello there", "\n\nHuman: hi\n\nAssistant: go away")
  assert (prompt, chosen, rejected) == ("\n\nHuman: hi\n\nAssistant:", " hello there",
                                        " go away")


def _train_sft_and_rm(root):
  _run("sft", root / "sft")
  _run("rm", root / "rm", f"--config.init_from={root / 'sft'}")


@pytest.mark.slow
def test_the_chain_runs_and_reports(tmp_path):
  _train_sft_and_rm(tmp_path)
  sft, rm = _summary(tmp_path / "sft"), _summary(tmp_path / "rm")
  assert sft["skipped_empty"] == 0 and sft["packed_rows"] > 0
  assert 0 <= rm["eval_pair_accuracy"] <= 1 and rm["responses_per_prompt"] == 4
  chain = [f"--config.init_from={tmp_path / 'sft'}",
           f"--config.ppo.reward_model={tmp_path / 'rm'}"]
  _run("ppo", tmp_path / "ppo", *chain)
  ppo_summary = _summary(tmp_path / "ppo")
  assert ppo_summary["rollout_tokens_per_sec"] > 0 and ppo_summary["update_seconds_per_batch"] > 0
  records = [json.loads(line) for line in (tmp_path / "ppo" / "metrics.jsonl").open()]
  logged = set().union(*records)
  for key in ("score", "true_score", "kl", "kl_coef", "entropy", "clip_fraction",
              "value_clip_fraction", "approx_kl", "ptx_loss", "ended", "response_length"):
    assert key in logged, key
  _run("dpo", tmp_path / "dpo", *chain)
  assert "eval_reward_accuracy" in _summary(tmp_path / "dpo")
  for policy in ("ppo", "dpo"):
    _run("eval", tmp_path / f"eval_{policy}", *chain,
         f"--config.eval.policy={tmp_path / policy}")
    result = _summary(tmp_path / f"eval_{policy}")
    for key in ("win_rate_rm", "win_rate_true"):
      assert 0 <= result[key] <= 1
    assert result["examples"] and "policy_true_score" in result


def _subprocess_env():
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + sys.path)
  return env


def _ppo_command(workdir, root):
  return [sys.executable, "-m", "experiments.instructgpt", CONFIG, "--mode=ppo",
          f"--workdir={workdir}", *SMALL, "--config.ppo.train.steps=24",
          f"--config.init_from={root / 'sft'}", f"--config.ppo.reward_model={root / 'rm'}"]


def _logged_steps(workdir):
  path = pathlib.Path(workdir) / "metrics.jsonl"
  if not path.exists():
    return []
  return [json.loads(line)["step"] for line in path.read_text().splitlines()
          if line.endswith("}")]


def _final_params(workdir):
  params = jax.device_get(stages.ppo_params(config_lib.get_config("tiny"), str(workdir)))
  return jax.tree_util.tree_flatten_with_path(params)[0]


@pytest.mark.slow
def test_killed_ppo_resumes_to_the_same_parameters(tmp_path):
  _train_sft_and_rm(tmp_path)
  reference, resumed = tmp_path / "reference", tmp_path / "resumed"
  done = subprocess.run(_ppo_command(reference, tmp_path), cwd=REPO, env=_subprocess_env(),
                        capture_output=True, text=True)
  assert done.returncode == 0, done.stderr[-3000:]

  process = subprocess.Popen(_ppo_command(resumed, tmp_path), cwd=REPO, env=_subprocess_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.monotonic() + 600
  while max(_logged_steps(resumed), default=0) < 10:
    assert process.poll() is None, "the run ended before it logged step 10"
    assert time.monotonic() < deadline, "the run never logged step 10"
    time.sleep(0.005)
  process.send_signal(signal.SIGKILL)
  assert process.wait() == -signal.SIGKILL
  assert max(_logged_steps(resumed)) < 24, "the kill came too late to interrupt the run"

  again = subprocess.run(_ppo_command(resumed, tmp_path), cwd=REPO, env=_subprocess_env(),
                         capture_output=True, text=True)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "resumed from" in again.stdout
  expected, actual = _final_params(reference), _final_params(resumed)
  assert [p for p, _ in actual] == [p for p, _ in expected]
  for (path, a), (_, b) in zip(actual, expected):
    assert np.array_equal(a, b), jax.tree_util.keystr(path)


@pytest.mark.slow
def test_hh_rlhf_reward_model_reports_its_held_out_accuracy(tmp_path, shared_data):
  run_in_process("instructgpt", "--config=configs/instructgpt.py:hh_rlhf", "--mode=rm",
                 f"--workdir={tmp_path}", f"--config.data.manual_dir={shared_data / 'hh_rlhf'}",
                 "--config.data.limit=200", "--config.rm.steps=10",
                 "--config.rm.eval_every=10", "--config.rm.batch_size=8")
  summary = _summary(tmp_path)
  assert summary["comparisons"] == 160 and summary["held_out"] == 40
  assert 0 <= summary["eval_pair_accuracy"] <= 1
  assert summary["truncated"]["prompts"] > 0  # dialogues longer than 192 bytes keep their end


def test_self_instruct_demonstrations(shared_data):
  cfg = config_lib.get_config("tiny")
  cfg.data.update(name="self_instruct", manual_dir=str(shared_data / "self_instruct"),
                  prompt_len=96, response_len=64)
  data = data_lib.load(cfg)
  assert len(data.demonstrations) >= 175
  assert all(0 < len(p) <= 96 and len(r) <= 63 for p, r in data.demonstrations)
  assert data.comparisons is None
