"""The few-shot tasks: the real ones read ../shared/data through their builders (skipped when it
is absent), in the paper's formats and with the paper's splits; the synthetic ones need no
files and are deterministic for a seed."""

import jax
import jax.numpy as jnp
import pytest

from lineage.data import tokenizers
from lineage.eval import few_shot, few_shot_tasks
from lineage.models import gpt


def test_synthetic_tasks_are_deterministic_and_well_formed():
  for name in few_shot_tasks.SYNTHETIC:
    task = few_shot_tasks.load(name, limit=20, seed=4)
    assert task == few_shot_tasks.load(name, limit=20, seed=4)
    assert task != few_shot_tasks.load(name, limit=20, seed=5)
    assert len(task.tests) == len(task.demonstrations) == 20
    assert len({e.uid for e in task.tests + task.demonstrations}) == 40
  compare = few_shot_tasks.load("synthetic_compare", limit=50)
  for e in compare.tests:
    assert max(e.choices, key=int) == e.choices[e.label]
    assert e.context == f"Which is larger, {e.choices[0]} or {e.choices[1]}?\nAnswer:"
  successor = few_shot_tasks.load("synthetic_successor", limit=5)
  for e in successor.tests:
    assert int(e.answers[0]) == int(e.context.split("after ")[1].rstrip("?\nA:")) + 1
  cloze = few_shot_tasks.load("synthetic_cloze", limit=5)
  assert all(e.context.endswith(" ___. ->") for e in cloze.tests)
  with pytest.raises(ValueError, match="limit=0"):
    few_shot_tasks.load("synthetic_cloze", limit=0)


@pytest.fixture
def real_tasks(shared_data):
  return {name: few_shot_tasks.load(name, manual_root=str(shared_data))
          for name in ("lambada", "story_cloze", "rte", "sst2")}


@pytest.mark.slow  # Prepares four TFDS datasets (about 17 s on a busy machine).
def test_real_tasks_have_the_papers_splits_and_formats(real_tasks):
  lambada, story, rte, sst2 = (real_tasks[n] for n in ("lambada", "story_cloze", "rte", "sst2"))
  assert len(lambada.tests) == 5153 and lambada.demonstrations == lambada.tests
  assert lambada.kind == "cloze" and lambada.primary == "acc"
  first = lambada.tests[0]
  assert first.context.endswith(" ___. ->") and " " not in first.choices[0]
  assert (story.demo_split, story.test_split) == ("validation", "test")
  assert len(story.demonstrations) == len(story.tests) == 1871
  assert all(len(e.choices) == 2 for e in story.tests)
  assert (rte.demo_split, rte.test_split) == ("train", "validation")
  assert (len(rte.demonstrations), len(rte.tests)) == (2490, 277)
  # GLUE label 0 is entailment, shown as "True": 146 of the 277 validation pairs.
  assert sum(e.completion == "True" for e in rte.tests) == 146
  assert rte.tests[0].context.endswith(" True or False?\nAnswer:")
  assert (len(sst2.demonstrations), len(sst2.tests)) == (6920, 872)
  assert sst2.tests[0].context.endswith("\nQuestion: Is this sentence positive or negative?"
                                        "\nAnswer:")
  assert {e.completion for e in sst2.tests} == {"negative", "positive"}


@pytest.mark.slow
def test_real_tasks_evaluate_with_a_tiny_gpt2(real_tasks, shared_data):
  """Each real task scores 8 test examples at K = 0 and 2 with GPT-2's BPE."""
  bpe = tokenizers.GPT2BPE.from_dir(shared_data / "gpt2_bpe")
  cfg = gpt.GPTConfig(vocab_size=50257, context=512, num_layers=1, num_heads=2, embed_dim=32,
                      mlp_dim=64, dropout=0.0)
  params = jax.jit(lambda r: gpt.GPT(cfg).init(r, jnp.zeros((1, 8), jnp.int32))["params"])(
      jax.random.PRNGKey(0))
  model = few_shot.Model(cfg, params, bpe, batch_size=4)
  for name, task in real_tasks.items():
    result = few_shot.evaluate(model, task, shots=(0, 2), max_examples=8,
                               rules=("per_token", "unconditional"))
    for k in (0, 2):
      row = result["by_k"][k]
      assert 0.0 <= row[result["primary"]] <= 1.0 and row["shots_used"] == k, name


@pytest.mark.slow
def test_bench_scores_like_lm_evaluation_harness_at_zero_shot(shared_data, tmp_path, monkeypatch):
  """At K = 0 our prompts are lm-evaluation-harness's rte prompts, token for token, so the
  summed-log-probability accuracy on the same exported weights is the same."""
  pytest.importorskip("lm_eval")
  from configs import gpt2 as gpt2_config  # pylint: disable=import-outside-toplevel
  from lineage.bench import few_shot as few_shot_bench  # pylint: disable=import-outside-toplevel
  for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    monkeypatch.setenv(name, "1")
  monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
  cfg = gpt2_config.get_config("tiny")
  cfg.model.update(vocab_size=50257, context=256, num_layers=2, embed_dim=64, mlp_dim=256)
  cfg.data.vocab_dir = str(shared_data / "gpt2_bpe")
  cfg.zero_shot.manual_dir = str(shared_data)
  result = few_shot_bench.bench_few_shot(cfg, "rte", 0, 24, 8, pairs=1, warmup=0)
  assert result["accuracy"] == result["lm_eval_accuracy"]
  assert {"whole_prompts", "lm_eval"} <= set(result["baselines"])
  assert result["examples_per_sec"] > 0 and result["reuse_speedup"] > 0
