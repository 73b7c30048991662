"""GPT-2's milestone package in process: its tour section at a reduced size, and the sampling
settings the binary's flags resolve to."""

import pytest

from configs import gpt2 as gpt2_config
from lineage.milestones.gpt2 import sampling, tour


@pytest.mark.slow
def test_tour_section(tmp_path):
  """A report with the loss table, the loss curve, greedy and sampled text, and a Table 3 row."""
  cfg = gpt2_config.get_config("tiny")
  cfg.model.update(num_layers=2, embed_dim=64, mlp_dim=256)
  cfg.data.num_docs = 300
  cfg.train.update(steps=20, eval_every=10)
  (tmp_path / "gpt2").mkdir()
  out = tour.SECTION.run(cfg, str(tmp_path))
  assert "## GPT-2 (2019)" in out and "| held-out loss (nats/byte) |" in out
  assert "'the ' (T=0.8, top-p=0.95) ->" in out
  assert "tour: tiny, bytes, synthetic_text" in out
  assert (tmp_path / "gpt2_loss.png").stat().st_size > 1000


def test_sampling_settings_follow_config_then_preset_then_flags():
  cfg = gpt2_config.get_config("tiny")
  assert sampling.settings(cfg, sampling.SampleOptions())["temperature"] == 0.8
  tldr = sampling.settings(cfg, sampling.SampleOptions(preset="tldr"))
  assert (tldr["top_k"], tldr["max_new_tokens"]) == (2, 100)
  flags = sampling.SampleOptions(preset="tldr", max_new_tokens=6, temperature=0.0)
  assert sampling.settings(cfg, flags)["max_new_tokens"] == 6
  assert sampling.settings(cfg, flags)["temperature"] == 0.0
  with pytest.raises(ValueError, match="presets are tldr"):
    sampling.settings(cfg, sampling.SampleOptions(preset="poem"))


def test_first_sentences_is_the_tldr_summary():
  assert sampling.first_sentences(" a b. c d!  e f? g", 2) == "a b. c d!"
