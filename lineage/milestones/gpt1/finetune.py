"""GPT-1's discriminative fine-tuning (Radford et al. 2018, section 3.2): the pre-trained decoder,
a linear head on the extract token's final state, and the objective
    L3 = L2(task) + lambda * L1(language modelling on the same inputs), lambda = 0.5.

Examples arrive as token sequences from `transforms.transform` (1 per example, 2 for
similarity, one per option for multiple choice), padded into [examples, views, length].
The head sees one state per example: the extract state (classification, entailment), the sum
of both orderings' states (similarity), or one score per option, softmaxed over the options
(multiple choice). `regression` heads (STS-B's 0-5 similarity) predict one number, trained
by squared error and judged by Pearson correlation.
"""

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lineage.milestones.gpt1 import transforms
from lineage.models import gpt


class GPTWithHead(gpt.GPT):
  """GPT plus a linear head `clf_head` (with dropout) beside the tied LM head.

  Its parameters are the GPT's (same names, so a pre-trained checkpoint loads into them) plus
  `clf_head`."""
  num_outputs: int = 2
  head_dropout: float = 0.1

  def setup(self):
    super().setup()
    self.clf_dropout = nn.Dropout(self.head_dropout)
    self.clf_head = nn.Dense(
        self.num_outputs, param_dtype=jnp.float32,
        kernel_init=nn.with_logical_partitioning(nn.initializers.normal(0.02), ("embed", None)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), (None,)))

  def finetune(self, tokens, extract, combine, with_lm, deterministic=True):
    """(LM logits [n*views, length, vocab] or None, head outputs) for tokens [n*views, length].

    combine: "each" -> [n, outputs]; "sum" (two orderings) -> [n / 2, outputs];
    "options" -> [n / views, views] (one score per option, views given by `extract`'s shape).
    """
    hidden = self.hidden_states(tokens, deterministic=deterministic)
    lm_logits = self.wte.attend(hidden).astype(jnp.float32) if with_lm else None
    states = hidden[jnp.arange(tokens.shape[0]), extract.reshape(-1)].astype(jnp.float32)
    if combine == "sum":
      states = states.reshape(extract.shape[0], -1, states.shape[-1]).sum(1)
    outputs = self.clf_head(self.clf_dropout(states, deterministic=deterministic))
    if combine == "options":
      outputs = outputs.reshape(extract.shape[0], extract.shape[1])
    return lm_logits, outputs


def init_params(model, combine, views, rng):
  """Boxed parameters of a GPTWithHead (the GPT's and the head's) for `views` sequences."""
  tokens = jnp.zeros((views, 4), jnp.int32)
  return model.init(rng, tokens, jnp.zeros((1, views), jnp.int32), combine, False,
                    method="finetune")["params"]


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """What a fine-tuning task is: its input transformation and what its head predicts."""
  kind: str  # transforms.KINDS
  num_classes: int = 2  # classification, entailment, similarity; ignored for multiple choice
  regression: bool = False

  def __post_init__(self):
    if self.kind not in transforms.KINDS:
      raise ValueError(f"unknown task kind {self.kind!r}; choose one of "
                       f"{', '.join(transforms.KINDS)}")

  @property
  def combine(self):
    return {"similarity": "sum", "multiple_choice": "options"}.get(self.kind, "each")

  @property
  def num_outputs(self):
    if self.kind == "multiple_choice" or self.regression:
      return 1
    return self.num_classes


@dataclasses.dataclass
class Encoded:
  """A task's examples as arrays: tokens [n, views, length], extract positions [n, views],
  LM target weights [n, views, length - 1] (text tokens only), labels [n]."""
  tokens: np.ndarray
  extract: np.ndarray
  lm_weights: np.ndarray
  labels: np.ndarray
  truncated: int

  def __len__(self):
    return len(self.labels)

  def rows(self, index):
    return {"tokens": self.tokens[index], "extract": self.extract[index],
            "lm_weights": self.lm_weights[index], "labels": self.labels[index],
            "example_weights": np.ones(len(index), np.float32)}


def encode(spec, specials, examples, max_len):
  """examples: [(texts as token lists, label)] -> Encoded, every sequence padded to max_len."""
  if not examples:
    raise ValueError("the task has no examples")
  sequences, truncated = zip(*(transforms.transform(spec.kind, specials, texts, max_len)
                               for texts, _ in examples))
  views = {len(s) for s in sequences}
  if len(views) != 1:
    raise ValueError(f"every example needs the same number of options; got {sorted(views)}")
  n, v = len(examples), views.pop()
  tokens = np.zeros((n, v, max_len), np.int32)
  extract = np.zeros((n, v), np.int32)
  for i, seqs in enumerate(sequences):
    for j, seq in enumerate(seqs):
      tokens[i, j, :len(seq)] = seq
      extract[i, j] = len(seq) - 1
  # LM targets: the text tokens, not the special tokens and not the padding after extract.
  lm_weights = ((tokens[:, :, 1:] < specials.start)
                & (np.arange(1, max_len) < extract[..., None])).astype(np.float32)
  label_dtype = np.float32 if spec.regression else np.int32
  labels = np.asarray([label for _, label in examples], label_dtype)
  return Encoded(tokens, extract, lm_weights, labels, int(sum(truncated)))


def loss_fn(model, spec, lm_coef):
  """The loop's loss: task loss summed over examples + lm_coef x the mean LM loss per token
  times the examples, so that the step's division by the example count gives L2 + lambda L1."""
  def fn(params, batch, rng, deterministic):
    tokens = batch["tokens"]
    n, v, length = tokens.shape
    lm_logits, outputs = model.apply(
        {"params": params}, tokens.reshape(n * v, length), batch["extract"], spec.combine,
        lm_coef > 0, deterministic=deterministic, method="finetune",
        rngs=None if deterministic else {"dropout": rng})
    weights = batch["example_weights"]
    task_losses, correct = _task_losses(spec, outputs, batch["labels"])
    task_sum = (task_losses * weights).sum()
    aux = {"weight": weights.sum(), "task_loss": task_sum}
    if correct is not None:
      aux["accuracy"] = (correct * weights).sum()
    if lm_coef > 0:
      lm_losses = optax.softmax_cross_entropy_with_integer_labels(
          lm_logits[:, :-1], tokens.reshape(n * v, length)[:, 1:])
      lm_weights = batch["lm_weights"].reshape(n * v, length - 1) * jnp.repeat(weights, v)[:, None]
      lm_mean = (lm_losses * lm_weights).sum() / jnp.maximum(lm_weights.sum(), 1.0)
      aux["lm_loss"] = lm_mean * weights.sum()
      task_sum = task_sum + lm_coef * lm_mean * weights.sum()
    return task_sum, aux
  return fn


def _task_losses(spec, outputs, labels):
  """(per-example loss, per-example correctness or None for regression)."""
  if spec.regression:
    return (outputs[:, 0] - labels) ** 2, None
  losses = optax.softmax_cross_entropy_with_integer_labels(outputs, labels)
  return losses, (outputs.argmax(-1) == labels).astype(jnp.float32)


class EpochBatches:
  """Training batches that walk shuffled epochs; state {"step"}, a pure function of the seed,
  so a resumed run sees the batches an uninterrupted one would."""

  def __init__(self, encoded, batch_size, seed):
    if batch_size > len(encoded):
      raise ValueError(f"train.batch_size={batch_size} exceeds the task's {len(encoded)} "
                       "training examples; lower it")
    self.encoded, self.batch_size, self.seed, self.step = encoded, batch_size, seed, 0

  def __iter__(self):
    return self

  def __next__(self):
    n = len(self.encoded)
    first = self.step * self.batch_size
    index = [self._order(position // n)[position % n]
             for position in range(first, first + self.batch_size)]
    self.step += 1
    return self.encoded.rows(np.asarray(index))

  def _order(self, epoch):
    return np.random.default_rng((self.seed, epoch)).permutation(len(self.encoded))

  def get_state(self):
    return {"step": self.step}

  def set_state(self, state):
    self.step = int(state["step"])


def eval_batches(encoded, batch_size):
  """The whole set in order, the last batch padded with weight-0 rows (one jitted shape)."""
  for first in range(0, len(encoded), batch_size):
    index = np.arange(first, min(first + batch_size, len(encoded)))
    batch = encoded.rows(np.pad(index, (0, batch_size - len(index)), mode="edge"))
    batch["example_weights"][len(index):] = 0.0
    yield batch


def predictor(model, spec):
  """jitted (params, batch) -> head outputs, deterministic, no LM logits."""
  @jax.jit
  def predict(params, batch):
    n, v, length = batch["tokens"].shape
    return model.apply({"params": params}, batch["tokens"].reshape(n * v, length),
                       batch["extract"], spec.combine, False, method="finetune")[1]
  return predict


def score(spec, outputs, labels):
  """{"accuracy": ...} for classes and options, {"pearson": ...} for regression."""
  if spec.regression:
    predictions = outputs[:, 0]
    if np.std(predictions) == 0 or np.std(labels) == 0:
      return {"pearson": 0.0}
    return {"pearson": float(np.corrcoef(predictions, labels)[0, 1])}
  return {"accuracy": float((outputs.argmax(-1) == labels).mean())}


def evaluator(model, spec, encoded, batch_size):
  """The Task's evaluate hook: the head's metric on the held-out examples."""
  predict = predictor(model, spec)

  def evaluate(params, step):
    del step
    outputs = np.concatenate([np.asarray(predict(params, batch))
                              for batch in eval_batches(encoded, batch_size)])[:len(encoded)]
    return score(spec, outputs, encoded.labels)
  return evaluate


def transfer_only(params, num_layers):
  """The embeddings and the first `num_layers` blocks of a pre-trained GPT's parameters: what the
  paper's layer-transfer sweep keeps (the rest is freshly initialised); -1 keeps every block."""
  if num_layers < 0:
    return params
  keep = {"wte", "wpe"} | {f"h_{i}" for i in range(num_layers)}
  return {name: value for name, value in params.items() if name in keep}


def steps_for_epochs(num_examples, batch_size, epochs):
  return max(1, math.ceil(num_examples * epochs / batch_size))
