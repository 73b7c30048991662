"""The Transformer milestone: the synthetic language pair's grammar, the label-smoothed loss,
checkpoint averaging, and the binary's train / eval / average / translate run in this process
at a reduced size (its tour section and a subprocess run are slow)."""

import io
import json
import logging
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import transformer as transformer_config
from lineage.data import tokenizers
from lineage.milestones.transformer import bench, language, modes, tour
from lineage.milestones.transformer import task as task_lib
from lineage.models import transformer
from tests import binaries

REPO = pathlib.Path(__file__).resolve().parent.parent
SMALL = ["--config.model.embed_dim=32", "--config.model.mlp_dim=64",
         "--config.model.num_layers=1", "--config.model.vocab_size=300",
         "--config.data.train_pairs=300", "--config.data.eval_pairs=16",
         "--config.data.max_tokens=256", "--config.data.buckets=32",
         "--config.train.log_every=5",
         "--config.train.eval_every=10", "--config.train.checkpoint_every=5",
         "--config.train.keep_checkpoints=3", "--config.eval.bleu_pairs=16",
         "--config.eval.average_last=3", "--config.decode.extra_length=4",
         "--config.decode.batch_size=16"]


def expected_translation(source):
  """The target by the language's rules, written out a second time: for each clause, the
  subject and object noun phrases with adjectives after the (suffixed) noun, verb last."""
  verbs = {**{v: v for v in language.VERBS},
           **{language.PLURAL_VERBS.get(v, v[:-1]): v for v in language.VERBS}}
  nouns = {**{n: n for n in language.NOUNS},
           **{language.PLURAL.get(n, n + "s"): n for n in language.NOUNS}}
  clauses = []
  for clause in source.removesuffix(".").split(" and "):
    words = clause.split()
    at = next(i for i, w in enumerate(words) if w in verbs)
    out = []
    for phrase in (words[:at], words[at + 1:]):
      noun = nouns[phrase[-1]]
      out += ["la", language.NOUNS[noun] + ("j" if phrase[-1] != noun else "")]
      out += [language.ADJECTIVES[a] for a in phrase[1:-1]]
    clauses.append(" ".join(out + [language.VERBS[verbs[words[at]]]]))
  return " kaj ".join(clauses) + "."


def test_the_synthetic_pair_follows_its_grammar_and_its_seed():
  pairs = language.pairs(200, 0)
  assert pairs == language.pairs(200, 0) and pairs != language.pairs(200, 1)
  for source, target in pairs:
    assert target == expected_translation(source)
  assert any(" and " in s for s, _ in pairs) and any("j " in t for _, t in pairs)


def test_multi30k_pairs_come_from_the_real_files(shared_data, tmp_path):
  data = transformer_config.get_config("tiny").data
  data.update(name="multi30k", data_dir=str(tmp_path), manual_dir=str(shared_data / "multi30k"))
  pairs = task_lib.text_pairs(data, "validation")
  assert len(pairs) == 1014
  assert pairs[0] == ("A group of men are loading cotton onto a truck",
                      "Eine Gruppe von Männern lädt Baumwolle auf einen Lastwagen")
  assert len(task_lib.text_pairs(data, "test")) == 1000


@pytest.mark.slow
def test_loss_is_label_smoothed_cross_entropy_over_real_target_tokens():
  cfg = transformer.TransformerConfig(vocab_size=11, num_layers=1, embed_dim=16, mlp_dim=32,
                                      num_heads=2, dropout=0.0)
  model = transformer.Transformer(cfg)
  rng = np.random.default_rng(0)
  batch = {"source": rng.integers(0, 11, (2, 5)), "target_input": rng.integers(0, 11, (2, 4)),
           "target": rng.integers(0, 11, (2, 4)),
           "source_segment_ids": np.array([[1] * 5, [1] * 3 + [0] * 2]),
           "target_segment_ids": np.array([[1] * 4, [1] * 2 + [0] * 2])}
  params = jax.jit(model.init)(jax.random.PRNGKey(0), batch["source"],
                               batch["target_input"])["params"]
  loss_fn = jax.jit(task_lib.loss_fn(cfg, 0.1), static_argnums=3)
  loss, aux = loss_fn(params, batch, jax.random.PRNGKey(1), True)
  logits = jax.jit(model.apply)({"params": params}, batch["source"], batch["target_input"],
                                batch["source_segment_ids"], batch["target_segment_ids"])
  logp = np.asarray(jax.nn.log_softmax(logits), np.float64)
  real = batch["target_segment_ids"] == 1
  nll = -np.take_along_axis(logp, batch["target"][..., None], -1)[..., 0]
  smoothed = 0.9 * nll - 0.1 * logp.mean(-1)  # 1 - eps on the label, eps spread uniformly
  np.testing.assert_allclose(loss, smoothed[real].sum(), rtol=1e-5)
  np.testing.assert_allclose(aux["nll"], nll[real].sum(), rtol=1e-5)
  assert aux["weight"] == 6


def test_average_params_is_the_mean_in_the_leaves_dtype():
  trees = [{"w": np.full((2,), x, np.float32), "b": {"c": np.array([x], np.float32)}}
           for x in (1.0, 2.0, 6.0)]
  mean = task_lib.average_params(trees)
  np.testing.assert_array_equal(mean["w"], [3.0, 3.0])
  assert mean["b"]["c"].dtype == np.float32 and mean["b"]["c"][0] == 3.0


def test_sources_end_like_training_and_long_lines_are_cut_with_a_warning(caplog):
  """Every source ends in the end token (TokenBatches appends it in training); an empty line
  is that token alone; text outside the vocabulary falls back to bytes and round-trips."""
  tok = tokenizers.train_bpe(["the red fox sees the dog."] * 4, 260)
  odd = "the 狐 sees ß\u00a0✓ 🦊."
  long = " ".join(["fox"] * 20)
  with caplog.at_level(logging.WARNING):
    sources = modes.read_sources(tok, ["the red fox.", "", odd, long], limit=32)
  assert sources[0] == tok.encode("the red fox.") + [tok.eot_id]
  assert sources[1] == [tok.eot_id]
  assert tok.decode(sources[2][:-1]) == odd and max(sources[2]) < tok.vocab_size
  assert sources[3] == tok.encode(long)[:31] + [tok.eot_id]
  assert len(caplog.records) == 1
  assert (f"line 4: {len(tok.encode(long))} tokens, longer than the 32" in caplog.text
          and "its first 31" in caplog.text)


@pytest.mark.slow
def test_bench_translate_times_equal_work_on_both_sides():
  """Both searches must run to the same lengths (bench_translate raises otherwise), and the
  result holds one ratio per round."""
  cfg = transformer_config.get_config("tiny")
  cfg.model.update(embed_dim=32, mlp_dim=64, num_layers=1, vocab_size=300)
  cfg.data.update(train_pairs=100, eval_pairs=4)
  cfg.decode.extra_length = 3
  result = bench.bench_translate(cfg, sentences=3, batch_size=2, pairs=1, torch_threads=(1,))
  assert result["sentences"] == 3 and len(result["pair_ratios"]) == 1
  assert result["baseline"] == "transformers, 1 thread(s)"
  assert result["ratio"] > 0 and result["hf_sentences_per_sec"] > 0


def _in_process(workdir, *args):
  return binaries.run_in_process("transformer", "--config=configs/transformer.py:tiny",
                                 f"--workdir={workdir}", *SMALL, *args)


@pytest.mark.slow
def test_train_eval_average_translate(tmp_path, monkeypatch, capsys, caplog):
  """20 steps with the BLEU hook at 10 and 20, then the test BLEU of the last checkpoint and
  of the mean of the last three; too few checkpoints to average is a clear error. Translate
  gives one line for each input line, an empty one, one longer than the longest bucket and
  one outside the vocabulary included, from a file or stdin alike."""
  _in_process(tmp_path, "--mode=train", "--config.train.steps=20")
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert 0 <= summary["eval_bleu"] <= 100 and summary["eval_nll"] > 0
  logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in logged if "eval_bleu" in r] == [10, 20]
  assert (tmp_path / "tokenizer.json").is_file()
  _in_process(tmp_path, "--mode=eval")
  _in_process(tmp_path, "--mode=average")
  last = json.loads((tmp_path / "eval.json").read_text())
  averaged = json.loads((tmp_path / "average.json").read_text())
  assert averaged["steps"] == [10, 15, 20] and last["pairs"] == averaged["pairs"] == 16
  assert 0 <= last["bleu"] <= 100 and len(last["examples"]) == 5
  with pytest.raises(ValueError, match="average_last"):
    _in_process(tmp_path, "--mode=average", "--config.eval.average_last=4")

  text = "the dog sees the cat.\n\n" + " and ".join(["the red fox sees the dog"] * 8) + \
      ".\nthe 狐 fox sees the dög ✓.\n"
  (tmp_path / "in.txt").write_text(text, encoding="utf-8")
  with caplog.at_level(logging.WARNING):
    _in_process(tmp_path, "--mode=translate", f"--input_file={tmp_path / 'in.txt'}",
                f"--output_file={tmp_path / 'out.txt'}")
  assert "line 3: " in caplog.text and "translating its first 31" in caplog.text
  translated = (tmp_path / "out.txt").read_text(encoding="utf-8")
  assert translated.count("\n") == 4 and translated.endswith("\n")
  capsys.readouterr()
  monkeypatch.setattr(sys, "stdin", io.StringIO(text))
  _in_process(tmp_path, "--mode=translate")
  assert capsys.readouterr().out == translated


def test_config_presets():
  tiny, base, big = (transformer_config.get_config(p) for p in ("tiny", "base", "big"))
  assert (base.model.num_layers, base.model.embed_dim, base.model.mlp_dim,
          base.model.num_heads, base.model.dropout) == (6, 512, 2048, 8, 0.1)
  assert (big.model.embed_dim, big.model.mlp_dim, big.model.num_heads,
          big.model.dropout) == (1024, 4096, 16, 0.3)
  for c in (tiny, base, big):
    assert (c.train.b1, c.train.b2, c.train.eps, c.train.schedule) == (0.9, 0.98, 1e-9, "noam")
    assert (c.decode.beam_size, c.decode.alpha, c.decode.extra_length) == (4, 0.6, 50)
    assert c.train.label_smoothing == 0.1
  assert base.train.warmup_steps == big.train.warmup_steps == 4000
  assert base.model.vocab_size == 37000 and base.data.max_tokens == 25000
  with pytest.raises(ValueError, match="choose tiny, base or big"):
    transformer_config.get_config("huge")


@pytest.mark.slow
def test_binary_runs_as_a_user_runs_it(tmp_path):
  """A subprocess on one CPU device (conftest forces 8 for this process)."""
  flags = os.environ.get("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count=8", "")
  result = subprocess.run(
      [sys.executable, "-m", "experiments.transformer", "--config=configs/transformer.py:tiny",
       f"--workdir={tmp_path}", *SMALL, "--config.train.batch_size=1",
       "--config.train.steps=10"],
      cwd=REPO, env={**os.environ, "XLA_FLAGS": flags.strip()}, capture_output=True,
      encoding="utf-8", errors="replace", timeout=600)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert "eval bleu" in result.stdout and (tmp_path / "checkpoints" / "10").is_dir()


@pytest.mark.slow
def test_tour_section(tmp_path):
  """The tour's transformer section at the reduced size: its table and translations."""
  cfg = transformer_config.get_config("tiny")
  for arg in SMALL + ["--config.train.steps=15"]:
    key, value = arg[len("--config."):].split("=")
    section, field = key.split(".")
    cfg[section][field] = type(cfg[section][field])(value)
  out = tour.SECTION.run(cfg, str(tmp_path))
  assert "## The Transformer (2017)" in out and "test BLEU, mean of checkpoints 5, 10, 15" in out
