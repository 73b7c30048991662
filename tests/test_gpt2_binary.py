"""The gpt2 binary as a user meets it: bad input is a clear error that loses nothing (in
process), a text file trains, samples and evaluates, and runs and Hugging Face directories
export and sample (subprocesses, slow)."""

import hashlib
import json
import math
import os
import re
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lineage.interop import hf_gpt2
from lineage.models import gpt
from tests import binaries

REPO = pathlib.Path(__file__).resolve().parent.parent
SMALL = ["--config.model.num_layers=2", "--config.model.embed_dim=64",
         "--config.model.mlp_dim=256", "--config.model.context=32", "--config.data.seq_len=32",
         "--config.train.batch_size=8", "--config.data.num_docs=300"]


def _run(workdir, *args):
  """The binary on one CPU device, as a user runs it (conftest forces 8 for this process);
  workdir None runs it without --workdir."""
  flags = os.environ.get("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count=8", "")
  workdir_flag = [] if workdir is None else [f"--workdir={workdir}"]
  return subprocess.run(
      [sys.executable, "-m", "experiments.gpt2", "--config=configs/gpt2.py:tiny",
       *workdir_flag, *args],
      cwd=REPO, env={**os.environ, "XLA_FLAGS": flags.strip()}, capture_output=True,
      encoding="utf-8", errors="replace", timeout=600)


def _check_ok(result):
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def _snapshot(directory):
  return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(pathlib.Path(directory).rglob("*")) if p.is_file()}


def _in_process(workdir, *args):
  workdir_flag = [] if workdir is None else [f"--workdir={workdir}"]
  return binaries.run_in_process("gpt2", "--config=configs/gpt2.py:tiny", *workdir_flag, *args)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A workdir holding a finished run, which no bad command may change."""
  workdir = tmp_path_factory.mktemp("trained")
  _in_process(workdir, *SMALL, "--config.train.steps=2")
  snapshot = _snapshot(workdir)
  assert any(name.startswith("checkpoints/2/") for name in snapshot)
  return workdir, snapshot


@pytest.fixture
def bad_utf8_file(tmp_path):
  path = tmp_path / "latin1.txt"
  path.write_bytes("plain ascii, then caf".encode() + b"\xe9 au lait\n")
  return path


@pytest.mark.parametrize("args, line", [
    (["--config.train.stepz=3"],
     "error: --config.train.stepz: the config has no key 'stepz' here; the closest valid one is "
     "--config.train.steps"),
    (["--config.trainn.steps=3"],
     "error: --config.trainn.steps: the config has no key 'trainn' here; the closest valid one "
     "is --config.train.steps"),
], ids=["unknown_leaf", "unknown_section"])
def test_unknown_config_key_is_one_line_naming_the_closest(trained, capsys, args, line):
  workdir, snapshot = trained
  with pytest.raises(SystemExit) as exit_:
    _in_process(workdir, *SMALL, *args)
  assert exit_.value.code == 2
  assert capsys.readouterr().err.strip() == line
  assert _snapshot(workdir) == snapshot


@pytest.mark.parametrize("args, error, message", [
    (["--config.train.steps=abc"], Exception, "invalid literal for int()"),
    (["--config.mesh.data=3", "--config.mesh.fsdp=1"], ValueError,
     "mesh data=3 x fsdp=1 x tensor=1 needs 3 devices, but 8 are present"),
    (["--mode=sampel"], Exception, "--mode=sampel is not a mode of this binary; choose one of "
     "train, eval, zero_shot, sample, export"),
    (["--mode=sample", "--temperature=-1"], ValueError, "temperature"),
    (["--mode=sample", "--top_p=1.5"], ValueError, "top_p"),
    (["--mode=export"], ValueError, "--mode=export needs --export_dir=OUT"),
], ids=["wrong_type", "mesh_too_big", "unknown_mode", "negative_temperature", "top_p_above_1",
        "export_without_dir"])
def test_bad_flags_fail_clearly_and_lose_nothing(trained, args, error, message):
  workdir, snapshot = trained
  with pytest.raises(error, match=re.escape(message)):
    _in_process(workdir, *SMALL, *args)
  assert _snapshot(workdir) == snapshot


def test_invalid_utf8_names_the_byte_offset_and_loses_nothing(trained, bad_utf8_file):
  workdir, snapshot = trained
  with pytest.raises(ValueError, match=f"{bad_utf8_file} is not valid UTF-8 at byte 21"):
    _in_process(workdir, *SMALL, "--config.data.name=text_file",
                f"--config.data.path={bad_utf8_file}")
  with pytest.raises(ValueError,
                     match=f"--prompt_file={bad_utf8_file} is not valid UTF-8 at byte 21"):
    _in_process(workdir, *SMALL, "--mode=sample", f"--prompt_file={bad_utf8_file}")
  assert _snapshot(workdir) == snapshot


def test_temperature_zero_samples_greedily(trained, capsys):
  workdir, _ = trained
  outputs = []
  for args in (["--temperature=0"], ["--temperature=0", "--seed=7"]):
    _in_process(workdir, *SMALL, "--mode=sample", "--prompt=the ", "--num_samples=1",
                "--max_new_tokens=12", *args)
    outputs.append(capsys.readouterr().out)
  assert outputs[0] == outputs[1]  # greedy: the seed does not matter


def test_unknown_dataset_lists_the_choices(tmp_path):
  with pytest.raises(ValueError, match="unknown language-model dataset 'wikitext'.*wikitext2"):
    _in_process(tmp_path, *SMALL, "--config.data.name=wikitext", "--config.train.steps=1")


@pytest.mark.slow
def test_any_builder_trains_through_its_text_field(tmp_path, shared_data):
  """SST sentences as LM documents (the sentiment milestone's pretraining text)."""
  data = ["--config.data.name=sst_binary", f"--config.data.manual_dir={shared_data / 'sst_binary'}"]
  with pytest.raises(ValueError, match="sst_binary records have no field 'text'.*sentence"):
    _in_process(tmp_path / "wrong_field", *SMALL, *data, "--config.train.steps=1")
  _in_process(tmp_path / "run", *SMALL, *data, "--config.data.text_key=sentence",
              "--config.train.steps=2", "--config.train.eval_batches=1")
  assert math.isfinite(json.loads((tmp_path / "run" / "summary.json").read_text())["eval_loss"])


@pytest.mark.slow
def test_text_file_trains_then_samples_and_evaluates(tmp_path, shared_data):
  data = ["--config.data.name=text_file",
          f"--config.data.path={shared_data / 'tinyshakespeare' / 'input.txt'}", *SMALL]
  _check_ok(_run(tmp_path, *data, "--config.train.steps=4", "--config.train.log_every=1"))
  losses = [json.loads(line)["loss"]
            for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
            if "\"loss\"" in line]
  assert len(losses) == 4 and all(math.isfinite(x) for x in losses)

  result = _run(tmp_path, *data, "--mode=sample", "--prompt=ROMEO:",
                "--config.sample.num_samples=2", "--config.sample.max_new_tokens=24")
  _check_ok(result)
  samples = result.stdout.split("--- sample ")[1:]
  assert [s.split(" ---\n")[0] for s in samples] == ["0", "1"]
  texts = [s.split(" ---\n", 1)[1] for s in samples]
  assert all(t.startswith("ROMEO:") for t in texts)
  assert any(len(t.rstrip("\n")) > len("ROMEO:") for t in texts)

  result = _run(tmp_path, *data, "--mode=eval")
  _check_ok(result)
  evaluation = json.loads((tmp_path / "eval.json").read_text())
  assert math.isfinite(evaluation["loss"]) and 0 <= evaluation["accuracy"] <= 1
  assert json.loads(result.stdout.strip().splitlines()[-1]) == {"eval": evaluation}


@pytest.mark.slow
def test_real_dataset_with_gpt2_bpe_trains_and_evaluates(tmp_path, shared_data):
  """PTB from ../shared/data through its TFDS builder, GPT-2's BPE and the grain pipeline."""
  data = ["--config.data.name=ptb", "--config.data.tokenizer=gpt2",
          f"--config.data.vocab_dir={shared_data / 'gpt2_bpe'}",
          f"--config.data.manual_dir={shared_data / 'ptb'}", "--config.model.vocab_size=50257",
          "--config.train.eval_batches=2"]
  _check_ok(_run(tmp_path, *SMALL, *data, "--config.train.steps=3", "--config.train.log_every=1"))
  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  losses = [r["loss"] for r in records if "loss" in r]
  assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
  assert losses[0] == pytest.approx(math.log(50257), rel=0.05)  # an untrained model is uniform
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert math.isfinite(summary["eval_loss"])

  # --mode=zero_shot on the same run: the real LAMBADA and PTB test, capped to stay quick; CBT
  # is absent here, so its cell must say how to get it rather than show a number.
  result = _run(tmp_path, *SMALL, *data, "--mode=zero_shot", "--model_name=ptb-tiny",
                "--config.zero_shot.datasets=lambada,ptb,cbt_cn",
                "--config.zero_shot.max_examples=20",
                f"--config.zero_shot.manual_dir={shared_data}")
  _check_ok(result)
  zero_shot = json.loads((tmp_path / "zero_shot" / "summary.json").read_text())
  assert json.loads(result.stdout.strip().splitlines()[-1]) == zero_shot
  assert 0 <= zero_shot["lambada"]["acc"] <= 1 and zero_shot["lambada"]["ppl"] > 1
  assert zero_shot["ptb"]["word_ppl"] > zero_shot["ptb"]["token_ppl"] > 1
  assert "needs_data" in zero_shot["cbt_cn"]
  report = (tmp_path / "zero_shot" / "report.md").read_text()
  assert "ptb-tiny" in report and "needs data" in report


@pytest.mark.slow
def test_export_of_the_run_and_of_a_named_step(trained, tmp_path):
  workdir, snapshot = trained
  result = _run(workdir, *SMALL, "--mode=export", f"--export_dir={tmp_path / 'latest'}")
  _check_ok(result)
  assert f"exported {workdir} to {tmp_path / 'latest'}" in result.stdout
  assert f"GPT2LMHeadModel.from_pretrained('{tmp_path / 'latest'}')" in result.stdout
  cfg, latest = hf_gpt2.import_hf(tmp_path / "latest")
  assert (cfg.num_layers, cfg.embed_dim, cfg.context, cfg.vocab_size) == (2, 64, 32, 257)
  config = json.loads((tmp_path / "latest" / "config.json").read_text())
  assert (config["model_type"], config["eos_token_id"], config["bos_token_id"]) == (
      "gpt2", 256, 256)

  _check_ok(_run(None, *SMALL, "--mode=export", f"--config.init_from={workdir}@2",
                 f"--export_dir={tmp_path / 'at2'}"))
  _, at_two = hf_gpt2.import_hf(tmp_path / "at2")
  jax.tree.map(np.testing.assert_array_equal, latest, at_two)  # the run ended at step 2
  assert _snapshot(workdir) == snapshot


def _random_hf_dir(path, vocab_size):
  """A Hugging Face directory of a randomly initialised GPT-2 with context 32."""
  cfg = gpt.GPTConfig(vocab_size=vocab_size, context=32, num_layers=1, num_heads=2,
                      embed_dim=16, mlp_dim=64)
  params = gpt.GPT(cfg).init(jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32))["params"]
  return hf_gpt2.export_hf(cfg, params, path)


@pytest.mark.slow
def test_sample_tldr_from_a_hf_directory_and_a_prompt_file(tmp_path):
  """hf:PATH needs no training run; the TL;DR preset appends the cue, cuts an article too long
  for the context and reports a summary; explicit flags (--max_new_tokens) beat the preset."""
  hf_dir = _random_hf_dir(tmp_path / "hf", vocab_size=257)
  article = tmp_path / "article.txt"
  article.write_text("the cat sat. the dog ran.", encoding="utf-8")
  result = _run(None, f"--config.init_from=hf:{hf_dir}", "--mode=sample",
                f"--prompt_file={article}", "--sample_preset=tldr", "--max_new_tokens=6",
                "--num_samples=2", "--seed=3")
  _check_ok(result)
  # context 32 = 19 article bytes + 7 for "\nTL;DR:" + 6 new tokens
  assert "the article's 25 tokens are cut to its first 19" in result.stderr
  out = result.stdout
  assert out.count("--- sample ") == 2 and out.count("--- summary ") == 2
  first = out.split("--- sample 0 ---\n", 1)[1]
  assert first.startswith("the cat sat. the do\nTL;DR:")
  completion = first.split("\nTL;DR:", 1)[1].split("\n--- summary 0 ---\n")[0]
  summary = out.split("--- summary 0 ---\n", 1)[1].split("\n--- sample 1")[0]
  assert len(completion) <= 6
  assert summary.split() == completion.split()[:len(summary.split())]


@pytest.mark.slow
def test_sample_gpt2_vocabulary_weights_with_the_gpt2_tokenizer(tmp_path, shared_data):
  """Released GPT-2 weights (vocabulary 50257) are read with GPT-2's BPE from data.vocab_dir."""
  hf_dir = _random_hf_dir(tmp_path / "hf", vocab_size=50257)
  result = _run(None, f"--config.init_from=hf:{hf_dir}", "--mode=sample",
                f"--config.data.vocab_dir={shared_data / 'gpt2_bpe'}", "--prompt=Hello world",
                "--max_new_tokens=4", "--num_samples=1", "--top_k=5")
  _check_ok(result)
  assert "--- sample 0 ---\nHello world" in result.stdout


