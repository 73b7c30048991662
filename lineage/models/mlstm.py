"""The byte-level multiplicative LSTM of the sentiment neuron (Radford, Jozefowicz, Sutskever 2017).

An mLSTM (Krause et al. 2016) lets the input byte choose the recurrent transition:
    m   = (x W_mx) * (h W_mh)
    z   = x W_x + m W_h + b,   split into i, f, o, u
    c'  = sigmoid(f) * c + sigmoid(i) * tanh(u)
    h'  = sigmoid(o) * tanh(c')
Every matrix is weight-normalised per output column as in the paper's released code
(Salimans & Kingma 2016): W = g * V / ||V||_column, with g initialised to ||V|| so that
W = V at initialisation. The time loop is one `lax.scan`; padding (mask False) freezes
(h, c), so a right-padded sequence ends with the same state as the unpadded one. The
feature vector of a text is its final cell state c_T, where the paper found the unit.
"""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

FEATURE_CHUNK = 64  # features() pads texts to multiples of this, so one compiled shape serves all


@dataclasses.dataclass(frozen=True)
class MLSTMConfig:
  vocab_size: int = 256
  embed_dim: int = 64
  hidden_dim: int = 4096
  dtype: str = "float32"  # compute dtype; parameters stay float32
  # Chrono initialisation (Tallec & Ollivier 2018) of the forget and input gate biases: unit k
  # starts with a memory of about T_k ~ U[1, max_timescale] bytes. Long timescales let units
  # integrate a whole text from the first step; short ones keep an untrained model's final
  # state about the last few words. The equations do not depend on it.
  max_timescale: float = 256.0


def init_carry(cfg: MLSTMConfig, batch: int):
  """The zero state (h, c), each [batch, hidden], in float32 (it crosses chunk boundaries)."""
  zeros = jnp.zeros((batch, cfg.hidden_dim), jnp.float32)
  return zeros, zeros


def _gate_bias_init(hidden, max_timescale):
  """b_f = log(T), b_i = -b_f with T ~ U[1, max_timescale - 1]; the o and u biases are 0."""
  if max_timescale <= 2:
    raise ValueError(f"max_timescale must be above 2 (bytes), got {max_timescale}")

  def init(rng, shape, dtype=jnp.float32):
    forget = jnp.log(jax.random.uniform(rng, (hidden,), dtype, 1.0, max_timescale - 1.0))
    return jnp.zeros(shape, dtype).at[hidden:2 * hidden].set(forget).at[:hidden].set(-forget)
  return init


def weight_norm(v, g):
  """W = g * V / ||V||_column (Salimans & Kingma 2016)."""
  return v * (g / jnp.linalg.norm(v, axis=0))


class MLSTM(nn.Module):
  """Byte embedding -> mLSTM -> logits over the next byte.

  apply({"params": p}, tokens [b, t], mask=None [b, t], carry=None, clamp=None)
    -> (logits [b, t, vocab], (h, c))
  clamp=(unit, value) overwrites c[:, unit] with value after every step (before h is
  computed from it), which is how the paper steered generation with the sentiment unit.
  Parameter names are those of the paper's code: wx, wh, wmx, wmh (the directions V),
  gx, gh, gmx, gmh (their column norms g) and b.
  """
  cfg: MLSTMConfig

  def setup(self):
    cfg = self.cfg
    hidden, embed = cfg.hidden_dim, cfg.embed_dim
    self.embed = nn.Embed(cfg.vocab_size, embed, embedding_init=nn.with_logical_partitioning(
        nn.initializers.normal(1.0), ("vocab", "embed")))
    fan_in = nn.initializers.variance_scaling(1.0, "fan_in", "normal")
    orthogonal = nn.initializers.orthogonal()
    shapes = {"x": ((embed, 4 * hidden), fan_in), "h": ((hidden, 4 * hidden), orthogonal),
              "mx": ((embed, hidden), fan_in), "mh": ((hidden, hidden), orthogonal)}
    directions, norms = {}, {}
    for name, (shape, init) in shapes.items():
      v = self.param(f"w{name}", nn.with_logical_partitioning(init, ("embed", "mlp")), shape)
      # g starts at ||V||, so that W = V at initialisation.
      g = self.param(f"g{name}", nn.with_logical_partitioning(
          lambda rng, shape, v=v: jnp.linalg.norm(v, axis=0), ("mlp",)), shape[1:])
      directions[name], norms[name] = v, g
    self.directions, self.norms = directions, norms
    gate_bias_init = _gate_bias_init(hidden, cfg.max_timescale)
    self.b = self.param("b", nn.with_logical_partitioning(gate_bias_init, ("mlp",)), (4 * hidden,))
    self.head = nn.Dense(cfg.vocab_size, dtype=cfg.dtype, kernel_init=nn.with_logical_partitioning(
        fan_in, ("embed", "vocab")), bias_init=nn.with_logical_partitioning(
            nn.initializers.zeros, ("vocab",)))

  def states(self, tokens, mask=None, carry=None, clamp=None):
    """(hs [b, t, hidden], cs [b, t, hidden], final (h, c)): the recurrence without the head."""
    dtype = self.cfg.dtype
    batch, length = tokens.shape
    if carry is None:
      carry = init_carry(self.cfg, batch)
    if mask is None:
      mask = jnp.ones((batch, length), bool)
    # Normalise once per call, not once per step.
    w = {k: weight_norm(self.directions[k], self.norms[k]).astype(dtype) for k in self.norms}
    x = self.embed(tokens).astype(dtype)
    # The input projections do not depend on the state: one big matmul outside the scan.
    x_gates = x @ w["x"] + self.b.astype(dtype)
    x_mult = x @ w["mx"]
    clamp_mask = None if clamp is None else jnp.arange(self.cfg.hidden_dim) == clamp[0]

    def step(carry, inputs):
      h, c = carry
      gates_t, mult_t, keep = inputs
      m = mult_t * (h.astype(dtype) @ w["mh"])
      i, f, o, u = jnp.split((gates_t + m @ w["h"]).astype(jnp.float32), 4, axis=-1)
      new_c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(u)
      if clamp_mask is not None:
        new_c = jnp.where(clamp_mask, jnp.asarray(clamp[1], jnp.float32), new_c)
      new_h = jax.nn.sigmoid(o) * jnp.tanh(new_c)
      keep = keep[:, None]
      h, c = jnp.where(keep, new_h, h), jnp.where(keep, new_c, c)
      return (h, c), (h, c)

    time_major = lambda a: jnp.swapaxes(a, 0, 1)
    carry, (hs, cs) = jax.lax.scan(step, carry, (time_major(x_gates), time_major(x_mult),
                                                 time_major(mask)))
    return time_major(hs), time_major(cs), carry

  def __call__(self, tokens, mask=None, carry=None, clamp=None):
    hs, _, carry = self.states(tokens, mask, carry, clamp)
    return self.head(hs).astype(jnp.float32), carry


WEIGHT_NORM_GAINS = ("gx", "gh", "gmx", "gmh")


def decay_mask(params):
  """Weight decay for an mLSTM shrinks the weight-norm gains g, and nothing else.

  W = g * V / ||V|| does not change when V shrinks, so decaying the directions V would only
  raise their effective learning rate; g is each column's scale. Decaying it lets a unit
  whose cell has saturated (|c| >> 1, so tanh passes no gradient and it is stuck as an
  integrator of its input) drift back to where it can learn again: on the tiny preset,
  training turns most long-memory units into such integrators within 100 steps, and
  without decay whether one came back to carry the mood was a matter of the seed.
  The embedding and the head are not decayed.
  """
  def leaf(path, _):
    return getattr(path[-1], "key", None) in WEIGHT_NORM_GAINS
  return jax.tree_util.tree_map_with_path(leaf, params)


def init_params(cfg: MLSTMConfig, rng):
  """Parameters with their logical axes (nn.Partitioned leaves), as the loop expects."""
  return MLSTM(cfg).init(rng, jnp.zeros((1, 1), jnp.int32))["params"]


def flops_per_token(cfg: MLSTMConfig):
  """Training FLOPs per byte: 6 x the multiply-adds of the matrices (5H^2 recurrent, 5EH input,
  H*V head), the usual 6N convention for a model whose every weight is used once per token."""
  h, e = cfg.hidden_dim, cfg.embed_dim
  return 6.0 * (5 * h * h + 5 * e * h + h * cfg.vocab_size)


def lm_loss_fn(cfg: MLSTMConfig):
  """The stateful next-byte loss for the loop's truncated BPTT (Task.init_carry set).

  loss_fn(params, batch, rng, deterministic, carry) -> (loss_sum, (aux, new_carry));
  the incoming carry is a constant: gradients stop at the chunk boundary.
  """
  model = MLSTM(cfg)

  def loss_fn(params, batch, rng, deterministic, carry):
    del rng, deterministic  # no dropout in the mLSTM
    carry = jax.lax.stop_gradient(carry)
    logits, new_carry = model.apply({"params": params}, batch["inputs"], carry=carry)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
    correct = logits.argmax(-1) == batch["targets"]
    aux = {"weight": jnp.asarray(losses.size, jnp.float32), "accuracy": correct.sum()}
    return losses.sum(), (aux, new_carry)

  return loss_fn


@functools.partial(jax.jit, static_argnums=0)
def _chunk_states(cfg, params, tokens, mask, carry):
  _, _, carry = MLSTM(cfg).apply({"params": params}, tokens, mask=mask, carry=carry,
                                 method=MLSTM.states)
  return carry


def _padded(byte_seqs, batch_size, length):
  tokens = np.zeros((batch_size, length), np.int32)
  mask = np.zeros((batch_size, length), bool)
  for row, seq in enumerate(byte_seqs):
    tokens[row, :len(seq)] = np.frombuffer(seq, np.uint8)
    mask[row, :len(seq)] = True
  return tokens, mask


def _check_bytes(byte_seqs):
  for i, seq in enumerate(byte_seqs):
    if not isinstance(seq, (bytes, bytearray)):
      raise TypeError(f"byte_seqs[{i}] is a {type(seq).__name__}, not bytes; encode texts with "
                      "lineage.eval.probe.preprocess (or str.encode('utf-8')) first")


def features(cfg: MLSTMConfig, params, byte_seqs, batch_size=64):
  """Final cell states c_T [n, hidden] of byte sequences (the paper's text features).

  Texts are sorted by length, right-padded to a multiple of FEATURE_CHUNK and run chunk by
  chunk with the state carried over, so every call reuses one compiled [batch_size,
  FEATURE_CHUNK] program; the mask keeps padding from changing c_T. An empty sequence
  gets the initial state (zeros).
  """
  byte_seqs = list(byte_seqs)
  _check_bytes(byte_seqs)
  out = np.zeros((len(byte_seqs), cfg.hidden_dim), np.float32)
  order = sorted(range(len(byte_seqs)), key=lambda i: len(byte_seqs[i]))
  for start in range(0, len(order), batch_size):
    rows = order[start:start + batch_size]
    longest = max(len(byte_seqs[i]) for i in rows)
    length = max(FEATURE_CHUNK, -(-longest // FEATURE_CHUNK) * FEATURE_CHUNK)
    tokens, mask = _padded([byte_seqs[i] for i in rows], batch_size, length)
    carry = init_carry(cfg, batch_size)
    for t in range(0, length, FEATURE_CHUNK):
      chunk = slice(t, t + FEATURE_CHUNK)
      carry = _chunk_states(cfg, params, tokens[:, chunk], mask[:, chunk], carry)
    out[rows] = np.asarray(carry[1])[:len(rows)]
  return out


def unit_trace(cfg: MLSTMConfig, params, byte_seq: bytes, unit: int):
  """c[unit] after each byte of `byte_seq`: the per-character picture of a neuron."""
  _check_bytes([byte_seq])
  if not 0 <= unit < cfg.hidden_dim:
    raise ValueError(f"unit {unit} is outside 0..{cfg.hidden_dim - 1}")
  if not byte_seq:
    return np.zeros((0,), np.float32)
  tokens = np.frombuffer(bytes(byte_seq), np.uint8).astype(np.int32)[None]
  _, cs, _ = MLSTM(cfg).apply({"params": params}, tokens, method=MLSTM.states)
  return np.asarray(cs[0, :, unit])


@functools.partial(jax.jit, static_argnums=0)
def _byte_logprobs(cfg, params, tokens):
  logits, _ = MLSTM(cfg).apply({"params": params}, tokens[:, :-1])
  return -optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:])


def continuation_logprob(cfg: MLSTMConfig, params, prefixes, continuations):
  """log p(continuation | prefix) [n], summed over the continuation's bytes, each pair read
  from the zero state (prefixes must be non-empty: the first byte is not predicted)."""
  _check_bytes(prefixes)
  _check_bytes(continuations)
  if len(prefixes) != len(continuations) or any(not p for p in prefixes):
    raise ValueError("continuation_logprob needs one non-empty prefix per continuation")
  seqs = [p + c for p, c in zip(prefixes, continuations)]
  length = -(-max(map(len, seqs)) // FEATURE_CHUNK) * FEATURE_CHUNK
  tokens, _ = _padded(seqs, len(seqs), length)
  logprobs = np.asarray(_byte_logprobs(cfg, params, tokens))
  scored = np.zeros(logprobs.shape, bool)
  for row, (p, c) in enumerate(zip(prefixes, continuations)):
    scored[row, len(p) - 1:len(p) - 1 + len(c)] = True  # logprobs[:, t] scores byte t + 1
  return (logprobs * scored).sum(axis=1)


@functools.partial(jax.jit, static_argnums=(0, 4, 6))
def _sample_loop(cfg, params, carry, last_logits, num_bytes, rng, clamped, clamp, temperature):
  model = MLSTM(cfg)

  def step(state, key):
    carry, logits = state
    token = jax.random.categorical(key, logits / temperature)
    logits, carry = model.apply({"params": params}, token[:, None], carry=carry,
                                clamp=clamp if clamped else None)
    return (carry, logits[:, -1]), token

  _, tokens = jax.lax.scan(step, (carry, last_logits), jax.random.split(rng, num_bytes))
  return tokens[:, 0]


def sample(cfg: MLSTMConfig, params, prompt: bytes, num_bytes: int, rng, temperature=1.0,
           clamp=None):
  """`num_bytes` bytes sampled after `prompt`; clamp=(unit, value) fixes that cell throughout."""
  _check_bytes([prompt])
  if not prompt:
    raise ValueError("sample needs a non-empty prompt: the model predicts each byte from the "
                     "previous one (the paper's texts start with b'\\n ')")
  if temperature <= 0:
    raise ValueError(f"temperature must be positive, got {temperature}")
  if clamp is not None and not 0 <= clamp[0] < cfg.hidden_dim:
    raise ValueError(f"clamp unit {clamp[0]} is outside 0..{cfg.hidden_dim - 1}")
  if num_bytes <= 0:
    return b""
  clamp_arrays = (jnp.int32(0), jnp.float32(0.0)) if clamp is None else (
      jnp.int32(clamp[0]), jnp.float32(clamp[1]))
  tokens = np.frombuffer(bytes(prompt), np.uint8).astype(np.int32)[None]
  logits, carry = MLSTM(cfg).apply({"params": params}, tokens,
                                   clamp=None if clamp is None else clamp_arrays)
  out = _sample_loop(cfg, params, carry, logits[:, -1], int(num_bytes), rng, clamp is not None,
                     clamp_arrays, jnp.float32(temperature))
  return bytes(np.asarray(out, np.uint8).tolist())
