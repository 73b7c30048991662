"""The chain's pieces: the text-and-code stream holds the asked share, the probes' answers
follow from their prompts, multi-turn SFT learns only assistant turns, comparisons put the
right reply first, the report tabulates every stage; and (slow) the chain from an empty
directory, killed in the middle and rerun, continues from the stage it was in."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from lineage.data import chat
from lineage.data import synthetic_dialogue as sd
from lineage.data.tokenizers import ByteTokenizer
from lineage.milestones.chatgpt import dialogue, pretrain_mix, report, stages
from lineage.models import gpt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_mixed_stream_has_the_code_share_and_the_same_length():
  tok = ByteTokenizer()
  with_code, share = pretrain_mix.mixed_stream(tok, 30_000, 0.3, seed=0)
  without, none = pretrain_mix.mixed_stream(tok, 30_000, 0.0, seed=0)
  assert len(with_code) == len(without) == 30_000
  assert abs(share - 0.3) < 0.02 and none == 0.0
  assert b"def " in bytes(int(t) for t in with_code if t < 256)
  assert b"def " not in bytes(int(t) for t in without if t < 256)
  with pytest.raises(ValueError, match="code_share"):
    pretrain_mix.mixed_stream(tok, 100, 1.0, 0)


def test_probe_answers_follow_from_their_prompts():
  for prompt, answer in pretrain_mix.multi_step_examples(20, 3, seed=0):
    env = {}
    statements = prompt.rstrip(";").split(";")
    for statement in statements[:-1]:
      name, expr = statement.split("=")
      env[name] = eval(expr, {}, dict(env)) % 10
    assert str(env[statements[-1].rstrip("=")]) == answer
  for prompt, answer in pretrain_mix.retrieval_examples(20, 16, seed=0):
    pairs = dict(p.split("=") for p in prompt.split(";")[:-1])
    assert len(pairs) == 16 and pairs[prompt.split(";")[-1].rstrip("=")] == answer


def test_multi_turn_sft_learns_assistant_turns_only():
  template = chat.ChatTemplate(ByteTokenizer())
  dialogues = sd.conversations(8, seed=0, min_exchanges=2, max_exchanges=3)
  batches = dialogue.sft_batches(template, dialogues, 128, batch_size=2, seed=0)
  batch = next(batches)
  learned = batch["targets"][batch["weights"] > 0]
  text = ByteTokenizer().decode([t for t in learned if t < 256])
  assert "list:" in text and "add " not in text and sd.SYSTEM not in text
  assert 0 < (learned == template.end_id).sum() < (batch["targets"] == template.end_id).sum()
  for (ids, mask), turns in zip(dialogue.sft_examples(template, dialogues), dialogues):
    ends = [i for i, t in enumerate(ids) if t == template.end_id and mask[i]]
    assert len(ends) == sum(t.role == "assistant" for t in turns)
  with pytest.raises(ValueError, match="a dialogue takes .* tokens, more than seq_len"):
    dialogue.check_fits(template, dialogues, 16)
  with pytest.raises(ValueError, match="chat template's special tokens"):
    dialogue.chat_model(gpt.GPTConfig(vocab_size=257, context=32, num_layers=1, num_heads=1,
                                      embed_dim=8, mlp_dim=8))


def test_comparisons_put_the_right_reply_first():
  model = dialogue.chat_model(gpt.GPTConfig(vocab_size=261, context=128, num_layers=1,
                                            num_heads=1, embed_dim=8, mlp_dim=8))
  dialogues = sd.conversations(5, seed=0)
  for prompt, (right, wrong), pref in stages.comparisons(model, dialogues, seed=0):
    turns = model.template.decode(prompt)[:-1]
    assert pref == [1.0, 0.0] and sd.is_correct(turns, model.text(right))
    assert not sd.is_correct(turns, model.text(wrong))


def test_report_tabulates_every_stage():
  results = {
      "pretrain": {"steps": 4, "eval_loss": 2.0, "code_share": 0.3, "probe_multi_step": 0.1,
                   "probe_retrieval": 0.2},
      "sft": {"steps": 3, "final_train_loss": 1.0, "base_dialogue_first": 0.0,
              "base_dialogue_dependent": 0.0, "eval_dialogue_first": 0.9,
              "eval_dialogue_dependent": 0.5},
      "rm": {"steps": 2, "final_train_loss": 0.5, "eval_pair_accuracy": 0.8,
             "eval_mean_reward": 0.1},
      "ppo": {"steps": 2, "final_train_loss": 0.1, "eval_dialogue_first": 0.9,
              "eval_dialogue_dependent": 0.6, "rm_shift": 0.2},
      "chat": {"transcript": "you: add milk\nassistant: list: milk\n",
               "side_by_side": {"Explain ChatGPT": {"base": "a|b", "sft": "x", "ppo": "y"}}},
      "pretrain_no_code": {"steps": 4, "eval_loss": 2.1, "code_share": 0.0,
                           "probe_multi_step": 0.1, "probe_retrieval": 0.1}}
  summary = report.summarise(results)
  assert summary["dialogue_dependent_accuracy"] == {"base": 0.0, "sft": 0.5, "ppo": 0.6}
  assert summary["sft_beats_base_on_dependent_turns"]
  assert summary["ppo_keeps_sft_on_dependent_turns"]
  assert summary["code_comparison"]["without_code"]["code_share"] == 0.0
  text = report.markdown(summary, results)
  for stage in ("pretrain", "sft", "rm", "ppo", "pretrain_no_code"):
    assert f"| {stage} |" in text
  assert "eval_pair_accuracy 0.800" in text and "'a\\|b'" in text
  assert "assistant: list: milk" in text


MICRO = ["--config.train.steps=4", "--config.train.batch_size=4",
         "--config.train.checkpoint_every=2", "--config.pretrain.corpus_tokens=30000",
         "--config.probes.num=8", "--config.sft.steps=4", "--config.sft.batch_size=4",
         "--config.sft.num_dialogues=64", "--config.sft.eval_dialogues=4",
         "--config.sft.checkpoint_every=2", "--config.rm.steps=4", "--config.rm.batch_size=4",
         "--config.rm.num_comparisons=40", "--config.rm.eval_comparisons=8",
         "--config.ppo.rollouts=1", "--config.ppo.rollout_batch=4",
         "--config.ppo.minibatch=4", "--config.ppo.epochs=1", "--config.ppo.num_prompts=8",
         "--config.chat.max_new_tokens=8"]


@pytest.mark.slow
def test_chain_killed_in_a_stage_continues_from_it(tmp_path):
  workdir = tmp_path / "chain"
  command = [sys.executable, "-m", "experiments.chatgpt", "--config=configs/chatgpt.py:tiny",
             f"--workdir={workdir}", "--mode=chain", *MICRO]
  # One CPU device, as the binary runs outside the tests (conftest asks for eight).
  env = {**os.environ, "PYTHONPATH": ROOT, "XLA_FLAGS": ""}
  log = open(tmp_path / "first_run.log", "w")
  proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                          start_new_session=True)
  sft_checkpoints = workdir / "sft" / "checkpoints"
  deadline = time.time() + 300
  while not (sft_checkpoints.is_dir() and any(p.name.isdigit()
                                              for p in sft_checkpoints.iterdir())):
    assert proc.poll() is None and time.time() < deadline, (
        "the chain never reached SFT: " + (tmp_path / "first_run.log").read_text()[-3000:])
    time.sleep(0.2)
  os.killpg(proc.pid, signal.SIGKILL)
  proc.wait()
  log.close()
  assert (workdir / "pretrain" / "done.json").exists()
  assert not (workdir / "sft" / "done.json").exists()
  pretrain_metrics = (workdir / "pretrain" / "metrics.jsonl").read_text()
  rerun = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  log = rerun.stdout + rerun.stderr
  assert "chain: pretrain finished earlier" in log
  assert f"resumed from {sft_checkpoints}" in log
  assert (workdir / "pretrain" / "metrics.jsonl").read_text() == pretrain_metrics
  summary = json.loads((workdir / "summary.json").read_text())
  assert set(summary["stages"]) == {"pretrain", "sft", "rm", "ppo", "chat", "pretrain_no_code"}
  assert set(summary["dialogue_dependent_accuracy"]) == {"base", "sft", "ppo"}
  assert set(summary["side_by_side"]["Explain ChatGPT"]) == {"base", "sft", "ppo"}
  assert summary["side_by_side"]["Explain ChatGPT"]["base"].startswith("Explain ChatGPT")
  probes = summary["code_comparison"]["with_code"]
  assert 0 <= probes["probe_multi_step"] <= 1 and 0 <= probes["probe_retrieval"] <= 1
  report_text = (workdir / "report.md").read_text()
  assert "| ppo |" in report_text and "A scripted chat with the PPO model" in report_text
  assert (workdir / "chat" / "transcript.txt").read_text().count("assistant: ") >= 4
