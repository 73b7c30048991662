"""GPT-1's fine-tuning recipe: the input transformations' exact layouts, the heads, the combined
objective against a brute-force computation, and the resumable batches."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lineage.milestones.gpt1 import finetune, tasks, transforms
from lineage.models import gpt

SPECIALS = transforms.Specials.after(20)  # start 20, delimiter 21, extract 22
CFG = gpt.GPTConfig(vocab_size=23, context=16, num_layers=2, num_heads=2, embed_dim=16,
                    mlp_dim=32, dropout=0.0, pre_ln=False)


def test_each_transformation_lays_out_its_tokens():
  s, d, e = SPECIALS.start, SPECIALS.delimiter, SPECIALS.extract
  assert transforms.transform("classification", SPECIALS, [[1, 2, 3]], 16) == (
      [[s, 1, 2, 3, e]], 0)
  assert transforms.transform("entailment", SPECIALS, [[1, 2], [3]], 16) == (
      [[s, 1, 2, d, 3, e]], 0)
  assert transforms.transform("similarity", SPECIALS, [[1, 2], [3]], 16) == (
      [[s, 1, 2, d, 3, e], [s, 3, d, 1, 2, e]], 0)
  assert transforms.transform("multiple_choice", SPECIALS, [[1, 2], [3], [4, 5]], 16) == (
      [[s, 1, 2, d, 3, e], [s, 1, 2, d, 4, 5, e]], 0)


def test_a_long_example_loses_its_first_text_from_the_left():
  s, d, e = SPECIALS.start, SPECIALS.delimiter, SPECIALS.extract
  sequences, truncated = transforms.transform("entailment", SPECIALS,
                                              [list(range(1, 11)), [11, 12]], 8)
  assert sequences == [[s, 8, 9, 10, d, 11, 12, e]] and truncated == 1
  # A hypothesis too long by itself keeps its start, after one token of the premise.
  assert transforms.transform("entailment", SPECIALS, [[1, 2], [3, 4, 5, 6]], 6) == (
      [[s, 2, d, 3, 4, e]], 1)
  with pytest.raises(ValueError, match="cannot hold one token of text"):
    transforms.transform("entailment", SPECIALS, [[1], [2]], 3)
  with pytest.raises(ValueError, match="unknown task kind 'ranking'"):
    transforms.transform("ranking", SPECIALS, [[1]], 8)


def _model_and_params(spec, seed=0):
  model = finetune.GPTWithHead(CFG, num_outputs=spec.num_outputs, head_dropout=0.0)
  views = {"similarity": 2, "multiple_choice": 3}.get(spec.kind, 1)
  init = jax.jit(lambda rng: nn.unbox(finetune.init_params(model, spec.combine, views, rng)))
  params = init(jax.random.PRNGKey(seed))
  assert set(params) == {"wte", "wpe", "h_0", "h_1", "clf_head"}
  params["clf_head"] = jax.tree.map(  # A visible head, not a near-zero one.
      lambda x: jax.random.normal(jax.random.PRNGKey(seed + 1), x.shape), params["clf_head"])
  return model, params


def _loss(model, spec, lm_coef):
  loss = finetune.loss_fn(model, spec, lm_coef)
  return jax.jit(lambda params, batch: loss(params, batch, None, True))


def _batch(spec, examples):
  encoded = finetune.encode(spec, SPECIALS, examples, CFG.context)
  return encoded, {k: jnp.asarray(v) for k, v in encoded.rows(np.arange(len(encoded))).items()}


@pytest.mark.slow
def test_similarity_is_symmetric_and_choices_are_normalised_over_options():
  spec = finetune.TaskSpec("similarity")
  model, params = _model_and_params(spec)
  predict = finetune.predictor(model, spec)
  _, ab = _batch(spec, [([[1, 2, 3], [4, 5]], 0)])
  _, ba = _batch(spec, [([[4, 5], [1, 2, 3]], 0)])
  np.testing.assert_allclose(predict(params, ab), predict(params, ba), rtol=1e-5)

  spec = finetune.TaskSpec("multiple_choice")
  model, params = _model_and_params(spec)
  encoded, batch = _batch(spec, [([[1, 2], [3], [4, 5], [6]], 2), ([[7], [8], [9], [10]], 0)])
  scores = np.asarray(finetune.predictor(model, spec)(params, batch))
  assert scores.shape == (2, 3)  # One score per option.
  loss_sum, aux = _loss(model, spec, 0.0)(params, batch)
  log_probs = jax.nn.log_softmax(scores, axis=-1)
  np.testing.assert_allclose(loss_sum, -(log_probs[0, 2] + log_probs[1, 0]), rtol=1e-5)
  assert aux["weight"] == 2 and aux["accuracy"] == (scores.argmax(-1) == [2, 0]).sum()


@pytest.mark.slow
def test_the_objective_is_task_loss_plus_lambda_lm_loss():
  spec = finetune.TaskSpec("classification")
  model, params = _model_and_params(spec)
  examples = [([[1, 2, 3, 4]], 1), ([[5, 6]], 0), ([[7, 8, 9]], 1)]
  encoded, batch = _batch(spec, examples)
  loss_sum, aux = _loss(model, spec, 0.5)(params, batch)
  # Brute force: one sequence at a time, LM loss over its text tokens only. The model is causal,
  # so zeros after a sequence change none of its positions.
  forward = jax.jit(lambda p, t: (model.apply({"params": p}, t, method="hidden_states"),
                                  model.apply({"params": p}, t)))
  task, lm_losses = [], []
  for (texts, label), tokens in zip(examples, encoded.tokens[:, 0]):
    sequence = [SPECIALS.start, *texts[0], SPECIALS.extract]
    hidden, logits = forward(params, jnp.asarray([sequence + [0] * (16 - len(sequence))]))
    hidden, logits = hidden[:, :len(sequence)], logits[0, :len(sequence)]
    head = params["clf_head"]
    out = hidden[0, -1] @ head["kernel"] + head["bias"]
    task.append(-jax.nn.log_softmax(out)[label])
    lm_losses += [optax.softmax_cross_entropy_with_integer_labels(logits[i], sequence[i + 1])
                  for i in range(len(texts[0]))]  # Targets: the text tokens.
    assert list(tokens[:len(sequence)]) == sequence
  expected = sum(task) + 0.5 * np.mean(lm_losses) * len(examples)
  np.testing.assert_allclose(loss_sum, expected, rtol=1e-5)
  np.testing.assert_allclose(aux["task_loss"], sum(task), rtol=1e-5)
  no_lm, _ = _loss(model, spec, 0.0)(params, batch)
  np.testing.assert_allclose(no_lm, sum(task), rtol=1e-5)


@pytest.mark.slow
def test_regression_head_and_pearson():
  spec = finetune.TaskSpec("similarity", regression=True)
  model, params = _model_and_params(spec)
  encoded, batch = _batch(spec, [([[1, 2], [3]], 4.5), ([[4], [5, 6]], 1.0)])
  assert encoded.labels.dtype == np.float32
  predictions = np.asarray(finetune.predictor(model, spec)(params, batch))[:, 0]
  loss_sum, aux = _loss(model, spec, 0.0)(params, batch)
  np.testing.assert_allclose(loss_sum, ((predictions - [4.5, 1.0]) ** 2).sum(), rtol=1e-5)
  assert "accuracy" not in aux
  assert finetune.score(spec, np.array([[1.0], [2.0], [3.0]]), np.array([2.0, 4.0, 6.0])) == {
      "pearson": pytest.approx(1.0)}


def test_epoch_batches_resume_and_cover_each_epoch():
  spec = finetune.TaskSpec("classification")
  encoded = finetune.encode(spec, SPECIALS, [([[i + 1]], i % 2) for i in range(10)], 8)
  batches = finetune.EpochBatches(encoded, batch_size=4, seed=3)
  first = [next(batches)["tokens"][:, 0, 1] for _ in range(5)]
  assert sorted(np.concatenate(first)[:10].tolist()) == list(range(1, 11))  # One whole epoch.
  resumed = finetune.EpochBatches(encoded, batch_size=4, seed=3)
  resumed.set_state(batches.get_state())
  assert resumed.get_state() == {"step": 5}
  resumed.set_state({"step": 3})
  np.testing.assert_array_equal(next(resumed)["tokens"][:, 0, 1], first[3])
  with pytest.raises(ValueError, match="exceeds the task's 10 training examples"):
    finetune.EpochBatches(encoded, batch_size=11, seed=0)


def test_transfer_keeps_the_embeddings_and_the_first_layers():
  params = {"wte": 1, "wpe": 2, "h_0": 3, "h_1": 4, "h_2": 5, "clf_head": 6}
  assert finetune.transfer_only(params, 2) == {"wte": 1, "wpe": 2, "h_0": 3, "h_1": 4}
  assert finetune.transfer_only(params, 0) == {"wte": 1, "wpe": 2}
  assert finetune.transfer_only(params, -1) == params


def test_synthetic_tasks_are_balanced_and_deterministic():
  for name in [n for n in tasks.SPECS if n.startswith("synthetic_")]:
    train = tasks.examples(name, "train", num_synthetic=400, seed=0)
    assert train == tasks.examples(name, "train", num_synthetic=400, seed=0)
    assert train != tasks.examples(name, "validation", num_synthetic=400, seed=0)
    labels = np.array([label for _, label in train])
    assert 0.4 < labels.mean() < 0.6, name
  with pytest.raises(ValueError, match="unknown fine-tuning task 'cola'"):
    tasks.examples("cola", "train")


def test_synthetic_grammar_corruptions_break_the_grammar():
  from lineage.data import synthetic  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  for family in synthetic.FAMILIES.values():
    for _ in range(20):
      sentence = family(rng)
      assert tasks._corrupt(sentence, rng) != sentence  # pylint: disable=protected-access
  assert dataclasses.replace(tasks.SPECS["stsb"]).regression
