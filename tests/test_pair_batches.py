"""lineage.data.pair_batches: token-count batches with length bucketing, every pair once an
epoch in the smallest bucket that holds it, resumable, split over processes."""

import numpy as np
import pytest

from lineage.data.pair_batches import TokenBatches

BOS, EOS = 1, 2


def random_pairs(count, seed, longest=20):
  rng = np.random.default_rng(seed)
  return [(rng.integers(3, 50, rng.integers(1, longest)).tolist(),
           rng.integers(3, 50, rng.integers(1, longest)).tolist()) for _ in range(count)]


def make(pairs, **kw):
  args = dict(max_tokens=64, bucket_lengths=(8, 16, 24), bos_id=BOS, eos_id=EOS, seed=0)
  return TokenBatches(pairs, **{**args, **kw})


def unpack(batch):
  """The (source, target) pairs a batch holds, read back from its real positions."""
  pairs = []
  for row in range(batch["source"].shape[0]):
    source = batch["source"][row][batch["source_segment_ids"][row] == 1].tolist()
    target_real = batch["target_segment_ids"][row] == 1
    target_input = batch["target_input"][row][target_real].tolist()
    target = batch["target"][row][target_real].tolist()
    if not source:
      assert not target and not batch["source"][row].any()  # an empty row is all padding
      continue
    assert source[-1] == EOS and target_input[0] == BOS and target[-1] == EOS
    assert target_input[1:] == target[:-1]
    pairs.append((source[:-1], target[:-1]))
  return pairs


def test_an_epoch_holds_every_pair_once_in_the_smallest_bucket_within_the_token_budget():
  pairs = random_pairs(60, 0) + [(list(range(3, 30)), [5])]  # 28 tokens: too long
  batches = make(pairs, row_multiple=2)
  assert batches.dropped == 1 and batches.rows == {8: 8, 16: 4, 24: 2}
  seen = []
  epoch = batches.plan(0)
  for _ in epoch:
    batch = next(batches)
    rows, length = batch["source"].shape
    assert rows * length <= 64 and rows % 2 == 0
    assert all(x.shape == (rows, length) and x.dtype == np.int32 for x in batch.values())
    for source, target in unpack(batch):
      need = max(len(source), len(target)) + 1
      assert length == min(b for b in (8, 16, 24) if b >= need)
      seen.append((source, target))
  assert sorted(seen) == sorted(pairs[:-1])
  assert batches.get_state() == {"epoch": 1, "index": 0}


def test_epochs_shuffle_from_the_seed_and_a_resumed_iterator_continues_exactly():
  pairs = random_pairs(40, 1)
  first = make(pairs)
  stream = [next(first) for _ in range(25)]  # past the end of epoch 0
  assert len(first.plan(0)) < 25
  resumed = make(pairs)
  resumed.set_state({"epoch": 0, "index": 7})
  for want in stream[7:]:
    got = next(resumed)
    assert all(np.array_equal(got[k], want[k]) for k in want)
  plans = [[(length, members.tolist()) for length, members in first.plan(e)] for e in (0, 1)]
  assert plans[0] != plans[1]
  assert plans[0] == [(length, m.tolist()) for length, m in make(pairs).plan(0)]
  assert plans[0] != [(length, m.tolist()) for length, m in make(pairs, seed=1).plan(0)]


def test_processes_hold_their_own_rows_of_each_global_batch():
  pairs = random_pairs(30, 2)
  whole = make(pairs, row_multiple=2)
  halves = [make(pairs, row_multiple=2, process_index=i, process_count=2) for i in (0, 1)]
  for _ in range(len(whole.plan(0))):
    want, parts = next(whole), [next(h) for h in halves]
    for k in want:
      np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), want[k])


def test_one_pass_keeps_file_order_within_buckets_without_shuffling():
  pairs = random_pairs(20, 3)
  got = [pair for batch in make(pairs, shuffle=False).one_pass() for pair in unpack(batch)]
  by_bucket = {b: [p for p in pairs if min(x for x in (8, 16, 24)
                                           if x >= max(map(len, p)) + 1) == b] for b in (8, 16, 24)}
  assert got == by_bucket[8] + by_bucket[16] + by_bucket[24]


def test_budgets_that_cannot_work_are_clear_errors():
  with pytest.raises(ValueError, match="max_tokens"):
    make(random_pairs(5, 4), max_tokens=40, row_multiple=2)
  with pytest.raises(ValueError, match="processes"):
    make(random_pairs(5, 4), max_tokens=24, process_count=2)
  with pytest.raises(ValueError, match="none of the"):
    make([(list(range(3, 40)), [4])])
