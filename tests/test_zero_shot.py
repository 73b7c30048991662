"""GPT-2 zero-shot evaluation: per-example log-likelihoods equal transformers' on the same tiny
weights, and the whole run on the real LAMBADA, WikiText-2 and PTB plus fixtures."""

import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from configs import gpt2 as gpt2_config
from lineage.data import tokenizers
from lineage.eval import detokenize, lambada, lm_metrics, scoring, zero_shot
from lineage.interop import hf_gpt2
from lineage.milestones.gpt2 import table3
from lineage.milestones.gpt2 import zero_shot as gpt2_zero_shot

REPO = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
  """A random tiny GPT2LMHeadModel in eval mode, and our (cfg, params) imported from it."""
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  torch.manual_seed(0)
  config = transformers.GPT2Config(vocab_size=50257, n_positions=128, n_embd=32, n_layer=2,
                                   n_head=2, bos_token_id=50256, eos_token_id=50256)
  model = transformers.GPT2LMHeadModel(config).eval()
  path = tmp_path_factory.mktemp("tiny_gpt2")
  model.save_pretrained(path)
  cfg, params = hf_gpt2.import_hf(path)
  return model, cfg, params


@pytest.fixture
def bpe(shared_data):
  return tokenizers.GPT2BPE.from_dir(shared_data / "gpt2_bpe")


def _torch_scores(model, requests):
  """(summed target log-prob, all targets argmax) per request, straight from transformers."""
  import torch  # pylint: disable=import-outside-toplevel
  sums, greedy = [], []
  with torch.no_grad():
    for request in requests:
      ids = torch.tensor(request.tokens[None].astype(np.int64))
      logp = torch.log_softmax(model(ids[:, :-1]).logits[0].double(), dim=-1)
      targets = ids[0, 1:]
      picked = logp[torch.arange(len(targets)), targets][-request.num_targets:]
      sums.append(picked.sum().item())
      greedy.append(bool((logp.argmax(-1) == targets)[-request.num_targets:].all()))
  return np.array(sums), np.array(greedy)


def test_lambada_loglikelihoods_equal_transformers(tiny_hf, bpe, shared_data):
  model, cfg, params = tiny_hf
  with open(shared_data / "lambada" / "lambada_test.jsonl") as f:
    passages = [json.loads(next(f))["text"] for _ in range(6)]
  requests = [p.request for p in lambada.passages(bpe, passages)]
  assert all(r.tokens[0] == bpe.eot_id for r in requests)
  last_words = [bpe.decode(r.tokens[-r.num_targets:].tolist()) for r in requests]
  assert last_words == [" " + p.rsplit(" ", 1)[1] for p in passages]
  scores = scoring.Scorer(cfg, params, batch_size=4).score(requests)
  expected, greedy = _torch_scores(model, requests)
  np.testing.assert_allclose(scores.logprob, expected, rtol=1e-4)
  assert scores.greedy.tolist() == greedy.tolist()


@pytest.mark.slow
def test_wikitext2_windows_equal_transformers(tiny_hf, bpe, shared_data):
  model, cfg, params = tiny_hf
  lines = (shared_data / "wikitext2" / "wiki.test.tokens").read_text().split("\n")[:12]
  ids = zero_shot.corpus_ids(bpe, lines, detokenize.wikitext)
  requests = lm_metrics.sliding_windows(zero_shot.with_bos(bpe, ids), 128, 48)
  assert sum(r.num_targets for r in requests) == len(ids) and len(requests) > 2
  scores = scoring.Scorer(cfg, params, batch_size=3).score(requests)
  np.testing.assert_allclose(scores.logprob, _torch_scores(model, requests)[0], rtol=1e-4)


@pytest.fixture
def manual_root(tmp_path_factory, shared_data):
  """Real LAMBADA, WikiText-2 and PTB; upstream-format fixtures for the absent datasets."""
  root = tmp_path_factory.mktemp("manual")
  for name in ("lambada", "wikitext2", "ptb"):
    (root / name).symlink_to(shared_data / name)
  for name in ("cbt", "enwik8", "text8", "wikitext103", "lm1b"):
    (root / name).symlink_to(FIXTURES / name)
  return root


def _config(tmp_path_factory, manual_root, **zero_shot_cfg):
  cfg = gpt2_config.get_config("tiny")
  cfg.data.data_dir = str(tmp_path_factory.getbasetemp() / "zero_shot_tfds")
  cfg.zero_shot.update(manual_dir=str(manual_root), context=64, stride=32, batch_size=4,
                       max_examples=8, max_bytes=300, **zero_shot_cfg)
  return cfg


@pytest.mark.slow
def test_run_writes_summary_and_table3_report(tiny_hf, bpe, manual_root, tmp_path,
                                              tmp_path_factory):
  _, model_cfg, params = tiny_hf
  cfg = _config(tmp_path_factory, manual_root)
  summary = gpt2_zero_shot.run(cfg, model_cfg, params, bpe, tmp_path, model_name="tiny random")
  assert set(summary) == set(gpt2_zero_shot.DATASETS) - {"synthetic_text"}  # The config's list.
  assert json.loads((tmp_path / "summary.json").read_text()) == summary
  lambada = summary["lambada"]
  assert lambada["num_examples"] == 8 and lambada["ppl"] > 1
  assert 0 <= lambada["acc_stopword_filter"] <= 1 and 0 <= lambada["acc"] <= 1
  assert summary["cbt_cn"]["num_examples"] == 3  # The fixture's three questions.
  # No NE fixture: the cell says so and the note gives the command that fetches the file.
  assert "cbtest_NE_test_2500ex.txt" in summary["cbt_ne"]["needs_data"]
  for name, lines in (("wikitext2", 8), ("ptb", 8), ("wikitext103", 8), ("1bw", 3)):
    result = summary[name]
    assert result["num_lines"] == lines, name
    assert result["word_ppl"] > 1 and result["token_ppl"] > 1
    # Both perplexities come from the same nats, over different counts.
    assert np.log(result["word_ppl"]) * result["num_words"] == pytest.approx(result["nats"])
    assert np.log(result["token_ppl"]) * result["num_tokens"] == pytest.approx(result["nats"])
  ptb_lines = (manual_root / "ptb" / "ptb.test.txt").read_text().split("\n")[:8]
  assert summary["ptb"]["num_words"] == lm_metrics.word_count(ptb_lines)
  assert summary["enwik8"]["num_units"] == 100  # The fixture's 5% test split (< max_bytes).
  assert summary["text8"]["num_units"] == 50
  assert summary["enwik8"]["bpb"] == pytest.approx(
      summary["enwik8"]["nats"] / np.log(2) / 100)
  report = (tmp_path / "report.md").read_text()
  header = next(line for line in report.splitlines() if line.startswith("| Model |"))
  assert [h[0] for h in table3.COLUMNS] == header.split(" | ")[1:len(table3.COLUMNS) + 1]
  row = next(line for line in report.splitlines() if line.startswith("| tiny random |"))
  cells = row.strip("| ").split(" | ")
  assert cells[4] == "needs data" and cells[2] == f"{100 * lambada['acc_stopword_filter']:.2f}"
  assert "| GPT-2 1542M (paper) | 8.63 | 63.24 | 93.30 | 89.05 | 18.34 | 35.76 | 0.93 | " \
      "0.98 | 17.48 | 42.16 |" in report
  assert summary["cbt_ne"]["needs_data"] in report

  # A second model into the same directory adds its row; summary.json is that model's.
  cfg.zero_shot.datasets = "ptb"
  second = gpt2_zero_shot.run(cfg, model_cfg, params, bpe, tmp_path, model_name="second")
  assert set(second) == {"ptb"} and second["ptb"]["nats"] == pytest.approx(summary["ptb"]["nats"])
  report = (tmp_path / "report.md").read_text()
  assert "| tiny random |" in report and "| second |" in report
  second_row = next(line for line in report.splitlines() if line.startswith("| second |"))
  assert "not run" in second_row

  # The detokenizer ablation scores PTB's own tokenization: other text, same word count.
  cfg.zero_shot.detokenize = False
  raw = gpt2_zero_shot.run(cfg, model_cfg, params, bpe, tmp_path, model_name="raw")
  assert raw["ptb"]["num_words"] == summary["ptb"]["num_words"]
  assert raw["ptb"]["num_tokens"] != summary["ptb"]["num_tokens"]
  assert "detokenize=False" in (tmp_path / "report.md").read_text()


@pytest.mark.slow
def test_report_states_its_conventions_and_what_was_scored(tiny_hf, bpe, manual_root, tmp_path,
                                                           tmp_path_factory):
  _, model_cfg, params = tiny_hf
  cfg = _config(tmp_path_factory, manual_root, datasets="lambada,wikitext2,cbt_cn")
  summary = gpt2_zero_shot.run(cfg, model_cfg, params, bpe, tmp_path)
  assert summary["lambada"]["stop_words"] == lambada.STOP_WORDS_NAME
  assert 0 <= summary["lambada"]["num_stopword_targets"] <= 8
  report = (tmp_path / "report.md").read_text()
  assert "every text after one `<|endoftext|>`; window 64, stride 32; context crosses " \
      "article boundaries" in report
  wikitext = summary["wikitext2"]
  assert f"wikitext2 8 lines, {wikitext['num_words']:,} words" in report
  assert "245,569" not in report  # The full split's count, for a run of its first 8 lines.
  assert f"lambada 8 examples ({summary['lambada']['num_stopword_targets']} targets" in report
  cfg.zero_shot.update(eot_prefix=False, documents="article")
  gpt2_zero_shot.run(cfg, model_cfg, params, bpe, tmp_path, model_name="article")
  assert "no `<|endoftext|>` prefix; window 64, stride 32; context restarts at each WikiText " \
      "article" in (tmp_path / "report.md").read_text()
  cfg.zero_shot.documents = "page"
  with pytest.raises(ValueError, match="zero_shot.documents='page'; choose one of stream, "
                     "article"):
    gpt2_zero_shot.run(cfg, model_cfg, params, bpe, tmp_path)


def test_cbt_text_has_no_latex_quotes():
  detokenizer = detokenize.DETOKENIZERS[gpt2_zero_shot.DATASETS["cbt_cn"].detokenizer]
  text = (FIXTURES / "cbt" / "cbtest_CN_test_2500ex.txt").read_text()
  assert "``" in text and "''" in text
  out = detokenizer(text)
  assert "``" not in out and "''" not in out and '"quotes"' in out


class _CountingScorer:
  """Scores every target -1 nat and keeps the requests it saw."""

  def __init__(self):
    self.requests = []

  def score(self, requests):
    self.requests += requests
    return scoring.Scores(-np.array([r.num_targets for r in requests], float),
                          np.zeros(len(requests), bool))


def test_enwik8_cut_inside_a_character_is_scored_losslessly(bpe):
  text = "Zürich – 東京 😀 naïve\n" * 5
  data = text.encode("utf-8")
  cut = data[2:data.index("😀".encode()) + 2]  # Starts and ends inside a character.
  scorer = _CountingScorer()
  result = zero_shot.units(scorer, bpe, cut, 16, 8)
  assert result["dropped_first_bytes"] == 1 and result["dropped_last_bytes"] == 2
  assert result["num_units"] == len(cut) - 3
  scored = [int(t) for r in scorer.requests for t in r.tokens[-r.num_targets:]]
  assert bpe.decode_bytes(scored) == cut[1:-2]
  assert result["nats"] == result["num_tokens"] == len(scored)
  with pytest.raises(ValueError, match="byte 3 of the scored text is not UTF-8"):
    zero_shot.units(scorer, bpe, b"abc\xffdef", 16, 8)


def test_articles_restart_the_context(bpe, shared_data):
  lines = (shared_data / "wikitext2" / "wiki.test.tokens").read_text().split("\n")[:60]
  groups = zero_shot.articles(lines)
  assert [g[:2] for g in groups] == [[" ", " = Robert <unk> = "], [" = Du Fu = ", " "]]
  assert groups[0] + groups[1] == lines
  assert len(zero_shot.articles((shared_data / "wikitext2" / "wiki.test.tokens").read_text()
                                .split("\n"))) == 62  # lm-evaluation-harness's test documents.
  scorer = _CountingScorer()
  article = zero_shot.words(scorer, bpe, lines, detokenize.wikitext, 64, 32, documents="article")
  assert article["num_documents"] == len(groups)
  eots = sum(int(r.tokens[0] == bpe.eot_id) for r in scorer.requests)
  assert eots == len(groups)  # Each article's first window starts at its own <|endoftext|>.
  separately = sum(zero_shot.words(_CountingScorer(), bpe, g, detokenize.wikitext, 64, 32)["nats"]
                   for g in groups)
  assert article["nats"] == separately
  stream = zero_shot.words(_CountingScorer(), bpe, lines, detokenize.wikitext, 64, 32)
  assert stream["num_documents"] == 1 and stream["num_words"] == article["num_words"]
  no_eot = zero_shot.words(_CountingScorer(), bpe, lines, detokenize.wikitext, 64, 32,
                           eot_prefix=False)
  assert no_eot["num_tokens"] == stream["num_tokens"] - 1


def test_bf16_compute_scores_like_fp32(tiny_hf, bpe, shared_data):
  """The head and log-softmax run in float32: bf16 compute keeps the greedy flags and the
  perplexity within 0.5%."""
  _, model_cfg, params = tiny_hf
  with open(shared_data / "lambada" / "lambada_test.jsonl") as f:
    texts = [json.loads(next(f))["text"] for _ in range(24)]
  split = lambada.passages(bpe, texts)
  fp32 = scoring.Scorer(model_cfg, params, batch_size=8)
  bf16 = scoring.Scorer(dataclasses.replace(model_cfg, dtype="bfloat16"), params, batch_size=8)
  # Requests whose targets are the fp32 model's own greedy tokens, so every flag is True there.
  contexts = [list(p.context) for p in split]
  for _ in range(3):
    for context, token in zip(contexts, fp32.next_tokens(contexts)):
      context.append(int(token))
  own = [lm_metrics.Request(np.asarray(c, np.int32), 3) for c in contexts]
  true_targets = [p.request for p in split]
  for requests in (own, true_targets):
    want, got = fp32.score(requests), bf16.score(requests)
    assert got.greedy.tolist() == want.greedy.tolist()
    assert np.exp(-got.logprob.mean()) == pytest.approx(np.exp(-want.logprob.mean()), rel=5e-3)
  assert fp32.score(own).greedy.all()


def test_missing_data_is_reported_not_invented(tiny_hf, bpe, tmp_path, tmp_path_factory):
  _, model_cfg, params = tiny_hf
  cfg = _config(tmp_path_factory, tmp_path / "empty", datasets="enwik8,1bw")
  cfg.data.data_dir = str(tmp_path / "tfds")
  summary = gpt2_zero_shot.run(cfg, model_cfg, params, bpe, tmp_path / "out")
  assert summary["enwik8"]["needs_data"] == (
      f"mkdir -p {tmp_path}/empty/enwik8 && curl -L -o /tmp/enwik8.zip "
      f"http://mattmahoney.net/dc/enwik8.zip && unzip -o -j /tmp/enwik8.zip enwik8 "
      f"-d {tmp_path}/empty/enwik8")
  assert "--strip-components=1 1-billion-word-language-modeling-benchmark-r13output/" \
      "heldout-monolingual.tokenized.shuffled" in summary["1bw"]["needs_data"]
  assert (tmp_path / "out" / "report.md").read_text().count("needs data") == 2


def test_embedded_corpus_needs_no_download(tiny_hf, bpe, tmp_path, tmp_path_factory):
  """synthetic_text is generated, so it is scored even with an empty manual directory."""
  _, model_cfg, params = tiny_hf
  cfg = _config(tmp_path_factory, tmp_path / "empty", datasets="synthetic_text,ptb")
  cfg.zero_shot.max_examples = 4
  cfg.data.data_dir = str(tmp_path / "tfds")
  summary = gpt2_zero_shot.run(cfg, model_cfg, params, bpe, tmp_path / "out")
  assert summary["synthetic_text"]["num_lines"] == 4
  assert summary["synthetic_text"]["word_ppl"] > 1 and "needs_data" in summary["ptb"]
  row = next(line for line in (tmp_path / "out" / "report.md").read_text().splitlines()
             if line.startswith("| model |"))
  assert row.strip("| ").split(" | ")[-1] == f"{summary['synthetic_text']['word_ppl']:.2f}"


def test_bad_input_is_a_clear_error(tiny_hf, bpe, tmp_path, tmp_path_factory):
  _, model_cfg, params = tiny_hf
  cfg = _config(tmp_path_factory, tmp_path, datasets="lambada,wikitext3")
  with pytest.raises(ValueError, match=r"unknown zero_shot.datasets \['wikitext3'\]"):
    gpt2_zero_shot.run(cfg, model_cfg, params, bpe, tmp_path)
  with pytest.raises(ValueError, match="passage 1 has no last word"):
    lambada.passages(bpe, ["a fine passage", "nospace"])


@pytest.mark.slow
def test_bench_zero_shot_matches_transformers(shared_data, tmp_path):
  """bench --what=zero_shot times both on the same windows and weights, which must agree."""
  pytest.importorskip("transformers")
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["LINEAGE_MANUAL_DIR"] = str(shared_data)
  args = ["--config=configs/gpt2.py:tiny", "--config.model.num_layers=1",
          "--config.model.embed_dim=32", "--config.model.num_heads=2",
          "--config.model.mlp_dim=64", "--config.model.context=64",
          "--config.model.vocab_size=50257", f"--config.data.data_dir={tmp_path}",
          "--what=zero_shot", "--batch=2", "--steps=2", "--warmup=1"]
  done = subprocess.run([sys.executable, "-m", "experiments.bench", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  result = json.loads(done.stdout.strip().splitlines()[-1])
  assert result["windows"] == 4 and result["tokens"] == 4 * 64
  assert result["tokens_per_sec"] > 0 and result["hf_tokens_per_sec"] > 0
  assert result["max_abs_logprob_difference"] < 1e-3


@pytest.mark.slow
def test_lambada_agrees_with_lm_evaluation_harness(tiny_hf, bpe, shared_data, tmp_path,
                                                  monkeypatch):
  """lm-evaluation-harness's own lambada_openai task, pointed at the local file, and ours with
  eot_prefix=False: the same accuracy and perplexity, and the same per-passage scores."""
  pytest.importorskip("lm_eval")
  import lm_eval  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel
  from lm_eval import tasks  # pylint: disable=import-outside-toplevel
  for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    monkeypatch.setenv(name, "1")
  monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
  model, cfg, params = tiny_hf
  model_dir = tmp_path / "model"
  model.save_pretrained(model_dir)
  transformers.GPT2TokenizerFast(vocab=str(shared_data / "gpt2_bpe" / "encoder.json"),
                                 merges=str(shared_data / "gpt2_bpe" / "vocab.bpe"),
                                 ).save_pretrained(model_dir)
  upstream = pathlib.Path(tasks.__file__).parent / "lambada" / "lambada_openai.yaml"
  task_dir = tmp_path / "tasks"
  task_dir.mkdir()
  (task_dir / "lambada_local.yaml").write_text(
      f"include: {upstream}\ntask: lambada_openai_local\ndataset_path: json\n"
      f"dataset_name: null\ndataset_kwargs:\n  data_files:\n"
      f"    test: {shared_data / 'lambada' / 'lambada_test.jsonl'}\n")
  count = 40
  results = lm_eval.simple_evaluate(
      model="hf", model_args=f"pretrained={model_dir},dtype=float32", device="cpu",
      tasks=["lambada_openai_local"], task_manager=tasks.TaskManager(include_path=str(task_dir)),
      limit=count, batch_size=8, log_samples=True)
  theirs = results["results"]["lambada_openai_local"]
  samples = sorted(results["samples"]["lambada_openai_local"], key=lambda s: s["doc_id"])
  with open(shared_data / "lambada" / "lambada_test.jsonl") as f:
    texts = [json.loads(next(f))["text"] for _ in range(count)]
  ours = lambada.evaluate(scoring.Scorer(cfg, params, batch_size=8), bpe, texts,
                          eot_prefix=False)
  assert ours["acc"] == pytest.approx(theirs["acc,none"], abs=1e-4)
  # A random model's perplexity is about 1e5, so within 1e-4 relative: the log agrees to 1e-4.
  assert ours["ppl"] == pytest.approx(theirs["perplexity,none"], rel=1e-4)
  split = lambada.passages(bpe, texts, eot_prefix=False)
  per_passage = scoring.Scorer(cfg, params, batch_size=8).score([p.request for p in split])
  their_logprob = [s["resps"][0][0][0] for s in samples]
  np.testing.assert_allclose(per_passage.logprob, their_logprob, atol=1e-4)
  assert per_passage.greedy.tolist() == [bool(s["resps"][0][0][1]) for s in samples]
