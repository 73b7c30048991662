#!/usr/bin/env bash
# The GPU acceptance run, in one command of at most 8 minutes, on the GPU machine's own Python
# and jax (BUILD.md, GPU section: what it needs, what it prints, the table to fill):
#
#   experiments/gpu_check.sh [FLAGS]     # PYTHON=python3 unless set; FLAGS go to the entry point
#
# 1. kernel: tests/test_flash_attention_gpu.py with the Mosaic GPU kernels compiled, forward
#    and the three gradients against the fp32 reference (causal, local-window and packed
#    cases, up to 4096 tokens), the CUDA lowering and the dispatch of kernels.ops.
# 2. attention: forward+backward TFLOP/s at 4096 and 8192 tokens, head_dim 64 and 128, bf16,
#    causal, for xla, pallas (and two more tilings of it) and cudnn; goal pallas >= 0.9x cudnn.
# 3. train_step: GPT-2 124M (bf16 compute, fp32 master weights) at the batch that fills the
#    GPU, random tokens: tokens/s and MFU of 989 TFLOP/s, with cudnn and pallas; goal 50%.
# 4. decode: 512 greedy new tokens at batch 1 and 64, ours against transformers' generate
#    with a static cache on the same weights (through our HF export).
# Each check runs in its own process with its share of the time (experiments/gpu_check.py),
# so one that fails or hangs leaves the next its turn. stdout holds one JSON line per check
# and a summary line; each check's log goes to runs/gpu_check/ (--workdir).
set -euo pipefail
cd "$(dirname "$0")/.."
exec timeout --kill-after=15 480 "${PYTHON:-python3}" -m experiments.gpu_check "$@"
