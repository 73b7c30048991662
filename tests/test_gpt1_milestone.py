"""GPT-1 end to end at a reduced size, in process: the tour section (pre-training with the
zero-shot heuristic logged, then the ablations), fine-tuning from its run (all blocks, or the
embeddings only), export to transformers, and bad input."""

import json
import pathlib

import numpy as np
import pytest

from configs import gpt1 as gpt1_config
from lineage.milestones.gpt1 import tasks, tour
from tests import binaries

# End to end through the binary and the tour section: minutes, so outside `make check`.
pytestmark = pytest.mark.slow

SMALL = ["--config=configs/gpt1.py:tiny", "--config.model.num_layers=1",
         "--config.model.embed_dim=32", "--config.model.num_heads=2",
         "--config.model.mlp_dim=128", "--config.model.context=64", "--config.data.seq_len=64",
         "--config.data.num_docs=300", "--config.train.batch_size=8",
         "--config.train.eval_batches=2", "--config.train.log_every=5",
         "--config.train.eval_every=5", "--config.train.checkpoint_every=10",
         "--config.zero_shot.max_examples=16", "--config.finetune.num_synthetic=64",
         "--config.finetune.num_eval=24", "--config.finetune.batch_size=16",
         "--config.finetune.epochs=1", "--config.finetune.log_every=2",
         "--config.finetune.eval_batch_size=16"]


def _run(workdir, *args):
  return binaries.run_in_process("gpt1", f"--workdir={workdir}", *SMALL, *args)


def _small_config():
  """configs/gpt1.py:tiny with SMALL's overrides."""
  cfg = gpt1_config.get_config("tiny")
  for arg in SMALL[1:]:
    path, value = arg.removeprefix("--config.").split("=")
    section, key = path.split(".")
    cfg[section][key] = type(cfg[section][key])(value)
  return cfg


@pytest.fixture(scope="module")
def toured(tmp_path_factory):
  """The tour section at SMALL's size: pre-training, then the ablations from it."""
  workdir = tmp_path_factory.mktemp("gpt1_tour")
  cfg = _small_config()
  cfg.train.steps = 10
  return workdir, tour.run(cfg, str(workdir))


@pytest.fixture(scope="module")
def pretrained(toured):
  return toured[0] / "gpt1" / "pretrain"


def test_tour_section_pretrains_then_ablates(toured):
  workdir, markdown = toured
  records = [json.loads(line) for line in
             (workdir / "gpt1" / "pretrain" / "metrics.jsonl").read_text().splitlines()]
  curve = [r["eval_zero_shot_synthetic_choice"] for r in records
           if "eval_zero_shot_synthetic_choice" in r]
  assert len(curve) == 2 and all(0 <= a <= 1 for a in curve)
  summary = json.loads((workdir / "gpt1" / "ablate" / "summary.json").read_text())
  assert set(summary) >= {"full", "no_aux_lm", "no_pretraining", "transfer_0"}
  assert summary["transfer_curve"] == [summary["transfer_0"], summary["full"]]
  no_pretraining = json.loads(
      (workdir / "gpt1" / "ablate" / "no_pretraining" / "summary.json").read_text())
  assert no_pretraining["init_from"] == ""
  assert "| no pre-training |" in markdown and f"| {summary['full']:.4f} |" in markdown
  for image in ("gpt1_zero_shot.png", "gpt1_transfer.png"):
    assert f"({image})" in markdown and (workdir / image).stat().st_size > 1000


def test_finetune_from_all_or_some_blocks(pretrained, tmp_path, capsys):
  _run(tmp_path / "all", "--mode=finetune", f"--config.init_from={pretrained}")
  summary = json.loads((tmp_path / "all" / "summary.json").read_text())
  assert summary["task"] == "synthetic_choice" and summary["num_train"] == 64
  assert 0 <= summary["eval_accuracy"] <= 1 and summary["steps"] == 4
  assert "freshly initialised: clf_head" in capsys.readouterr().out
  _run(tmp_path / "none", "--mode=finetune", f"--config.init_from=pretrained:{pretrained}",
       "--config.finetune.transfer_layers=0", "--config.finetune.task=synthetic_entailment")
  fresh = capsys.readouterr().out.split("freshly initialised: ")[1].split("\n")[0]
  assert fresh.startswith("clf_head/bias, clf_head/kernel, h_0/")
  assert "wte" not in fresh and "wpe" not in fresh
  summary = json.loads((tmp_path / "none" / "summary.json").read_text())
  assert summary["transfer_layers"] == 0 and 0 <= summary["eval_accuracy"] <= 1


def test_similarity_regression_on_stsb_format(pretrained, tmp_path):
  """STS-B's files (a fixture in its format): both orderings, one regression output, Pearson."""
  fixtures = pathlib.Path(__file__).resolve().parent / "fixtures"
  _run(tmp_path, "--mode=finetune", f"--config.init_from={pretrained}",
       "--config.finetune.task=stsb", "--config.finetune.batch_size=8",
       f"--config.data.manual_dir={fixtures}", f"--config.data.data_dir={tmp_path / 'tfds'}")
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["num_train"] == 8 and summary["num_eval"] == 4
  assert -1 <= summary["eval_pearson"] <= 1 and "eval_accuracy" not in summary


def test_export_loads_in_transformers_with_equal_logits(pretrained, tmp_path):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from lineage.milestones.gpt1 import pretrain  # pylint: disable=import-outside-toplevel
  from lineage.models import gpt  # pylint: disable=import-outside-toplevel
  from lineage.train import weights  # pylint: disable=import-outside-toplevel
  _run(tmp_path, "--mode=export", f"--config.init_from={pretrained}",
       f"--export_dir={tmp_path / 'hf'}")
  model = transformers.OpenAIGPTLMHeadModel.from_pretrained(tmp_path / "hf").eval()
  cfg = _small_config()
  model_cfg = pretrain.model_config(cfg)
  params = weights.restore_params(cfg, str(pretrained), pretrain.gpt_task(model_cfg))
  tokens = np.array([[256, 116, 104, 101, 32, 114, 101, 100]])
  ours = gpt.GPT(model_cfg).apply({"params": params}, jnp.asarray(tokens))
  with torch.no_grad():
    theirs = model(torch.tensor(tokens)).logits.numpy()
  np.testing.assert_allclose(np.asarray(ours), theirs, atol=1e-4)


def test_bad_input_is_a_clear_error(tmp_path):
  manual = tmp_path / "manual" / "stsb"
  manual.mkdir(parents=True)
  header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
  (manual / "train.tsv").write_text(f"{header}\n0\tg\tf\t2012\t1\tn\tn\tA cat.\tA dog.\tsimilar\n")
  (manual / "dev.tsv").write_text(f"{header}\n0\tg\tf\t2012\t1\tn\tn\tA cat.\tA dog.\t2.5\n")
  with pytest.raises(ValueError, match=r"train.tsv:2: similarity score 'similar' is not a number"):
    tasks.examples("stsb", "train", data_dir=str(tmp_path / "tfds"),
                   manual_root=str(tmp_path / "manual"))
  with pytest.raises(ValueError, match="unknown finetune.task 'cola'"):
    _run(tmp_path / "run", "--mode=finetune", "--config.finetune.task=cola")
  with pytest.raises(ValueError, match="needs --config.finetune.pretrained"):
    _run(tmp_path / "run", "--mode=ablate")


def test_long_examples_are_cut_from_the_left_and_counted(pretrained, tmp_path, capsys):
  _run(tmp_path, "--mode=finetune", f"--config.init_from={pretrained}",
       "--config.finetune.max_len=24")
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["max_len"] == 24 and summary["truncated_train"] > 0
  assert f"{summary['truncated_train']} training sequences were longer than 24 tokens" in \
      capsys.readouterr().out
