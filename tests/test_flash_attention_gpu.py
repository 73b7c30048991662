"""The Mosaic GPU (Hopper) flash attention, checked with or without a GPU.

Without one, numerics run in jax's GPU interpret mode, which simulates shared
memory, TMA copies, barriers and wgmma on CPU, and lowering for CUDA runs
through jax.export, which emits the Mosaic GPU kernels without querying a
device. What neither can show (ptxas, register pressure, races the simulator
misses, speed) is left to experiments/gpu_check.sh on an H100/H200, which runs
this file there with the kernels compiled, adding sequences long enough to keep
every pipeline and many thread blocks busy.

jax 0.10.2's interpreter lacks two things the kernels use, which `_interpreter`
adds for these tests only: layout casts (a no-op without registers to lay out)
and transposed wgmma operands (plgpu.transpose_ref). Its race detector runs too:
TMA copies in flight must not overlap the kernel's reads and writes of the same
shared memory. The modules it patches are jax's private ones, imported there
alone: on a CPU with a jax that has moved them, the interpreted cases skip,
saying why, and the rest of the file runs; on a GPU they are not needed.
"""

import functools
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental.pallas import mosaic_gpu as plgpu

from kernels import flash_attention_mgpu as fm
from kernels import ops, reference
from lineage.models import gpt


def _wgmma_with_transposes(gpu_callbacks, interpret_utils, state_types, *, token, device_id,
                           grid_point_coords, thread_id, acc_allocation_key_as_array,
                           acc_transforms, acc_dtype, a_allocation_key_as_array, a_transforms,
                           b_allocation_key_as_array, b_transforms, source_info=None):
  """gpu_callbacks.wgmma, reading operands through a trailing TransposeTransform."""
  memory = gpu_callbacks._get_shared_memory()
  thread = memory.get_global_thread_id(int(device_id), int(thread_id))
  log = interpret_utils.GPULoggingInfo(
      device_id=int(device_id), grid_point_coords=tuple(int(x) for x in grid_point_coords),
      thread_id=int(thread_id), source_info=source_info)

  def read(key_array, transforms):
    transforms = gpu_callbacks._remove_noop_transforms(transforms)
    permutation = None
    if transforms and isinstance(transforms[-1], state_types.TransposeTransform):
      *transforms, last = transforms
      permutation = last.permutation
    key = gpu_callbacks.HostAllocationKey.from_array(key_array)
    rng = interpret_utils.to_range(jax.tree.map(int, tuple(transforms)))
    value, _, _ = memory.get_buffer_content(key, rng, thread, logging_info=log)
    return (key, rng, value if permutation is None else np.transpose(value, permutation))

  _, _, a = read(a_allocation_key_as_array, a_transforms)
  _, _, b = read(b_allocation_key_as_array, b_transforms)
  acc_key, acc_range, acc = read(acc_allocation_key_as_array, acc_transforms)
  memory.store_buffer_content(acc_key, acc_range, acc + np.matmul(a, b, dtype=acc_dtype),
                              thread, logging_info=log)
  return token


@functools.cache
def _interpreter():
  """jax's private GPU interpreter, taught layout casts and transposed wgmma operands:
  (InterpretGPUParams, whether races were found, reset), or why this jax cannot have it."""
  try:
    from jax._src.interpreters import mlir
    from jax._src.pallas.mosaic.interpret import utils as interpret_utils
    from jax._src.pallas.mosaic_gpu import core as mgpu_core
    from jax._src.pallas.mosaic_gpu.interpret import gpu_callbacks, interpret_pallas_call
    from jax._src.pallas.mosaic_gpu.interpret.params import InterpretGPUParams
    from jax._src.state import types as state_types
  except ImportError as missing:
    return (f"jax {jax.__version__} lacks the private GPU interpreter modules patched "
            f"here: {missing}")
  identity = lambda x, new_layout: x
  mgpu_core.layout_cast_p.def_impl(identity)
  mlir.register_lowering(mgpu_core.layout_cast_p,
                         mlir.lower_fun(identity, multiple_results=False), platform="cpu")
  gpu_callbacks.wgmma = functools.partial(_wgmma_with_transposes, gpu_callbacks,
                                          interpret_utils, state_types)
  return (InterpretGPUParams, lambda: interpret_pallas_call.get_races().races_found,
          gpu_callbacks.reset_gpu_interpret_mode_state)


@pytest.fixture
def interpret():
  """Compiled kernels on a GPU (experiments/gpu_check.sh runs this file there), else simulated."""
  if jax.default_backend() == "gpu":
    yield None
    return
  interpreter = _interpreter()
  if isinstance(interpreter, str):
    pytest.skip(interpreter)
  params, races_found, reset = interpreter
  yield params(detect_races=True)
  assert not races_found(), "TMA copies race the kernel"
  reset()


def inputs(shape, dtype=jnp.bfloat16, seed=0):
  keys = jax.random.split(jax.random.PRNGKey(seed), 4)
  return tuple(jax.random.normal(key, shape, jnp.float32).astype(dtype) for key in keys)


def packed_segments(batch, length, seed=0):
  ids = np.random.default_rng(seed).integers(0, 3, (batch, length))
  return jnp.asarray(np.sort(ids, axis=1), jnp.int32)


def rel_err(got, want):
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  return np.abs(got - want).max() / np.abs(want).max()


def out_and_grads(attend, q, k, v, cotangent):
  out, vjp = jax.vjp(attend, q, k, v)
  return (out, *vjp(cotangent))


def fp32_reference(**masks):
  def attend(q, k, v):
    q, k, v = (x.astype(jnp.float32) for x in (q, k, v))
    return reference.attention_reference(q, k, v, **masks)
  return attend


# (batch, seq, heads, head_dim), causal, local_window, segments, block_q, block_kv
CASES = [
    ((1, 192, 1, 64), True, 70, False, 64, 64),  # causal; the window skips whole tiles
    ((1, 128, 1, 128), True, None, True, 64, 64),  # head_dim 128 and packed documents
    ((1, 128, 2, 64), False, 17, True, 64, 128),  # two-sided window, wide key tiles
]
# Compiled on a GPU only (the interpreter would take hours): dozens of pipeline steps per
# tile and hundreds of thread blocks, where ordering bugs and races would show.
GPU_CASES = [
    ((2, 2048, 4, 64), True, None, False, 64, 64),  # the benchmark's causal attention
    ((2, 2048, 4, 128), True, None, True, 64, 128),  # head_dim 128, packed documents
    ((1, 4096, 2, 64), True, 1000, False, 128, 64),  # a local window across tiles
    ((2, 1024, 2, 128), False, 300, True, 64, 64),  # two-sided window with documents
]


def check_against_reference(interpret, record_property, shape, causal, window, segments,
                            block_q, block_kv):
  """Output and the three gradients in bf16 within 2% (of the largest value) of fp32."""
  q, k, v, cotangent = inputs(shape)
  segment_ids = packed_segments(shape[0], shape[1]) if segments else None
  masks = dict(causal=causal, local_window=window, segment_ids=segment_ids)
  got = out_and_grads(functools.partial(fm.flash_attention_mgpu, **masks, block_q=block_q,
                                        block_kv=block_kv, interpret=interpret),
                      q, k, v, cotangent)
  want = out_and_grads(fp32_reference(**masks), q, k, v, cotangent.astype(jnp.float32))
  errors = {name: float(rel_err(g, w)) for name, g, w in zip(("out", "dq", "dk", "dv"), got, want)}
  record_property("rel_err", errors)  # experiments/gpu_check.sh reports them
  assert all(g.dtype == jnp.bfloat16 for g in got)
  assert max(errors.values()) < 2e-2, errors


@pytest.mark.slow
@pytest.mark.parametrize("shape, causal, window, segments, block_q, block_kv", CASES)
def test_matches_reference(interpret, record_property, shape, causal, window, segments,
                           block_q, block_kv):
  """In jax's GPU interpreter on CPU, compiled on a GPU."""
  check_against_reference(interpret, record_property, shape, causal, window, segments,
                          block_q, block_kv)


@pytest.mark.slow
@pytest.mark.parametrize("shape, causal, window, segments, block_q, block_kv", GPU_CASES)
def test_matches_reference_at_length_on_gpu(record_property, shape, causal, window, segments,
                                            block_q, block_kv):
  if jax.default_backend() != "gpu":
    pytest.skip("needs a GPU: sequences this long would take the interpreter hours")
  check_against_reference(None, record_property, shape, causal, window, segments, block_q,
                          block_kv)


def test_lowers_for_cuda_forward_and_backward():
  """Both head dims the acceptance benchmark uses, causal, with and without segments."""
  for head_dim, segments in ((64, True), (128, False)):
    q, k, v, cotangent = inputs((1, 256, 2, head_dim))
    segment_ids = packed_segments(1, 256) if segments else None

    def loss(q, k, v):
      out = fm.flash_attention_mgpu(q, k, v, causal=True, segment_ids=segment_ids,
                                    block_kv=128)
      return jnp.sum(out.astype(jnp.float32) * cotangent)

    exported = jax.export.export(jax.jit(jax.grad(loss, argnums=(0, 1, 2))),
                                 platforms=["cuda"])(q, k, v)
    module = exported.mlir_module()
    assert module.count("@mosaic_gpu") >= 3, "forward, dq and dk/dv kernels"


@pytest.mark.parametrize("bad, message", [
    (dict(dtype=jnp.float32), "bfloat16 or float16"),
    (dict(shape=(1, 96, 1, 64)), "multiple of block_q"),
    (dict(shape=(1, 128, 1, 32)), "head_dim 32"),
    (dict(block_q=32), "multiples of 64"),
])
def test_rejects_unsupported_inputs_naming_alternatives(bad, message):
  q, k, v, _ = inputs(bad.get("shape", (1, 128, 1, 64)), bad.get("dtype", jnp.bfloat16))
  with pytest.raises(NotImplementedError, match=message) as error:
    fm.flash_attention_mgpu(q, k, v, block_q=bad.get("block_q", 64))
  assert "cudnn" in str(error.value) and "xla" in str(error.value)


def test_ops_pallas_on_gpu_lowers_to_the_mosaic_kernel(monkeypatch):
  """ops.attention(implementation='pallas') on a GPU backend picks the Mosaic GPU kernel."""
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  q, k, v, _ = inputs((1, 128, 1, 64))
  attend = functools.partial(ops.attention, causal=True, implementation="pallas")
  module = jax.export.export(jax.jit(attend), platforms=["cuda"])(q, k, v).mlir_module()
  assert "@mosaic_gpu" in module
  with pytest.raises(NotImplementedError, match="cudnn"):
    ops.attention(q.astype(jnp.float32), k, v, implementation="pallas")


def test_kernels_ask_for_lane_semantics(monkeypatch):
  """jax 0.11 lowers Mosaic GPU kernels with Warpgroup semantics unless told otherwise; ours
  name Lane, so such a default must not change what they lower to."""
  q, k, v, _ = inputs((1, 128, 1, 64))
  modules = []
  for default in ("as installed", plgpu.LoweringSemantics.Warpgroup):
    if default != "as installed":
      monkeypatch.setattr(plgpu, "CompilerParams", functools.partial(
          plgpu.CompilerParams, lowering_semantics=default))
    attend = jax.jit(functools.partial(fm.flash_attention_mgpu, causal=True))  # a fresh trace
    modules.append(jax.export.export(attend, platforms=["cuda"])(q, k, v).mlir_module())
  assert modules[0] == modules[1]


@pytest.mark.slow
def test_bench_attention_reports_tflops_and_gradient_error():
  """bench --what=attention on CPU: every row checked against fp32 xla."""
  if jax.default_backend() == "gpu":
    pytest.skip("experiments/gpu_check.sh runs the bench itself, at the acceptance sizes")
  from lineage.bench import attention as attention_bench
  cfg = types.SimpleNamespace(model=gpt.GPTConfig(vocab_size=257, context=128, num_layers=4,
                                                  num_heads=4, embed_dim=128, mlp_dim=512))
  result = attention_bench.bench_attention(cfg, [32], batch=1, steps=1, warmup=1, head_dims=[8])
  rows = result["results"]
  assert {"xla", "pallas"} <= {r["implementation"] for r in rows}
  assert all(r["head_dim"] == 8 for r in rows)
  for row in rows:
    assert row["tflops_per_sec"] > 0 and row["seconds_median"] > 0
    assert row["grad_rel_error"] < 1e-4, row["implementation"]
