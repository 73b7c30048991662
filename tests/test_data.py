"""Tokenizer round trips, the synthetic corpus's structure, and resumable, sharded batches."""

import numpy as np
import pytest

from lineage.data import lm_batches, synthetic
from lineage.data.tokenizers import ByteTokenizer

TEXTS = ["plain ascii", "emoji 🦊👩‍👩‍👧 and flags 🇫🇷", "combining e\u0301 a\u0300 n\u0303",
         "lines\nand\r\nmore\n\n", "", "中文 and Ελληνικά"]


@pytest.mark.parametrize("text", TEXTS)
def test_byte_tokenizer_round_trips(text):
  tok = ByteTokenizer()
  ids = tok.encode(text)
  assert ids == list(text.encode("utf-8")) and all(0 <= i < 256 for i in ids)
  assert tok.decode(ids) == text
  assert tok.decode(ids + [tok.eot_id]) == text  # end-of-text is not rendered


def test_byte_tokenizer_decodes_invalid_utf8_to_replacement_characters():
  tok = ByteTokenizer()
  assert (tok.vocab_size, tok.eot_id) == (257, 256)
  assert tok.decode([0x66, 0xFF, 0x6F]) == "f\ufffdo"
  fox = tok.encode("🦊")
  assert tok.decode(fox[:2] + tok.encode("!")) == "\ufffd!"  # a truncated character
  assert tok.decode(np.array(fox, np.int32)) == "🦊"


def test_synthetic_documents_are_deterministic_per_seed():
  docs = synthetic.synthetic_documents(20, seed=3)
  assert len(docs) == 20 and all(d for d in docs)
  assert synthetic.synthetic_documents(20, seed=3) == docs
  assert synthetic.synthetic_documents(20, seed=4) != docs
  assert synthetic.synthetic_documents(5, seed=3) == docs[:5]


def test_synthetic_text_has_structure_a_bigram_model_finds():
  tokens = lm_batches.tokenize_documents(synthetic.synthetic_documents(300), ByteTokenizer())
  unigram = lm_batches.unigram_entropy(tokens)
  pairs = np.zeros((257, 257))
  np.add.at(pairs, (tokens[:-1], tokens[1:]), 1)
  joint = pairs[pairs > 0] / pairs.sum()
  previous = pairs.sum(1)
  previous = previous[previous > 0] / pairs.sum()
  bigram = -(joint * np.log(joint)).sum() + (previous * np.log(previous)).sum()  # H(next | prev)
  assert unigram > 2.0
  assert bigram < unigram - 1.0


def test_unigram_entropy_and_tokenize_documents():
  np.testing.assert_allclose(lm_batches.unigram_entropy(np.array([0, 1, 2, 3])), np.log(4))
  assert lm_batches.unigram_entropy(np.array([5, 5, 5])) == 0.0
  tok = ByteTokenizer()
  tokens = lm_batches.tokenize_documents(["ab", "c"], tok)
  assert tokens.dtype == np.int32
  assert tokens.tolist() == [97, 98, 256, 99, 256]


def _next(it, n):
  return [next(it) for _ in range(n)]


def test_random_windows_are_a_pure_function_of_seed_and_step():
  tokens = np.arange(1000, dtype=np.int32)
  run = lm_batches.RandomWindows(tokens, seq_len=16, batch_size=8, seed=1)
  first = _next(run, 6)
  for batch in first:
    assert batch["inputs"].shape == (8, 16)
    np.testing.assert_array_equal(batch["targets"][:, :-1], batch["inputs"][:, 1:])
    np.testing.assert_array_equal(batch["inputs"], batch["inputs"][:, :1] + np.arange(16))
  resumed = lm_batches.RandomWindows(tokens, seq_len=16, batch_size=8, seed=1)
  _next(resumed, 2)
  state = resumed.get_state()
  assert state == {"step": 2}
  again = lm_batches.RandomWindows(tokens, seq_len=16, batch_size=8, seed=1)
  again.set_state(state)
  for want, got, got_again in zip(first[2:], _next(resumed, 4), _next(again, 4)):
    for key in ("inputs", "targets"):
      np.testing.assert_array_equal(got[key], want[key])
      np.testing.assert_array_equal(got_again[key], want[key])
  other_seed = next(lm_batches.RandomWindows(tokens, seq_len=16, batch_size=8, seed=2))
  assert not np.array_equal(other_seed["inputs"], first[0]["inputs"])


def test_random_windows_per_process_rows_partition_the_global_batch():
  tokens = np.arange(500, dtype=np.int32)
  full = _next(lm_batches.RandomWindows(tokens, 8, 12, seed=5), 3)
  parts = [_next(lm_batches.RandomWindows(tokens, 8, 12, seed=5, process_index=i,
                                          process_count=3), 3) for i in range(3)]
  for step in range(3):
    for key in ("inputs", "targets"):
      np.testing.assert_array_equal(np.concatenate([p[step][key] for p in parts]), full[step][key])
  with pytest.raises(ValueError, match="not divisible"):
    lm_batches.RandomWindows(tokens, 8, 10, seed=0, process_count=3)
  with pytest.raises(ValueError, match="too few"):
    lm_batches.RandomWindows(tokens[:8], 8, 2, seed=0)


def test_random_windows_reach_the_last_token():
  """A corpus of exactly one window is usable, and its final token is a target."""
  batch = next(lm_batches.RandomWindows(np.arange(9, dtype=np.int32), 8, 4, seed=0))
  np.testing.assert_array_equal(batch["targets"], np.tile(np.arange(1, 9), (4, 1)))


def test_sequential_windows_cover_the_eval_tokens_in_order():
  tokens = np.arange(1000, dtype=np.int32)
  batches = list(lm_batches.sequential_windows(tokens, seq_len=10, batch_size=4))
  assert len(batches) == 24  # (1000 - 1) // (4 * 10): the last partial batch is dropped
  inputs = np.concatenate([b["inputs"].reshape(-1) for b in batches])
  targets = np.concatenate([b["targets"].reshape(-1) for b in batches])
  np.testing.assert_array_equal(inputs, tokens[:960])
  np.testing.assert_array_equal(targets, tokens[1:961])
  assert len(list(lm_batches.sequential_windows(tokens, 10, 4, max_batches=5))) == 5
  halves = [list(lm_batches.sequential_windows(tokens, 10, 4, process_index=i, process_count=2))
            for i in range(2)]
  for whole, first, second in zip(batches, *halves):
    np.testing.assert_array_equal(np.concatenate([first["inputs"], second["inputs"]]),
                                  whole["inputs"])


def test_read_text_file_names_the_offset_of_invalid_utf8(tmp_path):
  good = tmp_path / "good.txt"
  good.write_bytes("héllo 🦊\n".encode("utf-8"))
  assert lm_batches.read_text_file(good) == "héllo 🦊\n"
  bad = tmp_path / "bad.txt"
  bad.write_bytes(b"abc\xe9def")
  with pytest.raises(ValueError, match="at byte 3"):
    lm_batches.read_text_file(bad)
  with pytest.raises(FileNotFoundError, match="does not exist"):
    lm_batches.read_text_file(tmp_path / "missing.txt")


def test_split_tokens_holds_out_the_end():
  tokens = np.arange(100)
  train, evaluation = lm_batches.split_tokens(tokens, 0.1)
  np.testing.assert_array_equal(train, tokens[:90])
  np.testing.assert_array_equal(evaluation, tokens[90:])
