"""The sentiment neuron end to end at a reduced size, in process (train, probe, generate, the
tour section, bad input), and its binary once as a user runs it (slow)."""

import json
import os
import pathlib
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from configs import sentiment_neuron as sentiment_config
from lineage.milestones.sentiment_neuron import task as sentiment_task
from lineage.milestones.sentiment_neuron import tour
from tests import binaries

REPO = pathlib.Path(__file__).resolve().parent.parent
SMALL = ["--config.model.hidden_dim=32", "--config.model.embed_dim=16",
         "--config.data.seq_len=64", "--config.train.batch_size=8",
         "--config.data.num_reviews=300", "--config.train.eval_batches=2",
         "--config.train.log_every=10", "--config.train.eval_every=20",
         "--config.train.checkpoint_every=20", "--config.probe.num_reviews=200",
         "--config.probe.num_traced=2",
         "--config.generate.num_samples=2", "--config.generate.num_bytes=40",
         "--config.generate.burn_in=20"]
PROBE_KEYS = ("probe_accuracy", "probe_nonzero_units", "single_unit", "single_unit_accuracy",
              "single_unit_accuracy_at_init", "bow_accuracy")


def _run(workdir, *args):
  """The binary on one CPU device, as a user runs it (conftest forces 8 for this process)."""
  flags = os.environ.get("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count=8", "")
  return subprocess.run(
      [sys.executable, "-m", "experiments.sentiment_neuron",
       "--config=configs/sentiment_neuron.py:tiny", f"--workdir={workdir}", *SMALL, *args],
      cwd=REPO, env={**os.environ, "XLA_FLAGS": flags.strip()}, capture_output=True,
      encoding="utf-8", errors="replace", timeout=600)


def _check_ok(result):
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  return result.stdout


def _in_process(workdir, *args):
  return binaries.run_in_process("sentiment_neuron", "--config=configs/sentiment_neuron.py:tiny",
                                 f"--workdir={workdir}", *SMALL, *args)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("sentiment")
  _in_process(workdir, "--mode=train", "--config.train.steps=20")
  return workdir


@pytest.mark.slow
def test_train_probe_generate(trained, capsys):
  assert (trained / "checkpoints" / "20").is_dir()
  train_summary = json.loads((trained / "summary.json").read_text())
  assert np.isfinite(train_summary["eval_loss"])
  _in_process(trained, "--mode=probe")
  summary = json.loads((trained / "summary.json").read_text())
  assert summary["eval_loss"] == train_summary["eval_loss"]  # the probe adds to the summary
  for key in PROBE_KEYS:
    assert key in summary, key
  assert summary["units"] == 32 and 0 <= summary["single_unit"] < 32
  assert 0 <= summary["probe_nonzero_units"] <= 32
  assert np.isfinite(summary["lm_prefix_gap_nats"])
  assert summary["examples"] == {"train": 180, "validation": 10, "test": 10}
  for png in ("unit_histogram.png", "data_efficiency.png", "unit_trace.png"):
    assert (trained / png).stat().st_size > 1000, png

  _in_process(trained, "--mode=generate")
  out = capsys.readouterr().out
  generated = json.loads((trained / "generate.json").read_text())
  assert generated["unit"] == summary["single_unit"]
  assert set(generated["mean_score"]) == {"positive", "negative", "free"}
  for name in ("positive", "negative", "free"):
    samples = generated["samples"][name]
    assert len(samples) == 2 and all(s["text"].startswith("\n ") for s in samples)
  assert "lexicon score" in out


@pytest.mark.slow
def test_probe_of_a_single_class_is_a_clear_error(trained):
  with pytest.raises(ValueError, match="class"):
    _in_process(trained, "--mode=probe", "--config.probe.max_examples=1")


def test_probe_and_generate_need_their_predecessors(tmp_path):
  with pytest.raises(FileNotFoundError, match="no trained checkpoint.*--mode=train"):
    _in_process(tmp_path, "--mode=probe")
  with pytest.raises(FileNotFoundError, match="run --mode=probe first"):
    _in_process(tmp_path, "--mode=generate")


@pytest.mark.slow
def test_text_file_with_invalid_utf8_and_empty_lines_trains(tmp_path):
  lines = [f"review {i}: the kettle is great.".encode() for i in range(600)]
  lines[3] = b"caf\xe9 au lait, \xff\xfe broken bytes"
  lines[5] = lines[9] = b""
  lines[7] = b"   "
  path = tmp_path / "reviews.txt"
  path.write_bytes(b"\n".join(lines))
  out = _check_ok(_run(tmp_path / "run", "--mode=train", "--config.train.steps=2",
                       "--config.data.name=text_file", f"--config.data.path={path}",
                       "--config.train.eval_batches=1"))  # the binary as a user runs it
  assert "1 texts held invalid UTF-8" in out
  assert "train: skipped 3 empty texts" in out
  assert (tmp_path / "run" / "checkpoints" / "2").is_dir()


def test_decode_and_documents_follow_the_paper_preprocessing():
  texts = sentiment_task.decode_all([b"fine", b"caf\xe9", "na\u00efve".encode()], "test")
  assert texts == ["fine", "caf\ufffd", "na\u00efve"]
  docs = sentiment_task.documents(["A &amp; B\nC", "", "  ", "ok"], "test")
  assert docs == [b"\n A & B C ", b"\n ok "]


def test_missing_field_is_a_clear_error():
  with pytest.raises(ValueError, match="no field 'sentence'.*text_key"):
    sentiment_task.records([{"text": b"x", "label": 1}], ["sentence"], "synthetic_reviews")


def test_config_presets():
  tiny, paper = sentiment_config.get_config("tiny"), sentiment_config.get_config("paper")
  assert isinstance(tiny, ml_collections.ConfigDict)
  assert (paper.model.hidden_dim, paper.model.embed_dim) == (4096, 64)
  assert (paper.train.batch_size, paper.data.seq_len, paper.train.lr) == (128, 256, 5e-4)
  assert (paper.train.schedule, paper.train.min_lr_ratio) == ("linear", 0.0)
  with pytest.raises(ValueError, match="choose tiny or paper"):
    sentiment_config.get_config("huge")


@pytest.mark.slow
def test_tour_section(tmp_path):
  """The tour's sentiment section at the reduced size: a report with its table and images."""
  cfg = sentiment_config.get_config("tiny")
  for arg in SMALL + ["--config.train.steps=20"]:
    key, value = arg[len("--config."):].split("=")
    section, field = key.split(".")
    cfg[section][field] = type(cfg[section][field])(value)
  out = tour.SECTION.run(cfg, str(tmp_path))
  assert "## The sentiment neuron (2017)" in out
  assert "best single unit of the same model at initialisation" in out
  for png in ("unit_histogram", "unit_trace", "data_efficiency"):
    assert (tmp_path / f"sentiment_{png}.png").is_file()
