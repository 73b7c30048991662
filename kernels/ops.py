"""One entry point for attention, dispatching to an implementation by name.

"xla" is the plain-jnp reference (always available); "pallas" is our flash
attention (kernels.flash_attention, kernels.decode_attention; interpret mode on
CPU, lowered for TPU; on GPU, self-attention goes to the Mosaic GPU kernel
in kernels.flash_attention_mgpu, bf16/fp16 for Hopper, while cross-attention
and cached decoding have no GPU kernel); "cudnn" is cuDNN's fused kernel through
`jax.nn.dot_product_attention` (GPU only, half precision); "auto" picks the
fastest implementation that supports the requested masks and dtype on this
backend and has run on it.
"""

import jax
import jax.numpy as jnp

from kernels import decode_attention, flash_attention, flash_attention_mgpu, reference

IMPLEMENTATIONS = ("auto", "xla", "pallas", "cudnn")


def _check_implementation(implementation):
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(
        f"unknown attention implementation {implementation!r}; choose one of "
        f"{', '.join(IMPLEMENTATIONS)} (e.g. --config.model.attention_impl=xla)")


def _resolve(implementation, segment_ids, dtype):
  _check_implementation(implementation)
  if implementation != "auto":
    return implementation
  # "pallas" is opt-in on TPU and GPU until it has run on that hardware: only its lowering
  # (and, for GPU, its numbers in jax's GPU interpreter) are tested, and nobody has yet
  # measured the Mosaic GPU kernel against cuDNN (experiments/gpu_check.sh does).
  # cuDNN's fused kernel rejects float32 inputs, the default compute dtype.
  if (jax.default_backend() == "gpu" and segment_ids is None
      and dtype in (jnp.float16, jnp.bfloat16)):
    return "cudnn"
  return "xla"


def attention(q, k, v, *, causal=True, segment_ids=None, local_window=None,
              implementation="auto", q_segment_ids=None, kv_segment_ids=None):
  """Multi-head attention, q [batch, q_len, heads, head_dim], k/v [batch, kv_len, ...].

  Self-attention: segment_ids [batch, seq] keep packed documents apart;
  local_window W lets a query see only the W most recent keys (itself included),
  as in GPT-3's banded layers. Cross-attention (kv_len may differ; causal=False):
  a query sees the keys whose kv_segment_ids [batch, kv_len] equal its
  q_segment_ids [batch, q_len], so padding on either side gets an id of its own.
  """
  q_seg, kv_seg = reference.check_attention_args(
      q, k, causal=causal, segment_ids=segment_ids, q_segment_ids=q_segment_ids,
      kv_segment_ids=kv_segment_ids, local_window=local_window)
  implementation = _resolve(implementation, q_seg, q.dtype)
  if implementation == "cudnn":
    # Its query/key sequence lengths express right-padding only, which ids cannot be
    # checked to be at trace time.
    if q_seg is not None:
      raise ValueError("the cudnn attention path does not take segment_ids; "
                       "use implementation='xla' for packed or padded sequences")
    window = None if local_window is None else (local_window - 1, 0 if causal else local_window - 1)
    return jax.nn.dot_product_attention(q, k, v, is_causal=causal, local_window_size=window,
                                        implementation="cudnn")
  if implementation == "pallas" and jax.default_backend() == "gpu":
    if q.shape[1] != k.shape[1] or q_segment_ids is not None:
      raise NotImplementedError("the Mosaic GPU kernel does self-attention only; use "
                                "implementation='cudnn' or 'xla' for cross-attention")
    return flash_attention_mgpu.flash_attention_mgpu(q, k, v, causal=causal,
                                                     segment_ids=segment_ids,
                                                     local_window=local_window)
  if implementation == "pallas":
    return flash_attention.flash_attention(q, k, v, causal=causal, q_segment_ids=q_seg,
                                           kv_segment_ids=kv_seg, local_window=local_window)
  return reference.attention_reference(q, k, v, causal=causal, q_segment_ids=q_seg,
                                       kv_segment_ids=kv_seg, local_window=local_window)


def cached_attention(q, k_cache, v_cache, *, q_slots, kv_valid, local_window=None,
                     implementation="auto"):
  """Attention of new queries over a KV cache, used for prefill and decoding.

  q [batch, new, heads, head_dim] sits at cache slots q_slots [batch, new];
  k_cache and v_cache are [batch, heads, slots, head_dim] (heads first: see gpt.init_cache);
  kv_valid [batch, slots] marks the filled, non-padding slots.
  """
  implementation = _resolve(implementation, None, q.dtype)
  if implementation == "pallas":
    return decode_attention.decode_attention(q, k_cache, v_cache, q_slots=q_slots,
                                             kv_valid=kv_valid, local_window=local_window)
  return reference.cached_attention_reference(q, k_cache, v_cache, q_slots=q_slots,
                                              kv_valid=kv_valid, local_window=local_window)
