"""The scaling sweep: power-law fits recover known laws, sizes parse with clear errors, the
non-embedding count; the sweep and the few-shot table end to end through the binary (slow)."""

import json

import jax
import numpy as np
import pytest

from configs import gpt3 as gpt3_config
from lineage.milestones.gpt1 import pretrain
from lineage.milestones.gpt3 import few_shot_eval, power_law, scaling
from lineage.models import gpt
from tests import binaries


def test_power_law_recovers_a_known_exponent():
  x = np.geomspace(1e3, 1e7, 6)
  law = power_law.fit(x, 40.0 * x ** -0.076)
  assert law.b == pytest.approx(0.076, rel=1e-6) and law.a == pytest.approx(40.0, rel=1e-6)
  assert law.r2 == pytest.approx(1.0) and law.c == 0.0
  noisy = 40.0 * x ** -0.3 * np.exp(np.random.default_rng(0).normal(0, 0.01, 6))
  law = power_law.fit(x, noisy)
  assert law.b == pytest.approx(0.3, abs=0.01) and 0.99 < law.r2 < 1.0


def test_power_law_with_an_offset_recovers_the_floor():
  x = np.geomspace(1e3, 1e7, 8)
  law = power_law.fit(x, 5.0 * x ** -0.5 + 1.2, offset=True, grid=2000)
  assert law.c == pytest.approx(1.2, abs=0.01) and law.b == pytest.approx(0.5, abs=0.02)
  assert law.r2 > 0.999
  assert "R^2" in law.label("N") and law(1e4) == pytest.approx(law.a * 1e4 ** -law.b + law.c)


def test_power_law_bad_input():
  for x, y, match in (([1, 2], [1, 2], "at least 3"), ([1, 2, 3], [1, 2], "one length"),
                      ([1, 2, 0], [1, 2, 3], "positive")):
    with pytest.raises(ValueError, match=match):
      power_law.fit(x, y)


def test_sizes_parse_and_bad_sizes_are_clear_errors():
  assert scaling.parse_sizes("1x16, 2x32,3x48", 16) == [(1, 16), (2, 32), (3, 48)]
  for text, match in (("1x16,2x32", "at least 3"), ("1x16,2x33,3x48", "multiple of"),
                      ("1x16,two,3x48", "LAYERSxWIDTH")):
    with pytest.raises(ValueError, match=match):
      scaling.parse_sizes(text, 16)


def test_the_default_sweep_spans_30x_in_non_embedding_parameters():
  cfg = gpt3_config.get_config("tiny")
  counts = []
  for layers, width in scaling.parse_sizes(cfg.scaling.sizes, cfg.scaling.head_dim):
    run_cfg = scaling.size_config(cfg, layers, width)
    model_cfg = pretrain.model_config(run_cfg)
    abstract = jax.eval_shape(pretrain.gpt_task(model_cfg).init_params, jax.random.PRNGKey(0))
    n = scaling.non_embedding_params(abstract)
    assert n == gpt.count_params(abstract) - 257 * width - run_cfg.data.seq_len * width
    counts.append(n)
  assert len(counts) >= 5 and counts == sorted(counts) and counts[-1] / counts[0] >= 30


def test_few_shot_table_has_zero_one_and_few_shot_columns():
  table = few_shot_eval.table_markdown({"m": {"sst2": {0: 0.5, 1: 0.625, 8: 0.75}},
                                        "n": {"rte": {0: 0.5}}})
  assert "| m | sst2 | 0.500 | 0.625 | 0.750 (K=8) |" in table
  assert "| n | rte | 0.500 | - | - |" in table
  with pytest.raises(ValueError, match="few_shot.tasks='sst3'"):
    few_shot_eval.parse_tasks("sst3")


@pytest.mark.slow
def test_the_sweep_and_the_few_shot_table_through_the_binary(tmp_path):
  """Three small sizes for a few steps: the fits, plots and table exist and hold together;
  then --mode=few_shot on one size's run adds its block to a table."""
  common = ["--config=configs/gpt3.py:tiny", "--config.data.num_docs=300",
            "--config.data.seq_len=64", "--config.train.batch_size=8",
            "--config.train.eval_batches=2", "--config.train.log_every=5",
            "--config.few_shot.tasks=synthetic_cloze", "--config.few_shot.shots=0,1,2",
            "--config.few_shot.max_examples=8", "--config.few_shot.limit=8",
            "--config.few_shot.batch_size=8"]
  binaries.run_in_process("gpt3", f"--workdir={tmp_path}", "--mode=scaling", *common,
                          "--config.scaling.sizes=1x16,1x32,2x32", "--config.scaling.steps=10")
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert [s["name"] for s in summary["sizes"]] == ["1x16", "1x32", "2x32"]
  assert set(summary["fits"]) == {"params", "flops"}
  assert all(s["flops"] == pytest.approx(6 * s["params"] * s["tokens"]) for s in summary["sizes"])
  assert set(summary["sizes"][0]["few_shot"]["synthetic_cloze"]) == {"0", "1", "2"}
  for name in ("scaling.png", "scaling_accuracy.png", "report.md"):
    assert (tmp_path / name).stat().st_size > 0
  out = tmp_path / "fs"
  binaries.run_in_process("gpt3", f"--workdir={out}", "--mode=few_shot", *common,
                          f"--config.init_from={tmp_path / '2x32'}")
  table = (out / "few_shot" / "report.md").read_text()
  assert "| 2x32 | synthetic_cloze |" in table
  assert (out / "few_shot" / "few_shot.png").stat().st_size > 0
  with pytest.raises(ValueError, match="trained on the in-context mapping task"):
    icl_run = tmp_path / "icl"
    icl_run.mkdir()
    (icl_run / "config.json").write_text(json.dumps({"task": "icl"}))
    binaries.run_in_process("gpt3", f"--workdir={out}", "--mode=few_shot", *common,
                            f"--config.init_from={icl_run}")
