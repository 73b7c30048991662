"""PyTorch baselines for the benchmarks: a transformers GPT2LMHeadModel holding the same weights
as ours (through lineage.interop.hf_gpt2.export_hf), trained with torch's AdamW or decoding with
transformers' generate. A ratio to one of these, measured in the same run, is the only speed
figure that survives a shared machine whose absolute speed moves by a third within an hour.

torch and transformers are test-only dependencies: they are imported when a baseline is built.
"""

import tempfile

import numpy as np

from lineage.interop import hf_gpt2


def hf_model(model_cfg, params, eot_id=None):
  """transformers' GPT2LMHeadModel with our parameters (fp32), and our dropout rates."""
  import transformers  # pylint: disable=import-outside-toplevel
  transformers.utils.logging.disable_progress_bar()
  with tempfile.TemporaryDirectory() as hf_dir:
    hf_gpt2.export_hf(model_cfg, params, hf_dir, eot_id=eot_id)
    return transformers.GPT2LMHeadModel.from_pretrained(hf_dir)


def train_step(model, train_cfg, compiled):
  """step(batch) -> loss: forward, mean cross-entropy, backward, global-norm clipping, AdamW.

  The optimizer mirrors lineage.train.optim's defaults: AdamW with decay on matrices only,
  clipping at train.grad_clip, at a constant rate (the schedule costs nothing either side).
  `compiled` runs the forward and loss under torch.compile, as nanoGPT does; its backward is
  compiled with it (AOTAutograd). The optimizer is torch's fused AdamW in both modes, its
  fastest on CPU (the default there is a loop over the parameters).
  """
  import torch  # pylint: disable=import-outside-toplevel
  model.train()
  params = [p for p in model.parameters() if p.requires_grad]
  groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": train_cfg.weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
  optimizer = torch.optim.AdamW(groups, lr=train_cfg.lr, betas=(train_cfg.b1, train_cfg.b2),
                                eps=train_cfg.eps, fused=True)

  def loss_fn(inputs, targets):
    logits = model(inputs).logits
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
  loss_fn = torch.compile(loss_fn) if compiled else loss_fn

  def step(batch):
    inputs, targets = (torch.from_numpy(np.asarray(batch[k], np.int64))
                       for k in ("inputs", "targets"))
    loss = loss_fn(inputs, targets)
    loss.backward()
    if train_cfg.grad_clip:
      torch.nn.utils.clip_grad_norm_(params, train_cfg.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()
  return step


def greedy_generate(model, prompts, new_tokens):
  """generate() -> new tokens [batch, new_tokens]: greedy, with the KV cache, no stop token.

  Prompts share one length, so there is no padding and no attention mask to build.
  """
  import torch  # pylint: disable=import-outside-toplevel
  model.eval()
  model.generation_config.eos_token_id = None  # never stop early: a fixed amount of work
  inputs = torch.tensor(prompts, dtype=torch.long)

  def generate():
    with torch.no_grad():
      out = model.generate(inputs, attention_mask=torch.ones_like(inputs), do_sample=False,
                           max_new_tokens=new_tokens, use_cache=True, pad_token_id=0)
    return out[:, inputs.shape[1]:].numpy()
  return generate


def torch_threads():
  import torch  # pylint: disable=import-outside-toplevel
  return torch.get_num_threads()
