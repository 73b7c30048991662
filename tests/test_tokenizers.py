"""GPT-2 BPE against tiktoken on real corpora, the trained byte-level BPE, and the edge cases
every tokenizer shares: lone surrogates, split characters, invalid bytes, forged end-of-text."""

import functools
import hashlib
import json
import os
import pathlib
import shutil

import numpy as np
import pytest
import tiktoken
import tiktoken.load
import tiktoken_ext.openai_public

from lineage.data import tokenizers as tok_lib

URLS = ["https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
        "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe"]
TRICKY = [
    "", "plain ascii", "emoji 🦊😀 and flags 🇫🇷🇯🇵", "family 👨‍👩‍👧‍👦, 🏳️‍🌈, 👍🏽 (ZWJ and modifiers)",
    "combining e\u0301 a\u0300 n\u0303 and z\u0335\u0321\u0310a\u0336lgo",
    "runs    of     spaces\t\t\ttabs\n\n\nnewlines\r\n \n ", "  leading and trailing  ",
    "中文字符和日本語のテキスト、한국어", "Ελληνικά, русский, العربية", "nul \x00 and \x7f and \u200b",
    "<|endoftext|> in the middle <|endoftext|>",
]


@functools.cache
def _corpora(data_dir: pathlib.Path) -> dict[str, str]:
  read = lambda rel: (data_dir / rel).read_bytes().decode("utf-8")  # no newline translation
  lambada = [json.loads(line)["text"] for line in read("lambada/lambada_test.jsonl").splitlines()]
  return {"lambada": "\n".join(lambada), "wikitext2": read("wikitext2/wiki.test.tokens"),
          "ptb": read("ptb/ptb.test.txt"), "tinyshakespeare": read("tinyshakespeare/input.txt")}


@functools.cache
def _gpt2(data_dir: pathlib.Path) -> tuple[tok_lib.GPT2BPE, tiktoken.Encoding]:
  """Ours, and tiktoken's gpt2 encoding built here directly (get_encoding would download)."""
  vocab = data_dir / "gpt2_bpe"
  ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
      str(vocab / "vocab.bpe"), str(vocab / "encoder.json"),
      vocab_bpe_hash=tok_lib.GPT2_FILES["vocab.bpe"][0],
      encoder_json_hash=tok_lib.GPT2_FILES["encoder.json"][0])
  reference = tiktoken.Encoding(name="gpt2", pat_str=tiktoken_ext.openai_public.r50k_pat_str,
                                mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256})
  return tok_lib.GPT2BPE.from_dir(vocab), reference


@functools.cache
def _shakespeare_bpe(data_dir: pathlib.Path) -> tok_lib.ByteLevelBPE:
  return tok_lib.train_bpe([_corpora(data_dir)["tinyshakespeare"]], 512)


def _all_tokenizers(data_dir):
  return [tok_lib.ByteTokenizer(), _gpt2(data_dir)[0], _shakespeare_bpe(data_dir)]


@pytest.mark.parametrize("corpus", ["lambada", "wikitext2", "ptb", "tinyshakespeare"])
def test_gpt2_matches_tiktoken_and_round_trips_real_corpora(shared_data, corpus):
  ours, reference = _gpt2(shared_data)
  text = _corpora(shared_data)[corpus]
  ids = ours.encode(text)
  assert ids == reference.encode(text, disallowed_special=())
  assert ours.decode(ids) == text and ours.decode_bytes(ids) == text.encode("utf-8")
  if corpus == "lambada":  # how evaluation uses it: one passage at a time
    passages = text.split("\n")
    assert [ours.encode(p) for p in passages] == reference.encode_ordinary_batch(passages)


def test_gpt2_sizes_and_end_of_text(shared_data):
  ours, reference = _gpt2(shared_data)
  assert (ours.vocab_size, ours.eot_id) == (reference.n_vocab, reference.eot_token)
  assert (ours.vocab_size, ours.eot_id) == (50257, 50256)
  assert reference.decode([ours.eot_id]) == "<|endoftext|>"
  forged = ours.encode("a<|endoftext|>b")  # ordinary text, not the special token
  assert forged == reference.encode_ordinary("a<|endoftext|>b") and ours.eot_id not in forged
  hello = ours.encode("hello")
  assert ours.decode(hello + [ours.eot_id] + hello) == "hellohello"  # end-of-text is not rendered
  assert ours.decode(hello + [50300, -1]) == "hello"  # ids a padded vocabulary can sample


@pytest.mark.parametrize("text", TRICKY)
def test_every_tokenizer_round_trips_tricky_text(shared_data, text):
  for tok in _all_tokenizers(shared_data):
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size and i != tok.eot_id for i in ids)
    assert tok.decode(ids) == text and tok.decode_bytes(ids) == text.encode("utf-8")
  ours, reference = _gpt2(shared_data)
  assert ours.encode(text) == reference.encode_ordinary(text)


def test_lone_surrogates_become_replacement_characters_and_pairs_are_joined(shared_data):
  _, reference = _gpt2(shared_data)
  assert reference.encode_ordinary("a\ud800b") == reference.encode_ordinary("a\ufffdb")
  for tok in _all_tokenizers(shared_data):
    assert tok.encode("a\ud800b") == tok.encode("a\ufffdb")
    assert tok.encode("\udfff\ud800") == tok.encode("\ufffd\ufffd")
    assert tok.encode("x\ud83e\udd8a") == tok.encode("x🦊")  # a pair written as two code points
    assert tok.decode(tok.encode("a\ud800b")) == "a\ufffdb"


def test_split_characters_decode_to_replacement_and_bytes_stay_exact(shared_data):
  for tok in _all_tokenizers(shared_data):
    ids = tok.encode("🦊")
    assert len(ids) > 1
    assert tok.decode(ids[:1]).startswith("\ufffd") and "🦊" not in tok.decode(ids[:1])
    assert tok.decode_bytes(ids[:1]) + tok.decode_bytes(ids[1:]) == "🦊".encode("utf-8")
    assert tok.decode(np.array(ids, np.int32)) == "🦊"


def test_byte_tokenizer_never_crashes_on_invalid_utf8():
  tok = tok_lib.ByteTokenizer()
  raw = bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8))
  ids = list(raw)
  assert tok.decode_bytes(ids) == raw
  assert tok.decode(ids) == raw.decode("utf-8", errors="replace")
  assert tok.decode([0xC0, 0x80, 0xED, 0xA0, 0x80, 0x41]).endswith("A")  # overlong, surrogate
  assert tok.decode_bytes([0x41, tok.eot_id, 300, -5, 0x42]) == b"AB"


@pytest.mark.parametrize("name", ["encoder.json", "vocab.bpe"])
def test_gpt2_vocabulary_with_a_wrong_hash_is_a_clear_error(shared_data, tmp_path, name):
  for file in tok_lib.GPT2_FILES:
    shutil.copy(shared_data / "gpt2_bpe" / file, tmp_path / file)
  bad = tmp_path / name
  data = bytearray(bad.read_bytes())
  data[len(data) // 2] ^= 1
  bad.write_bytes(bytes(data))
  expected, url = tok_lib.GPT2_FILES[name]
  with pytest.raises(ValueError) as error:
    tok_lib.GPT2BPE.from_dir(tmp_path)
  message = str(error.value)
  assert str(bad) in message and expected in message and url in message
  assert hashlib.sha256(bytes(data)).hexdigest() in message


def test_missing_gpt2_vocabulary_names_paths_and_urls(tmp_path, monkeypatch):
  (tmp_path / "encoder.json").write_text("{}")
  with pytest.raises(FileNotFoundError) as error:
    tok_lib.GPT2BPE.from_dir(tmp_path)
  message = str(error.value)
  assert all(u in message for u in URLS)
  assert str(tmp_path / "vocab.bpe") in message and str(tmp_path / "encoder.json") in message
  monkeypatch.delenv("LINEAGE_MANUAL_DIR", raising=False)
  with pytest.raises(FileNotFoundError, match=r"\$LINEAGE_MANUAL_DIR/gpt2_bpe/vocab.bpe"):
    tok_lib.find_gpt2_bpe()


def test_gpt2_found_under_manual_dir_and_ignores_tiktoken_cache(shared_data, tmp_path,
                                                                monkeypatch):
  manual = tmp_path / "manual"
  shutil.copytree(shared_data / "gpt2_bpe", manual / "gpt2_bpe")
  monkeypatch.setenv("LINEAGE_MANUAL_DIR", str(manual))
  cache = tmp_path / "cache"
  cache.mkdir()
  monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
  stale = {hashlib.sha1(str(manual / "gpt2_bpe" / name).encode()).hexdigest()
           for name in tok_lib.GPT2_FILES}  # tiktoken's cache keys for these paths
  for key in stale:
    (cache / key).write_bytes(b"stale")
  tok = tok_lib.make_tokenizer("gpt2")
  assert tok.encode("Hello world") == [15496, 995]
  assert {p.name for p in cache.iterdir()} == stale  # neither read nor written
  assert os.environ["TIKTOKEN_CACHE_DIR"] == str(cache)


def test_train_bpe_on_tinyshakespeare(shared_data):
  tok = _shakespeare_bpe(shared_data)
  text = _corpora(shared_data)["tinyshakespeare"]
  assert tok.vocab_size == 512
  assert tok._tokenizer.id_to_token(tok.eot_id) == "<|endoftext|>"
  ids = tok.encode(text)
  assert tok.eot_id not in ids and len(ids) < 0.6 * len(text.encode("utf-8"))  # it compresses
  assert tok.decode(ids) == text and tok.decode_bytes(ids) == text.encode("utf-8")
  assert tok.decode(ids[:50] + [tok.eot_id, 10_000, -1] + ids[50:100]) == tok.decode(ids[:100])
  again = tok_lib.train_bpe([text], 512)
  assert again._tokenizer.to_str() == tok._tokenizer.to_str()


def test_bpe_save_and_load_give_identical_ids(shared_data, tmp_path):
  tok = _shakespeare_bpe(shared_data)
  tok.save(tmp_path / "run" / "tokenizer.json")
  assert [p.name for p in (tmp_path / "run").iterdir()] == ["tokenizer.json"]
  loaded = tok_lib.ByteLevelBPE.load(tmp_path / "run" / "tokenizer.json")
  assert (loaded.vocab_size, loaded.eot_id) == (tok.vocab_size, tok.eot_id)
  for text in TRICKY + [_corpora(shared_data)["ptb"]]:
    assert loaded.encode(text) == tok.encode(text)
  assert loaded.eot_id not in loaded.encode("<|endoftext|>")


def test_train_bpe_rejects_a_vocabulary_smaller_than_the_bytes():
  with pytest.raises(ValueError, match="at least 257"):
    tok_lib.train_bpe(["abc"], 256)


def test_make_tokenizer(shared_data, tmp_path):
  assert isinstance(tok_lib.make_tokenizer("byte"), tok_lib.ByteTokenizer)
  gpt2 = tok_lib.make_tokenizer("gpt2", vocab_dir=shared_data / "gpt2_bpe")
  assert gpt2.encode("Hello world") == [15496, 995]
  texts = _corpora(shared_data)["tinyshakespeare"][:100_000].split("\n\n")
  trained = tok_lib.make_tokenizer("bpe", workdir=tmp_path, train_texts=iter(texts),
                                   vocab_size=300)
  assert trained.vocab_size == 300 and (tmp_path / "tokenizer.json").is_file()
  resumed = tok_lib.make_tokenizer("bpe", workdir=tmp_path)  # loads; no texts needed
  assert resumed.encode(texts[-1]) == trained.encode(texts[-1])
  with pytest.raises(ValueError, match="workdir"):
    tok_lib.make_tokenizer("bpe", train_texts=texts, vocab_size=300)
  with pytest.raises(ValueError, match="train_texts"):
    tok_lib.make_tokenizer("bpe", workdir=tmp_path / "fresh")
  with pytest.raises(ValueError, match="byte, gpt2, bpe"):
    tok_lib.make_tokenizer("sentencepiece")
