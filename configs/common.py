"""The keys every experiment shares; each configs/<name>.py starts from `get_config()`.

The loop reads these keys directly, with no fallback defaults, so a key missing from an
experiment is an error rather than a silent choice. A milestone adds its own sections
(model, data, sample, probe, ...) and sets the values its presets need.
"""

import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.preset = ""
  # DIR, DIR@STEP (another run's checkpoint) or a source the milestone imports (hf:PATH).
  c.init_from = ""
  c.peak_flops = 0.0  # 0: known accelerator table, or a measured matmul rate on CPU
  # schedule: cosine | linear | noam | constant (lineage.train.optim.make_schedule).
  # eval_every: held-out loss and the task's evaluation hook; eval_batches: batches per pass.
  # mu_dtype: "" keeps Adam's first moment in float32, "bfloat16" halves it.
  c.train = ml_collections.ConfigDict(dict(
      steps=1000, batch_size=8, micro_batches=1, lr=1e-3, warmup_steps=0, schedule="cosine",
      min_lr_ratio=0.0, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, grad_clip=1.0,
      log_every=100, eval_every=1000, eval_batches=8, checkpoint_every=1000,
      keep_checkpoints=3, seed=0, mu_dtype=""))
  # Devices along each mesh axis; -1 takes the devices the others leave.
  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
  # nan_at_step: poison that step's loss with NaN, to exercise the non-finite guard.
  c.debug = ml_collections.ConfigDict(dict(nan_at_step=-1))
  return c


def lm_data():
  """The data section of a language model's pre-training (lineage.milestones.gpt1.pretrain).

  name: a TFDS dataset of lineage.data.builders (TEXT_DATASETS hold their documents under
  text_key "text"; others name their field, e.g. sst_binary with text_key=sentence), or
  text_file (+ path). tokenizer: byte | gpt2 | gpt1 (files in vocab_dir or
  $LINEAGE_MANUAL_DIR/gpt2_bpe, gpt1_bpe) | bpe (trained on the training split with
  bpe_vocab_size tokens, kept in the workdir).
  """
  return ml_collections.ConfigDict(dict(
      name="synthetic_text", text_key="text", tokenizer="byte", seq_len=128, train_split="train",
      eval_split="validation", worker_count=0, data_dir="", manual_dir="", vocab_dir="",
      bpe_vocab_size=8192, num_docs=6000, seed=0, path="", eval_fraction=0.05))
