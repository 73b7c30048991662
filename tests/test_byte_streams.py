"""Byte streams for truncated BPTT: continuing rows, resume, process shards, bad input."""

import json

import numpy as np
import pytest

from lineage.data import byte_streams

DOCS = [f"\n review {i}: {'good ' * (i % 5)}{'bad ' * (i % 3)}the end. ".encode()
        for i in range(60)] + [b"", "\n caf\u00e9 na\u00efve \u2603 ".encode()]


def _row_bytes(batches, row, key="inputs"):
  return np.concatenate([b[key][row] for b in batches])


def _take(iterator, count):
  return [next(iterator) for _ in range(count)]


def _documents_in(stream):
  """The order in which `stream` lays out DOCS whole, each once; the cut-off end may hold the
  start of one more document."""
  unused, order, position = [d for d in DOCS if d], [], 0
  while position < len(stream):
    match = [d for d in unused if stream.startswith(d, position)]
    if not match:
      assert any(d.startswith(stream[position:]) for d in unused), stream[position:]
      break
    unused.remove(match[0])
    order.append(match[0])
    position += len(match[0])
  return order


def test_rows_continue_across_batches_and_epochs():
  streams = byte_streams.ByteStreams(DOCS, batch_size=4, seq_len=16, seed=3)
  segment = streams.segment_len
  batches = _take(streams, 2 * segment // 16 + 3)  # reads on into a third epoch
  for batch in batches:
    assert batch["inputs"].shape == batch["targets"].shape == (4, 16)
    assert batch["inputs"].dtype == batch["targets"].dtype == np.int32
    assert 0 <= batch["inputs"].min() and batch["inputs"].max() <= 255
  rows = [_row_bytes(batches, row) for row in range(4)]
  for row in range(4):
    np.testing.assert_array_equal(_row_bytes(batches, row, "targets")[:-1], rows[row][1:])
  # Rows 0..3 of an epoch, laid end to end, are that epoch's shuffled concatenation of the
  # documents: every document whole, once, up to the few bytes cut off at the end.
  orders = []
  for epoch in range(2):
    stream = b"".join(bytes(r[epoch * segment:(epoch + 1) * segment].astype(np.uint8))
                      for r in rows)
    orders.append(_documents_in(stream))
    assert len(orders[-1]) >= sum(1 for d in DOCS if d) - 1
  assert orders[0] != orders[1]  # each epoch reshuffles


def test_one_row_reads_every_document_whole_in_each_epoch():
  streams = byte_streams.ByteStreams(DOCS, batch_size=1, seq_len=8, seed=0)
  assert streams.segment_len == sum(len(d) for d in DOCS)  # nothing cut off with one row
  row = _row_bytes(_take(streams, streams.segment_len // 8 + 1), 0)
  epoch = bytes(row[:streams.segment_len].astype(np.uint8))
  assert sorted(_documents_in(epoch)) == sorted(d for d in DOCS if d)
  assert epoch != b"".join(DOCS)  # shuffled


def test_state_resumes_exactly_and_is_json_safe():
  reference = byte_streams.ByteStreams(DOCS, batch_size=4, seq_len=32, seed=7)
  expected = _take(reference, 40)
  interrupted = byte_streams.ByteStreams(DOCS, batch_size=4, seq_len=32, seed=7)
  _take(interrupted, 23)
  saved = json.loads(json.dumps(interrupted.get_state()))
  resumed = byte_streams.ByteStreams(DOCS, batch_size=4, seq_len=32, seed=7)
  resumed.set_state(saved)
  for want, got in zip(expected[23:], _take(resumed, 17)):
    np.testing.assert_array_equal(got["inputs"], want["inputs"])
    np.testing.assert_array_equal(got["targets"], want["targets"])
  other_seed = next(byte_streams.ByteStreams(DOCS, batch_size=4, seq_len=32, seed=8))
  assert not np.array_equal(other_seed["inputs"], expected[0]["inputs"])


def test_processes_take_disjoint_row_blocks_of_the_global_batch():
  whole = _take(byte_streams.ByteStreams(DOCS, batch_size=8, seq_len=16, seed=1), 30)
  shards = [_take(byte_streams.ByteStreams(DOCS, batch_size=8, seq_len=16, seed=1,
                                           process_index=p, process_count=4), 30)
            for p in range(4)]
  for b, batch in enumerate(whole):
    for key in ("inputs", "targets"):
      # Process p holds rows [2p, 2p + 2): stacking in process order gives the global batch,
      # as jax.make_array_from_process_local_data assembles it in loop.device_batch.
      np.testing.assert_array_equal(np.concatenate([s[b][key] for s in shards]), batch[key])
  evaluation = byte_streams.eval_streams(DOCS, 8, 16)
  shard = byte_streams.eval_streams(DOCS, 8, 16, process_index=3, process_count=4)
  assert len(shard) == len(evaluation)
  for full, part in zip(evaluation, shard):
    np.testing.assert_array_equal(part["inputs"], full["inputs"][6:])


def test_eval_streams_are_deterministic_continuing_rows_in_document_order():
  batches = byte_streams.eval_streams(DOCS, batch_size=4, seq_len=16)
  stream = np.frombuffer(b"".join(DOCS), np.uint8)
  segment = len(stream) // 4
  assert len(batches) == (segment - 1) // 16
  for row in range(4):
    inputs = _row_bytes(batches, row)
    np.testing.assert_array_equal(inputs, stream[row * segment: row * segment + len(inputs)])
    np.testing.assert_array_equal(_row_bytes(batches, row, "targets"),
                                  stream[row * segment + 1: row * segment + len(inputs) + 1])
  again = byte_streams.eval_streams(DOCS, batch_size=4, seq_len=16, max_batches=3)
  assert len(again) == 3
  for a, b in zip(again, batches):
    np.testing.assert_array_equal(a["inputs"], b["inputs"])


def test_bad_input_is_a_clear_error():
  with pytest.raises(ValueError, match="too few for 4 streams"):
    byte_streams.ByteStreams([b"short", b""], batch_size=4, seq_len=16)
  with pytest.raises(ValueError, match="too few for 4 streams"):
    byte_streams.ByteStreams([], batch_size=4, seq_len=16)
  with pytest.raises(TypeError, match="document 1 is a str, not bytes"):
    byte_streams.ByteStreams([b"abc", "def"], batch_size=1, seq_len=1)
  with pytest.raises(ValueError, match="multiple of the 3 processes"):
    byte_streams.ByteStreams(DOCS, batch_size=4, seq_len=8, process_count=3)
  with pytest.raises(ValueError, match="too few for one batch"):
    byte_streams.eval_streams([b"", b"tiny"], batch_size=2, seq_len=8)
