"""Few-shot scoring speed (examples/s): the harness with shared-prefix KV reuse, the same harness
scoring every prompt whole, and lm-evaluation-harness scoring the same weights, exported to a
Hugging Face GPT-2, on the same task and K, all in alternating rounds of one run.

lm-evaluation-harness runs its own GLUE task YAML (sst2 or rte: the prompt format our adapters
copy) pointed at local JSONL copies of the builder's splits, offline, with its `hf` model on
the CPU; torch runs with its default threads and with one, and the ratio names the faster.
Both sides score `examples` validation examples at K demonstrations from the train split; the
demonstrations differ (each samples its own), the formats and separators do not, so at K = 0
the prompts, and so the accuracies, are the same. torch, transformers and lm_eval are
test-only dependencies, imported only when this runs.
"""

import json
import os
import pathlib
import statistics
import tempfile

import jax
import jax.numpy as jnp

from lineage.bench import timing
from lineage.data import builders, tokenizers
from lineage.eval import few_shot, few_shot_tasks
from lineage.interop import hf_gpt2
from lineage.models import config as model_config_lib
from lineage.models import gpt

# Tasks lm-evaluation-harness has in the same format: its YAML under tasks/, and the fields of
# our builder's records that its template reads.
LM_EVAL_TASKS = {"sst2": ("glue/sst2/default.yaml", "sst_binary", ("sentence", "label")),
                 "rte": ("glue/rte/default.yaml", "rte", ("sentence1", "sentence2", "label"))}


def _lm_eval_task(name, manual_root, directory):
  """A local copy of lm-evaluation-harness's task `name` reading JSONL files written from our
  builder's train and validation splits; returns its task name."""
  from lm_eval import tasks  # pylint: disable=import-outside-toplevel
  yaml, dataset, fields = LM_EVAL_TASKS[name]
  files = {}
  for split in ("train", "validation"):
    manual_dir = os.path.join(manual_root, dataset) if manual_root else None
    source = builders.load(dataset, split, manual_dir=manual_dir)
    path = pathlib.Path(directory) / f"{name}_{split}.jsonl"
    with open(path, "w") as f:
      for i in range(len(source)):
        record = source[i]
        f.write(json.dumps({k: record[k].decode() if isinstance(record[k], bytes)
                            else int(record[k]) for k in fields}) + "\n")
    files[split] = str(path)
  upstream = pathlib.Path(tasks.__file__).parent / yaml
  (pathlib.Path(directory) / f"{name}_local.yaml").write_text(
      f"include: {upstream}\ntask: {name}_local\ndataset_path: json\ndataset_name: null\n"
      f"dataset_kwargs:\n  data_files:\n    train: {files['train']}\n"
      f"    validation: {files['validation']}\n")
  return f"{name}_local"


def _lm_eval_runner(model_cfg, params, tokenizer, vocab_dir, task_name, manual_root, k,
                    examples, batch, seed, directory):
  """fn(threads) -> lm-evaluation-harness's accuracy, its model and task built once."""
  import lm_eval  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel
  from lm_eval import evaluator, tasks  # pylint: disable=import-outside-toplevel
  from lm_eval.models import huggingface  # pylint: disable=import-outside-toplevel
  del lm_eval
  for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(name, "1")  # no network here
  model_dir = pathlib.Path(directory) / "model"
  hf_gpt2.export_hf(model_cfg, params, model_dir, eot_id=tokenizer.eot_id)
  encoder, merges = tokenizers.find_gpt2_bpe(vocab_dir)
  transformers.GPT2TokenizerFast(vocab=str(encoder), merges=str(merges)).save_pretrained(model_dir)
  lm = huggingface.HFLM(pretrained=str(model_dir), device="cpu", dtype="float32",
                        batch_size=batch)
  local = _lm_eval_task(task_name, manual_root, directory)
  loaded = tasks.TaskManager(include_path=str(directory)).load([local])
  for task in loaded["tasks"].values():
    task.set_config(key="num_fewshot", value=k)
    task.set_fewshot_seed(seed=seed)
  default_threads = torch.get_num_threads()

  def run(threads):
    torch.set_num_threads(threads or default_threads)
    results = evaluator.evaluate(lm, loaded, limit=examples, bootstrap_iters=0,
                                 log_samples=False, verbosity="ERROR")
    return results["results"][local]["acc,none"]
  return run, default_threads


def bench_few_shot(cfg, task_name, k, examples, batch, pairs, warmup, seed=0):
  """Examples/s of K-shot scoring: ours with prefix reuse, ours scoring whole prompts, and
  lm-evaluation-harness (where it has the task); the ratios are medians over rounds."""
  model_cfg = model_config_lib.from_config(gpt.GPTConfig, cfg.model)
  vocab_dir = cfg.data.vocab_dir or None
  tokenizer = tokenizers.make_tokenizer("gpt2", vocab_dir=vocab_dir)
  manual_root = cfg.zero_shot.manual_dir or os.environ.get(tokenizers.MANUAL_DIR_ENV) or None
  init = lambda rng: gpt.GPT(model_cfg).init(rng, jnp.zeros((1, 8), jnp.int32))["params"]
  params = jax.jit(init)(jax.random.PRNGKey(seed))
  task = few_shot_tasks.load(task_name, manual_root=manual_root)
  model = few_shot.Model(model_cfg, params, tokenizer, batch_size=batch)
  accuracy = {}

  def ours(reuse):
    def run(_):
      result = few_shot.evaluate(model, task, (k,), seed=seed, rules=("sum",),
                                 max_examples=examples, reuse_prefix=reuse, eot_prefix=False)
      row = result["by_k"][k]
      accuracy["ours"] = row.get("acc_sum", row.get("acc", row.get("f1")))
      accuracy["prompt_tokens"] = row["mean_prompt_tokens"]
      accuracy["dropped"] = row["dropped_demonstrations"]
    return run
  candidates = {"ours": ours(True), "whole_prompts": ours(False)}
  with tempfile.TemporaryDirectory() as directory:
    threads = None
    if task_name in LM_EVAL_TASKS:
      run_lm_eval, threads = _lm_eval_runner(model_cfg, params, tokenizer, vocab_dir, task_name,
                                             manual_root, k, examples, batch, seed, directory)
      def lm_eval_with(n):
        def run(_):
          accuracy["lm_eval"] = run_lm_eval(n)
        return run
      candidates["lm_eval"] = lm_eval_with(None)
      if threads != 1:
        candidates["lm_eval_1_thread"] = lm_eval_with(1)
    rounds = timing.alternating(candidates, pairs, 1, warmup)
  # tokens_per_sec: our prompts' tokens per second, the same count for every side, for the
  # bench page's table; examples/s is the figure to quote.
  tokens = examples * accuracy["prompt_tokens"]
  baselines = {}
  for name, seconds in rounds.items():
    ratios = [theirs / mine for theirs, mine in zip(seconds, rounds["ours"])]
    baselines[name] = {"examples_per_sec": examples / statistics.median(seconds),
                       "tokens_per_sec": tokens / statistics.median(seconds),
                       "seconds_median": statistics.median(seconds),
                       "ratio": statistics.median(ratios), "pair_ratios": ratios}
  lm_eval_names = [n for n in baselines if n.startswith("lm_eval")]
  versus = min(lm_eval_names, key=lambda n: baselines[n]["seconds_median"], default=None)
  return {"what": "few_shot", "task": task_name, "k": k, "examples": examples, "batch": batch,
          "examples_per_sec": baselines["ours"]["examples_per_sec"],
          "tokens_per_sec": baselines["ours"]["tokens_per_sec"],
          "reuse_speedup": baselines["whole_prompts"]["ratio"],
          "baseline": versus or "whole_prompts",
          "ratio": baselines[versus or "whole_prompts"]["ratio"], "pairs": pairs,
          "accuracy": accuracy.get("ours"), "lm_eval_accuracy": accuracy.get("lm_eval"),
          "mean_prompt_tokens": accuracy.get("prompt_tokens"),
          "dropped_demonstrations": accuracy.get("dropped"), "torch_threads": threads,
          "backend": jax.default_backend(),
          "baselines": {n: b for n, b in baselines.items() if n != "ours"}}
