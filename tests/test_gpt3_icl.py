"""The in-context mapping task (lineage.milestones.gpt3.icl): deterministic data, held-out
mappings and symbols kept out of training, labels the only scored targets, prompts of K
demonstrations; the evaluation hook on a model built to answer; the run end to end (slow)."""

import json
import pathlib

import flax.linen as nn
import jax
import numpy as np
import pytest

from configs import gpt3 as gpt3_config
from lineage.milestones.gpt3 import emergence, icl
from tests import binaries

SPEC = icl.Spec(num_items=24, num_labels=4, ways=3, pairs=9, heldout_items=6, heldout_every=4)


def _mappings(tokens, spec):
  """The (item, label) mapping of each sequence, as a frozenset."""
  return [frozenset(zip(row[0::2].tolist(), row[1::2].tolist())) for row in tokens]


def test_training_batches_are_a_function_of_seed_and_index():
  a = icl.train_sequences(SPEC, seed=3, index=7, rows=16)
  np.testing.assert_array_equal(a, icl.train_sequences(SPEC, seed=3, index=7, rows=16))
  assert not np.array_equal(a, icl.train_sequences(SPEC, seed=3, index=8, rows=16))
  assert not np.array_equal(a, icl.train_sequences(SPEC, seed=4, index=7, rows=16))
  batches = icl.TrainBatches(SPEC, 16, seed=3)
  next(batches)
  state = batches.get_state()
  want = next(batches)
  resumed = icl.TrainBatches(SPEC, 16, seed=3)
  resumed.set_state(state)
  jax.tree.map(np.testing.assert_array_equal, next(resumed), want)


def test_each_sequence_holds_one_mapping_of_at_most_ways_training_items():
  tokens = icl.train_sequences(SPEC, seed=0, index=0, rows=200)
  items, labels = tokens[:, 0::2], tokens[:, 1::2]
  assert items.max() < SPEC.num_items - SPEC.heldout_items  # new symbols never trained on
  assert labels.min() >= SPEC.num_items and labels.max() < SPEC.vocab_size
  for row_items, row_labels in zip(items, labels):
    mapping = {}
    for x, y in zip(row_items, row_labels):
      assert mapping.setdefault(x, y) == y  # one label per item within a sequence
    assert 1 <= len(mapping) <= SPEC.ways
  sizes = {len(set(row)) for row in items}
  assert sizes == {1, 2, 3}  # training mixes 1 .. ways items


def test_labels_are_random_per_sequence_so_k0_is_chance():
  tokens = icl.train_sequences(SPEC, seed=1, index=0, rows=4000)
  first_item, first_label = tokens[:, 0], tokens[:, 1]
  for item in range(3):
    counts = np.bincount(first_label[first_item == item] - SPEC.num_items, minlength=4)
    assert counts.min() > 0.5 * counts.mean()  # every label, about equally often


def test_held_out_mappings_are_disjoint_from_training():
  draw = lambda seed, heldout: frozenset(zip(*icl.draw_mapping(
      np.random.default_rng(seed), SPEC, SPEC.train_items, SPEC.ways, heldout)))
  held = {draw(s, True) for s in range(300)}
  kept = {draw(s, False) for s in range(300)}
  assert len(held) > 250 and len(kept) > 250 and not held & kept
  # A training row showing `ways` items shows its whole mapping, which is never held out.
  tokens = np.concatenate([icl.train_sequences(SPEC, 0, i, 256) for i in range(4)])
  full = [m for m in _mappings(tokens, SPEC) if len(m) == SPEC.ways]
  assert len(full) > 200
  for mapping in full:
    items, labels = (np.array(t) for t in zip(*mapping))
    assert not icl.is_heldout(items, labels - SPEC.num_items, SPEC.heldout_every)
  assert {icl.is_heldout(np.array([i for i, _ in m]),
                         np.array([y for _, y in m]) - SPEC.num_items, SPEC.heldout_every)
          for m in held} == {True}


def test_eval_prompts_show_k_pairs_then_the_query_and_never_its_answer_after_it():
  s = icl.eval_set(SPEC, shots=4, examples=50, seed=0)
  assert s.tokens.shape == (50, 2 * SPEC.pairs - 1)
  np.testing.assert_array_equal(s.tokens[:, 9:], 0)  # right padding after the query
  assert (s.tokens[:, 8] < SPEC.num_items).all() and (s.answers >= SPEC.num_items).all()
  np.testing.assert_array_equal(s.tokens, icl.eval_set(SPEC, 4, 50, seed=0).tokens)
  new = icl.eval_set(SPEC, shots=4, examples=50, seed=0, new_symbols=True)
  assert (new.tokens[:, 0:9:2] >= SPEC.num_items - SPEC.heldout_items).all()
  with pytest.raises(ValueError, match="more than icl.pairs=9"):
    icl.eval_set(SPEC, shots=9, examples=1, seed=0)


def test_only_labels_are_scored():
  batch = icl.lm_batch(icl.train_sequences(SPEC, 0, 0, 4), SPEC)
  np.testing.assert_array_equal(batch["weights"], (batch["targets"] >= SPEC.num_items))
  assert batch["weights"][:, 0::2].all() and not batch["weights"][:, 1::2].any()


def test_ideal_accuracy():
  assert icl.ideal_accuracy(SPEC, 0) == pytest.approx(0.25)
  assert icl.ideal_accuracy(SPEC, 1) == pytest.approx(1 / 3 + 2 / 3 * 0.25)


def test_bad_specs_are_clear_errors():
  for kwargs, match in ((dict(num_labels=1), "at least 2 labels"),
                        (dict(heldout_items=30), "must leave"),
                        (dict(heldout_items=2), "fewer than ways"),
                        (dict(heldout_every=1), "heldout_every=1")):
    with pytest.raises(ValueError, match=match):
      icl.Spec(**{**dict(num_items=24, ways=3), **kwargs})


def test_evaluator_reads_the_label_logits_at_each_query():
  """A model whose every output prefers the first label scores exactly the share of answers
  that are the first label."""
  cfg = gpt3_config.get_config("tiny")
  cfg.model.update(num_layers=1, embed_dim=16, num_heads=2, mlp_dim=32, vocab_size=28,
                   context=18)
  cfg.icl.update(num_items=24, ways=3, pairs=9, heldout_items=6)
  spec = icl.spec_from_config(cfg.icl)
  model_cfg = emergence.model_config(cfg, "dense")
  evaluator = emergence.Evaluator(model_cfg, spec, (0, 2), examples=64, seed=0)
  params = jax.jit(emergence.gpt.GPT(model_cfg).init)(jax.random.PRNGKey(0),
                                                       np.zeros((1, 1), np.int32))["params"]
  result = evaluator(_prefer_first_label(params, spec))
  assert list(result) == ["acc_k0", "acc_k2", "new_acc_k0", "new_acc_k2"]
  for name, part in zip(result, np.split(evaluator.answers, 4)):
    assert result[name] == pytest.approx(np.mean(part == 0))


def _prefer_first_label(params, spec):
  """The tied head reads wte, and with the final LayerNorm's scale 0 and bias 1 every
  position's hidden state is all ones: the logits are the rows' sums, the first label's
  the only positive one among the labels."""
  params = nn.unbox(params)
  params = jax.tree.map(np.array, params)
  params["ln_f"]["scale"][:] = 0.0
  params["ln_f"]["bias"][:] = 1.0
  params["wte"]["embedding"][spec.num_items:] = 0.0
  params["wte"]["embedding"][spec.num_items] = 1.0
  return params


@pytest.mark.slow
def test_the_icl_run_end_to_end_through_the_binary(tmp_path):
  """A short run of both variants: the table, the plot and the summary's keys (the learning
  itself is what docs/results/gpt3.md measures on the full schedule)."""
  binaries.run_in_process(
      "gpt3", "--config=configs/gpt3.py:tiny", f"--workdir={tmp_path}", "--mode=train",
      "--config.train.steps=30", "--config.train.eval_every=30", "--config.train.log_every=10",
      "--config.train.checkpoint_every=30", "--config.icl.eval_examples=40",
      "--config.train.batch_size=16")
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert set(summary["variants"]) == {"dense", "banded"}
  assert summary["variants"]["banded"]["local_window"] == 8
  assert set(summary["variants"]["dense"]["accuracy"]) == {"0", "1", "2", "4", "8", "16"}
  assert (tmp_path / "icl.png").stat().st_size > 0
  assert "perfect in-context learner" in (tmp_path / "report.md").read_text()
  with pytest.raises(ValueError, match="icl.window=0"):
    binaries.run_in_process("gpt3", "--config=configs/gpt3.py:tiny",
                            f"--workdir={tmp_path / 'bad'}", "--config.icl.window=0")
  assert not pathlib.Path(tmp_path / "bad").exists()
