"""GPT-1's BPE against transformers' OpenAIGPTTokenizer on every row of the GPT-1 milestone's
real datasets, its special tokens, the paper's standardisation, and bad vocabularies."""

import csv
import functools
import hashlib
import pathlib
import shutil

import pytest

from lineage.data import tokenizers as tok_lib

transformers = pytest.importorskip("transformers")

TRICKY = [
    "", "plain ascii", "Don't STOP believing... it's 10,000$ (or €9.5)!", "café naïve Ångström",
    "emoji 🦊😀 and flags 🇫🇷", "中文字符和日本語のテキスト、한국어", "Ελληνικά, русский",
    "runs    of  spaces\t\ttabs\n\nnewlines\r\n", "nul \x00 and \x7f and \u200b",
    "<unk> _start_ _classify_ <|endoftext|>", "a — b – c ― d … e´f", "it’s “quoted”",
]


def _rows(path, **reader_args):
  with open(path, newline="", encoding="utf-8") as f:
    return list(csv.DictReader(f, **reader_args))


@functools.cache
def _dataset_texts(data_dir: pathlib.Path) -> dict[str, list[str]]:
  """Every text field of every row: SST sentences, RTE sentence pairs, Story Cloze stories
  with both endings."""
  sst = [r["sentence"] for f in sorted(data_dir.glob("sst_binary/*.csv")) for r in _rows(f)]
  rte = [r[k] for f in sorted(data_dir.glob("rte/*.tsv"))
         for r in _rows(f, delimiter="\t", quoting=csv.QUOTE_NONE)
         for k in ("sentence1", "sentence2")]
  cloze = [r[k] for f in sorted(data_dir.glob("story_cloze/*.csv")) for r in _rows(f)
           for k in r if k.startswith(("InputSentence", "RandomFifthSentenceQuiz"))]
  return {"sst_binary": sst, "rte": rte, "story_cloze": cloze}


@functools.cache
def _tokenizers(data_dir: pathlib.Path):
  """Ours, and transformers' built from the same two files."""
  vocab = data_dir / "gpt1_bpe"
  reference = transformers.OpenAIGPTTokenizer(vocab=str(vocab / "encoder_bpe_40000.json"),
                                              merges=str(vocab / "vocab_40000.bpe"))
  return tok_lib.GPT1BPE.from_dir(vocab), reference


def test_dataset_row_counts(shared_data):
  """All rows are read (the counts of MANIFEST.md), so the comparison below covers them."""
  counts = {name: len(texts) for name, texts in _dataset_texts(shared_data).items()}
  assert counts == {"sst_binary": 6920 + 872 + 1821, "rte": 2 * (2490 + 277),
                    "story_cloze": 6 * (1871 + 1871)}


@pytest.mark.parametrize("dataset", ["sst_binary", "rte", "story_cloze"])
def test_equals_transformers_on_every_row(shared_data, dataset):
  ours, reference = _tokenizers(shared_data)
  texts = _dataset_texts(shared_data)[dataset]
  expected = reference(texts, add_special_tokens=False)["input_ids"]
  for text, ids in zip(texts, expected):
    assert ours.encode(text) == ids, text
  decoded = reference.batch_decode(expected, skip_special_tokens=True)
  assert [ours.decode(ids) for ids in expected] == decoded
  assert [ours.decode_bytes(ids).decode().removesuffix(" ") for ids in expected] == decoded


@pytest.mark.parametrize("text", TRICKY)
def test_equals_transformers_on_tricky_text(shared_data, text):
  ours, reference = _tokenizers(shared_data)
  ids = ours.encode(text)
  assert ids == reference.encode(text.replace("<unk>", "< unk >"), add_special_tokens=False)
  assert ours.decode(ids) == reference.decode(ids, skip_special_tokens=True)
  assert ours.decode_bytes(ids).decode().removesuffix(" ") == ours.decode(ids)


def test_decoded_pieces_join_into_the_whole(shared_data):
  """What streaming relies on: decode_bytes of each token, concatenated, is that of all."""
  ours, _ = _tokenizers(shared_data)
  ids = ours.encode("Hello, BACHELORETTE’s world—of tokens!")
  pieces = [ours.decode_bytes([i]) for i in [ours.eot_id, *ids, 40480, 99999]]
  assert b"".join(pieces) == ours.decode_bytes(ids) == b"hello , bachelorette s world of tokens ! "
  assert ours.decode_bytes(ours.encode("bachelorettes")) == b"bachelorettes "


def test_words_end_in_w_and_unknown_characters_are_unk(shared_data):
  ours, reference = _tokenizers(shared_data)
  ids = ours.encode("Hello, BACHELORETTE’s world")
  assert reference.convert_ids_to_tokens(ids) == [
      "hello</w>", ",</w>", "bachelorette</w>", "<unk>", "s</w>", "world</w>"]
  assert ours.decode(ids) == "hello , bachelorette s world"


def test_special_tokens_follow_the_vocabulary_and_are_never_text(shared_data):
  ours, reference = _tokenizers(shared_data)
  assert ours.vocab_size == 40481 and ours.eot_id == 40478
  assert ours.special_ids == {"_start_": 40478, "_delimiter_": 40479, "_classify_": 40480}
  assert not set(ours.encode("_start_ _delimiter_ _classify_")) & set(ours.special_ids.values())
  hello = ours.encode("hello")
  assert ours.decode([40478, *hello, 40479, *hello, 40480, 40481, -1]) == "hello hello"
  tok = tok_lib.GPT1BPE.from_dir(shared_data / "gpt1_bpe", special_tokens=["<|endoftext|>"])
  assert (tok.vocab_size, tok.eot_id) == (40479, 40478)
  assert tok.encode("<|endoftext|>") == ours.encode("<|endoftext|>")


@pytest.mark.parametrize("special, message", [
    ([], "at least one"), (["_start_", "_start_"], "distinct"),
    (["the</w>"], r"'the</w>' is already in the vocabulary as id 481"),
], ids=["none", "repeated", "in_vocabulary"])
def test_bad_special_tokens_are_refused(shared_data, special, message):
  with pytest.raises(ValueError, match=message):
    tok_lib.GPT1BPE.from_dir(shared_data / "gpt1_bpe", special_tokens=special)


def test_lone_surrogates_become_replacement_characters_as_in_every_tokenizer(shared_data):
  ours, _ = _tokenizers(shared_data)
  assert ours.encode("a\ud83e\udd8ab") == ours.encode("a🦊b")
  assert ours.encode("a\ud800b") == ours.encode("a\ufffdb") == ours.encode("ab")


def test_standardize_replaces_only_what_the_vocabulary_lacks(shared_data):
  ours, reference = _tokenizers(shared_data)
  std = tok_lib.GPT1BPE.from_dir(shared_data / "gpt1_bpe", standardize=True)
  text = "Wait — no–really―yes… it´s"
  assert tok_lib.standardize_gpt1_text(text) == "Wait - no-really-yes... it's"
  assert std.encode(text) == reference.encode("wait - no - really - yes . . . it ' s",
                                              add_special_tokens=False)
  assert 0 not in std.encode(text) and ours.encode(text).count(0) == 5
  # The rest of text_standardize (spaced punctuation runs, newlines) is BERT's splitting.
  assert std.encode("a--b!!c\n\n  d~~e") == std.encode("a -- b !! c \n d ~~ e")
  changed = 0
  for text in sum(_dataset_texts(shared_data).values(), []):
    if any(c in text for c in "—–―…´"):
      changed += 1
      assert std.encode(text).count(0) < ours.encode(text).count(0), text
  assert changed == 69


def test_make_tokenizer_finds_gpt1_under_manual_dir(shared_data, tmp_path, monkeypatch):
  shutil.copytree(shared_data / "gpt1_bpe", tmp_path / "gpt1_bpe")
  monkeypatch.setenv("LINEAGE_MANUAL_DIR", str(tmp_path))
  tok = tok_lib.make_tokenizer("gpt1")
  assert isinstance(tok, tok_lib.GPT1BPE) and tok.encode("Hello world") == [3570, 1276]


def test_missing_gpt1_vocabulary_names_paths_and_urls(tmp_path, monkeypatch):
  (tmp_path / "encoder_bpe_40000.json").write_text("{}")
  with pytest.raises(FileNotFoundError) as error:
    tok_lib.GPT1BPE.from_dir(tmp_path)
  message = str(error.value)
  assert str(tmp_path / "vocab_40000.bpe") in message
  assert all(url in message for _, url in tok_lib.GPT1_FILES.values())
  monkeypatch.delenv("LINEAGE_MANUAL_DIR", raising=False)
  with pytest.raises(FileNotFoundError, match=r"\$LINEAGE_MANUAL_DIR/gpt1_bpe/vocab_40000.bpe"):
    tok_lib.find_gpt1_bpe()


@pytest.mark.parametrize("name", ["encoder_bpe_40000.json", "vocab_40000.bpe"])
def test_gpt1_vocabulary_with_a_wrong_hash_is_a_clear_error(shared_data, tmp_path, name):
  for file in tok_lib.GPT1_FILES:
    shutil.copy(shared_data / "gpt1_bpe" / file, tmp_path / file)
  bad = tmp_path / name
  data = bytearray(bad.read_bytes())
  data[len(data) // 2] ^= 1
  bad.write_bytes(bytes(data))
  expected, url = tok_lib.GPT1_FILES[name]
  with pytest.raises(ValueError, match="is not GPT-1's") as error:
    tok_lib.GPT1BPE.from_dir(tmp_path)
  message = str(error.value)
  assert str(bad) in message and expected in message and url in message
  assert hashlib.sha256(bytes(data)).hexdigest() in message
