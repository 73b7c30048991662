#!/usr/bin/env bash
# The Hopper acceptance check of the Mosaic GPU flash attention, in one command.
#
#   experiments/gpu_check.sh [PYTHON]        # default .venv/bin/python, with the CUDA jaxlib
#
# 1. tests/test_flash_attention_gpu.py with the kernels compiled for the GPU: forward
#    and gradients against the fp32 reference over causal, local-window and packed
#    cases, the CUDA lowering and the dispatch of kernels.ops (about a minute).
# 2. experiments/bench.py --what=attention: forward+backward at 4096 and 8192 tokens,
#    head_dim 64 and 128, bf16, causal, 12 heads, batch 2, for xla, pallas (this
#    kernel, default 64x64 tiles, then two other tilings to tune its default) and
#    cudnn (jax.nn.dot_product_attention) in the same run; each row first checks
#    its gradients against fp32 xla, then prints TFLOP/s and the ratio to cudnn.
#    The goal is pallas >= 0.9x cudnn. The last line is the JSON result.
# Written for an H100/H200 session of at most about 8 minutes; see BUILD.md.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${1:-.venv/bin/python}"

"$python" - <<'PY'
import jax
if jax.default_backend() != "gpu":
  raise SystemExit("jax sees no GPU: install the CUDA jaxlib first (BUILD.md, GPU section)")
print("device:", jax.devices()[0].device_kind)
PY
"$python" -m pytest -q tests/test_flash_attention_gpu.py
"$python" -m experiments.bench --what=attention --config=configs/gpt2.py:117m \
  --config.model.dtype=bfloat16 --seq_lens=4096,8192 --head_dims=64,128 --batch=2 \
  --pallas_tiles=64x128,128x64 --steps=10 --warmup=2
