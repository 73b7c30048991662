"""TFDS builders: canonical counts on ../shared/data, upstream formats on fixtures, bad input."""

import gzip
import json
import pathlib
import tarfile

import numpy as np
import pytest
import tensorflow_datasets as tfds

from lineage.data import builders
from lineage.data import synthetic
from lineage.data.builders import base, cbt, enwik8, openwebtext, synthetic_text, text8

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("tfds")


@pytest.fixture
def offline(monkeypatch):
  """Every download fails, as with no network."""
  def refuse(self, url):
    raise OSError(f"network unreachable: {url}")
  monkeypatch.setattr(tfds.download.DownloadManager, "download", refuse)
  monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract", refuse)


def load(name, split, data_dir, manual):
  return builders.load(name, split, data_dir=data_dir, manual_dir=manual)


def tokens_with_eos(source):
  return sum(len(r["text"].decode().split()) + 1 for r in source)


def test_registry(tmp_path):
  assert set(builders.TEXT_DATASETS) <= set(builders.BUILDERS)
  for name in builders.BUILDERS:
    features = builders.builder(name, data_dir=tmp_path).info.features
    is_text = list(features.keys()) == ["text"] and isinstance(features["text"],
                                                                 tfds.features.Text)
    assert is_text == (name in builders.TEXT_DATASETS), name
  with pytest.raises(ValueError, match="unknown dataset 'nope'"):
    builders.builder("nope")


@pytest.mark.slow
def test_ptb_counts_and_order(shared_data, data_dir, offline):
  test = load("ptb", "test", data_dir, shared_data / "ptb")
  assert len(test) == 3761 and tokens_with_eos(test) == 82430
  first = (shared_data / "ptb" / "ptb.test.txt").read_text().split("\n")[0]
  assert test[0]["text"].decode() == first
  assert tokens_with_eos(load("ptb", "validation", data_dir, shared_data / "ptb")) == 73760
  assert tokens_with_eos(load("ptb", "train", data_dir, shared_data / "ptb")) == 929589


def test_wikitext2_counts_and_missing_train(shared_data, data_dir, offline):
  test = load("wikitext2", "test", data_dir, shared_data / "wikitext2")
  assert len(test) == 4358 and tokens_with_eos(test) == 245569
  assert tokens_with_eos(load("wikitext2", "validation", data_dir, shared_data / "wikitext2")) \
      == 217646
  with pytest.raises(ValueError, match="Unknown split 'train'"):  # Not in the shared copy.
    load("wikitext2", "train", data_dir, shared_data / "wikitext2")


def test_tiny_shakespeare_splits(shared_data, data_dir, offline):
  texts = {s: load("tiny_shakespeare", s, data_dir, shared_data / "tinyshakespeare")
           for s in ("train", "validation", "test")}
  sizes = {s: sum(len(r["text"].decode()) for r in src) for s, src in texts.items()}
  assert sizes == {"train": 1003854, "validation": 55770, "test": 55770}
  whole = (shared_data / "tinyshakespeare" / "input.txt").read_text()
  assert "".join(texts[s][0]["text"].decode() for s in ("train", "validation", "test")) == whole


def test_lambada(shared_data, data_dir, offline):
  test = load("lambada", "test", data_dir, shared_data / "lambada")
  assert len(test) == 5153
  first = json.loads((shared_data / "lambada" / "lambada_test.jsonl").open().readline())
  assert test[0]["text"].decode() == first["text"]


def test_sst_binary(shared_data, data_dir, offline):
  counts = {s: len(load("sst_binary", s, data_dir, shared_data / "sst_binary"))
            for s in ("train", "validation", "test")}
  assert counts == {"train": 6920, "validation": 872, "test": 1821}
  first = load("sst_binary", "validation", data_dir, shared_data / "sst_binary")[0]
  assert first == {"label": 0, "sentence": b"One long string of cliches."}


def test_humaneval(shared_data, data_dir, offline):
  test = load("humaneval", "test", data_dir, shared_data / "humaneval")
  assert len(test) == 164
  assert test[0]["task_id"] == b"HumanEval/0" and test[0]["entry_point"] == b"has_close_elements"


def test_hh_rlhf_configs(shared_data, data_dir, offline):
  counts = {"harmless-base": 2312, "helpful-base": 2354, "helpful-online": 1137,
            "helpful-rejection-sampled": 2749}
  for subset, count in counts.items():
    test = load(f"hh_rlhf/{subset}", "test", data_dir, shared_data / "hh_rlhf")
    assert len(test) == count
  assert test[0]["chosen"].startswith(b"\n\nHuman:") and test[0]["rejected"] != test[0]["chosen"]


def test_hh_rlhf_train_when_given(tmp_path, offline):
  manual = tmp_path / "hh_rlhf"
  manual.mkdir()
  for split, n in (("train", 3), ("test", 2)):
    pairs = "".join(json.dumps({"chosen": f"\n\nHuman: {split} {i}", "rejected": "no"}) + "\n"
                    for i in range(n))
    (manual / f"helpful-online_{split}.jsonl.gz").write_bytes(gzip.compress(pairs.encode()))
  train = load("hh_rlhf/helpful-online", "train", tmp_path / "tfds", manual)
  assert [r["chosen"] for r in train] == [f"\n\nHuman: train {i}".encode() for i in range(3)]
  assert len(load("hh_rlhf/helpful-online", "test", tmp_path / "tfds", manual)) == 2


def test_story_cloze(shared_data, data_dir, offline):
  test = load("story_cloze", "test", data_dir, shared_data / "story_cloze")
  assert len(test) == 1871 and len(load("story_cloze", "validation", data_dir,
                                        shared_data / "story_cloze")) == 1871
  first = test[0]
  assert first["sentences"][0] == b"My friends all love to go to the club to dance."
  assert list(first["endings"]) == [
      b"My friends decided to keep inviting me out as I am so much fun.",
      b"The next weekend, I was asked to please stay home."]
  assert first["label"] == 1


def test_rte(shared_data, data_dir, offline):
  dev = load("rte", "validation", data_dir, shared_data / "rte")
  assert len(dev) == 277 and len(load("rte", "train", data_dir, shared_data / "rte")) == 2490
  labels = [r["label"] for r in dev]
  assert labels.count(0) == 146 and labels.count(1) == 131
  quoted = [r["sentence1"] for r in dev if b"Amish lantern maker" in r["sentence1"]]
  assert quoted[0].startswith(b"The Amish") and b'"If someone snaps' in quoted[0]


def test_rte_glue_layout(tmp_path, data_dir, offline):
  manual = tmp_path / "rte"
  manual.mkdir()
  (manual / "dev.tsv").write_text('index\tsentence1\tsentence2\tlabel\n'
                                  '0\t"Quoted" start.\tB.\tnot_entailment\n1\tC.\tD.\tentailment\n')
  dev = load("rte", "validation", tmp_path / "tfds", manual)
  assert [(r["sentence1"], r["label"]) for r in dev] == [(b'"Quoted" start.', 1), (b"C.", 0)]


def test_multi30k(shared_data, data_dir, offline):
  test = load("multi30k", "test2016", data_dir, shared_data / "multi30k")
  assert len(test) == 1000
  with gzip.open(shared_data / "multi30k" / "test_2016_flickr.de.gz", "rt") as f:
    assert test[0]["de"].decode() == f.readline().rstrip("\n")
  assert len(load("multi30k", "train", data_dir, shared_data / "multi30k")) == 29000
  assert len(load("multi30k", "validation", data_dir, shared_data / "multi30k")) == 1014


def test_self_instruct(shared_data, data_dir, offline):
  seed = load("self_instruct", "seed_tasks", data_dir, shared_data / "self_instruct")
  assert len(seed) == 175 and seed[0]["id"] == b"seed_task_0"
  assert len(seed[0]["instances"]["output"]) >= 1
  assert len(load("self_instruct", "user_oriented", data_dir, shared_data / "self_instruct")) \
      == 252


def test_split_arithmetic():
  assert base.split_90_5_5(10**8) == (90_000_000, 5_000_000, 5_000_000)
  assert base.split_90_5_5(1115394) == (1003854, 55770, 55770)
  assert base.split_90_5_5(2001) == (1801, 100, 100)


def test_enwik8_keeps_exact_bytes(tmp_path, monkeypatch, offline):
  monkeypatch.setattr(enwik8.Enwik8, "CHUNK", 500)  # Several records per split, in order.
  data = (FIXTURES / "enwik8" / "enwik8").read_bytes()
  sizes = base.split_90_5_5(len(data))
  with pytest.raises(UnicodeDecodeError):  # The train/validation cut splits a character.
    data[sizes[0]:].decode("utf-8")
  pieces = []
  for split, size in zip(("train", "validation", "test"), sizes):
    source = load("enwik8", split, tmp_path, FIXTURES / "enwik8")
    chunks = [r["bytes"] for r in source]
    assert all(c.dtype == np.uint8 for c in chunks) and sum(map(len, chunks)) == size
    pieces.extend(c.tobytes() for c in chunks)
  assert len(load("enwik8", "train", tmp_path, FIXTURES / "enwik8")) == 4
  assert b"".join(pieces) == data


def test_text8(tmp_path, monkeypatch, offline):
  monkeypatch.setattr(text8.Text8, "CHUNK", 300)
  text = (FIXTURES / "text8" / "text8").read_text()
  splits = [load("text8", s, tmp_path, FIXTURES / "text8") for s in ("train", "validation", "test")]
  assert [sum(len(r["text"]) for r in s) for s in splits] == list(base.split_90_5_5(len(text)))
  assert b"".join(r["text"] for s in splits for r in s).decode() == text


def test_wikitext103_fixture(tmp_path, offline):
  test = load("wikitext103", "test", tmp_path, FIXTURES / "wikitext103")
  lines = (FIXTURES / "wikitext103" / "wiki.test.tokens").read_text().split("\n")[:-1]
  assert [r["text"].decode() for r in test] == lines
  assert len(load("wikitext103", "train", tmp_path, FIXTURES / "wikitext103")) == 11


def test_cbt_fixture(tmp_path, offline):
  test = load("cbt/CN", "test", tmp_path, FIXTURES / "cbt")
  assert len(test) == 3 and len(load("cbt/CN", "train", tmp_path, FIXTURES / "cbt")) == 2
  first = test[0]
  assert first["context"].decode().split("\n")[0].startswith("Sentence 1 of story 4")
  assert len(first["context"].decode().split("\n")) == 20
  assert first["query"] == b"The XXXXX went home ." and first["answer"] == b"ink"
  assert len(first["candidates"]) == 10 and b"ink" in list(first["candidates"])


def test_lm1b_fixture(tmp_path, offline):
  train = load("lm1b", "train", tmp_path, FIXTURES / "lm1b")
  assert [r["text"] for r in train] == [b"The cat sat .", b"Markets fell 2 % on Monday .",
                                        b"It rained ."]
  assert len(load("lm1b", "test", tmp_path, FIXTURES / "lm1b")) == 3  # Heldout shard 0 only.


def test_openwebtext_fixture(tmp_path, offline):
  train = load("openwebtext", "train", tmp_path, FIXTURES / "openwebtext")
  assert sorted(r["text"].decode() for r in train) == [
      "A loose extracted document.", "Another document, naïve café.",
      "First web page.\n\nSecond paragraph."]


def test_synthetic_text(tmp_path):
  train = builders.load("synthetic_text", "train", data_dir=tmp_path)
  docs = synthetic.synthetic_documents(6000, 0)
  assert len(train) == 5400 and train[0] == {"text": docs[0].encode()}
  small = synthetic_text.SyntheticText(data_dir=tmp_path, config=synthetic_text.config(40, 3),
                                       file_format="array_record")
  small.download_and_prepare(file_format="array_record")
  test = small.as_data_source(split="test")
  assert [r["text"].decode() for r in test] == synthetic.synthetic_documents(40, 3)[38:]


def test_missing_file_names_manual_path_and_url(tmp_path, offline):
  with pytest.raises(FileNotFoundError) as error:
    load("lambada", "test", tmp_path / "tfds", tmp_path / "empty")
  message = str(error.value)
  assert str(tmp_path / "empty" / "lambada_test.jsonl") in message
  assert "https://openaipublic.blob.core.windows.net/gpt-2/data/lambada_test.jsonl" in message
  with pytest.raises(FileNotFoundError, match="http://mattmahoney.net/dc/enwik8.zip") as error:
    load("enwik8", "train", tmp_path / "tfds", tmp_path / "empty")
  assert str(tmp_path / "empty" / "enwik8") in str(error.value)


def test_no_download_datasets_say_so(tmp_path, offline):
  with pytest.raises(FileNotFoundError, match="no download"):
    load("story_cloze", "test", tmp_path / "tfds", tmp_path / "empty")
  with pytest.raises(FileNotFoundError, match="no download") as error:
    load("openwebtext", "train", tmp_path / "tfds", tmp_path / "empty")
  assert str(tmp_path / "empty") in str(error.value)


@pytest.mark.parametrize("name, filename, content, line", [
    ("lambada", "lambada_test.jsonl", '{"text": "a"}\n{"text": "b"}\n{"text": oops}\n', 3),
    ("lambada", "lambada_test.jsonl", '{"text": "a"}\n{"words": "b"}\n', 2),
    ("sst_binary", "test_binary_sent.csv", "label,sentence\n1,good\n0,bad\n2,huh\n", 4),
    ("sst_binary", "test_binary_sent.csv", 'label,sentence\n1,"good"\n0,bad,extra\n', 3),
    ("cbt/CN", "cbtest_CN_test_2500ex.txt", "1 One .\n3 Three .\n", 2),
])
def test_malformed_line_names_file_and_line(tmp_path, offline, name, filename, content, line):
  manual = tmp_path / "manual"
  manual.mkdir()
  (manual / filename).write_text(content)
  with pytest.raises(ValueError, match=f"{manual / filename}:{line}:"):
    load(name, "test", tmp_path / "tfds", manual)


def test_multi30k_rejects_unpaired_files(tmp_path, offline):
  manual = tmp_path / "multi30k"
  manual.mkdir()
  (manual / "test_2016_flickr.en.gz").write_bytes(gzip.compress(b"A dog.\nA cat.\n"))
  (manual / "test_2016_flickr.de.gz").write_bytes(gzip.compress(b"Ein Hund.\n"))
  with pytest.raises(ValueError, match="has 2 lines but .*test_2016_flickr.de.gz has 1"):
    load("multi30k", "test2016", tmp_path / "tfds", manual)


def test_cbt_rejects_answer_outside_candidates(tmp_path):
  text = "".join(f"{i} s .\n" for i in range(1, 21)) + "21 q XXXXX .\tzebra\t\ta|b\n"
  path = tmp_path / "cbtest_CN_test_2500ex.txt"
  path.write_text(text)
  with pytest.raises(ValueError, match=f"{path}:21: answer 'zebra'"):
    list(cbt.questions(path))


def test_openwebtext_documents_read_nested_shards(tmp_path):
  names = [name for name, _ in openwebtext.documents(FIXTURES / "openwebtext")]
  assert names[0].endswith("0000002-cccc.txt")
  assert names[1].endswith("urlsf_subset00-1_data.xz/0000000-aaaa.txt")
  with tarfile.open(tmp_path / "openwebtext.tar.xz", "w:xz") as archive:  # The release layout.
    archive.add(FIXTURES / "openwebtext" / "urlsf_subset00-1_data.xz",
                "openwebtext/urlsf_subset00-1_data.xz")
  texts = [text for _, text in openwebtext.documents(tmp_path)]
  assert texts == ["First web page.\n\nSecond paragraph.", "Another document, naïve café."]
