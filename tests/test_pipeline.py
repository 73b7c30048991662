"""The grain LM pipeline: packing is exact, deterministic, resumable, sharded and lossless."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lineage.data import lm_batches
from lineage.data import pipeline
from lineage.data.tokenizers import ByteTokenizer
from lineage.models import gpt

TOK = ByteTokenizer()
SEQ_LEN = 32
# Unique documents of 0 to 70 characters: some fit several to a row, some span two or three rows.
_rng = np.random.default_rng(0)
DOCS = [f"{i}:" + "".join(_rng.choice(list("abcdefgh ,.\n"), _rng.integers(0, 70)))
        for i in range(60)] + [""]
RECORDS = [{"text": d} for d in DOCS]


def take(it, n):
  return [next(it) for _ in range(n)]


def one_epoch(records=RECORDS, **kw):
  """All batches of one in-order pass."""
  kw = {"seq_len": SEQ_LEN, "batch_size": 4, "seed": 0, "shuffle": False, "num_epochs": 1, **kw}
  return list(pipeline.lm_pipeline(records, TOK, **kw))


def stream(batches):
  """The token stream the rows were cut from; padding (zeros, at the end only) removed."""
  rows = [np.concatenate([b["inputs"], b["targets"][:, -1:]], axis=1) for b in batches]
  return np.trim_zeros(np.concatenate(rows).ravel(), "b")


def documents(batches):
  """The documents in the rows, as texts."""
  tokens = stream(batches)
  docs = np.split(tokens, np.flatnonzero(tokens == TOK.eot_id) + 1)
  assert not len(docs[-1])  # the stream ends with end-of-text
  return [TOK.decode(d[:-1]) for d in docs[:-1]]


def assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)


@pytest.mark.slow
def test_packed_losses_equal_unpacked_losses():
  cfg = gpt.GPTConfig(vocab_size=257, context=64, num_layers=2, num_heads=2, embed_dim=32,
                      mlp_dim=64, dropout=0.0)
  model = gpt.GPT(cfg)
  params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))

  @jax.jit
  def token_losses(tokens, targets, positions=None, segment_ids=None):
    logits = model.apply(params, tokens, positions=positions, segment_ids=segment_ids)
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets)

  whole = {tuple(TOK.encode(d) + [TOK.eot_id]) for d in DOCS}
  compared = 0
  for b in one_epoch(seq_len=cfg.context):
    packed = token_losses(b["inputs"], b["targets"], b["positions"], b["segment_ids"])
    for r in range(len(b["inputs"])):
      row = np.append(b["inputs"][r], b["targets"][r, -1])
      for s in set(b["segment_ids"][r]) - {0}:
        at = b["segment_ids"][r] == s
        piece = row[np.append(at, at[-1])]  # the segment's tokens, with its last target
        if tuple(piece) not in whole or len(piece) < 2 or s == 1:
          continue  # a piece of a split document, or one that attention could not leak into
        # Alone, right-padded to one shape (causal: padding does not change earlier losses).
        alone = np.zeros(cfg.context + 1, np.int32)
        alone[:len(piece)] = piece
        alone = token_losses(alone[None, :-1], alone[None, 1:])[0, :len(piece) - 1]
        scored = at & (b["weights"][r] > 0)
        np.testing.assert_allclose(packed[r][scored], alone, atol=1e-5, rtol=0)
        compared += 1
  assert compared >= 10


def test_deterministic_for_a_seed():
  def first(seed):
    return take(pipeline.lm_pipeline(RECORDS, TOK, seq_len=SEQ_LEN, batch_size=4, seed=seed), 6)

  assert_batches_equal(first(1), first(1))
  assert not np.array_equal(stream(first(1)), stream(first(2)))
  in_order = lm_batches.tokenize_documents(DOCS, TOK)
  assert not np.array_equal(stream(first(1))[:100], in_order[:100])  # shuffled


@pytest.mark.slow
@pytest.mark.parametrize("worker_count", [0, 2])
def test_resume_mid_epoch_gives_the_uninterrupted_batches(worker_count):
  def make():
    return pipeline.lm_pipeline(RECORDS, TOK, seq_len=SEQ_LEN, batch_size=4, seed=3,
                                worker_count=worker_count)

  it = make()
  take(it, 3)
  state = json.loads(json.dumps(it.get_state()))
  expected = take(it, 20)  # an epoch is about 18 batches: this runs into the second
  it.close()
  resumed = make()
  resumed.set_state(state)
  assert_batches_equal(take(resumed, 20), expected)
  resumed.close()


def test_resume_with_other_settings_is_an_error():
  state = pipeline.lm_pipeline(RECORDS, TOK, seq_len=SEQ_LEN, batch_size=4, seed=3).get_state()
  other = pipeline.lm_pipeline(RECORDS, TOK, seq_len=SEQ_LEN, batch_size=4, seed=4)
  with pytest.raises(ValueError, match="seed: saved 3, now 4"):
    other.set_state(state)


def test_state_survives_json_with_grain_values():
  # ConcatThenSplit compares slices with the tuple (-1, -1); interleave keys states by int.
  state = {"remainder_slices": {"tokens": (-1, -1)}, "future_states": {3: {"next_index": 7}},
           "blob": b"\x00\xff", "count": np.int64(5), "indices": [0, 1], "none": None}
  encoded = json.loads(json.dumps(pipeline._to_json(state)))
  assert pipeline._from_json(encoded) == {**state, "count": 5}


def test_processes_get_disjoint_shards_that_cover_the_records():
  per_process = [one_epoch(shuffle=True, seed=5, process_index=i, process_count=2)
                 for i in range(2)]
  for batches in per_process:
    assert all(b["inputs"].shape == (2, SEQ_LEN) for b in batches)
  docs = [documents(b) for b in per_process]
  assert not set(docs[0]) & set(docs[1])
  assert sorted(docs[0] + docs[1]) == sorted(DOCS)


def test_one_epoch_holds_every_token_in_order():
  batches = one_epoch()
  np.testing.assert_array_equal(stream(batches), lm_batches.tokenize_documents(DOCS, TOK))
  assert all(b["inputs"].shape == (4, SEQ_LEN) for b in batches)  # the last batch is padded


def test_eval_batches_hold_every_token_and_split_rows_between_processes():
  full = list(pipeline.lm_eval_batches(RECORDS, TOK, seq_len=SEQ_LEN, batch_size=4))
  np.testing.assert_array_equal(stream(full), lm_batches.tokenize_documents(DOCS, TOK))
  halves = [list(pipeline.lm_eval_batches(RECORDS, TOK, seq_len=SEQ_LEN, batch_size=4,
                                          process_index=i, process_count=2)) for i in range(2)]
  assert len(halves[0]) == len(halves[1]) == len(full)
  for whole, a, b in zip(full, *halves):
    for k in whole:
      np.testing.assert_array_equal(np.concatenate([a[k], b[k]]), whole[k])
  limited = pipeline.lm_eval_batches(RECORDS, TOK, seq_len=SEQ_LEN, batch_size=4, max_batches=2)
  assert_batches_equal(list(limited), full[:2])


def test_targets_are_scored_only_within_their_document():
  corpus = lm_batches.tokenize_documents(DOCS, TOK)
  doc_of = np.cumsum(corpus == TOK.eot_id) - (corpus == TOK.eot_id)  # end-of-text ends its doc
  doc_of = np.append(doc_of, -1 - np.arange(SEQ_LEN + 1))  # padding: no document
  row = 0
  for b in one_epoch():
    seg, pos = b["segment_ids"], b["positions"]
    for r in range(len(seg)):
      at = row * (SEQ_LEN + 1) + np.arange(SEQ_LEN)  # the inputs' places in the corpus
      if at[0] < len(corpus):
        np.testing.assert_array_equal(b["weights"][r], doc_of[at] == doc_of[at + 1])
      else:
        assert not b["weights"][r].any()
      row += 1
    # Segments count up from 1 along a row, padding (0) only at its end; positions restart at 0.
    assert (seg[:, 0] <= 1).all()
    padded = seg == 0
    assert (padded[:, :-1] <= padded[:, 1:]).all()
    step, real = np.diff(seg, axis=1), ~padded[:, 1:]
    assert np.isin(step[real], [0, 1]).all()
    np.testing.assert_array_equal(pos[:, 1:][real],
                                  np.where(step[real] == 1, 0, pos[:, :-1][real] + 1))
    assert (pos[:, 0] == 0).all()


def test_invalid_utf8_becomes_replacement_characters():
  records = [{"text": b"ok \xff\xfe bad"}, {"text": "caf\u00e9"}, {"text": b"caf\xc3"},
             {"text": "caf\u00e9".encode()}]
  texts = documents(one_epoch(records))
  assert texts == ["ok \ufffd\ufffd bad", "caf\u00e9", "caf\ufffd", "caf\u00e9"]


def test_raw_byte_chunks_read_like_bytes():
  """enwik8 stores uint8 chunks; they tokenize as the bytes they hold."""
  records = [{"text": np.frombuffer("café".encode(), np.uint8)}, {"text": "café".encode()}]
  assert documents(one_epoch(records)) == ["café", "café"]
