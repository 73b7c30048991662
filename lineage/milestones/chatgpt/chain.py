"""--mode=chain: the GPT-3.5 lineage in small, from an empty directory to a chat transcript.

Stages, each a run directory under the workdir started from the previous one by init_from:
  pretrain   text plus code (pretrain.code_share), probed for multi-step reasoning and
             long-context retrieval
  sft        multi-turn dialogue SFT, the base model scored on the dialogues first
  rm         the reward model, from the SFT run
  ppo        PPO of the SFT policy against the reward model
  chat       a scripted conversation with the PPO model (transcript.txt), and one instruction
             through the base, SFT and PPO models side by side
  pretrain_no_code  (chain.compare_code) the same token budget without code, probed alike
A stage that finished leaves done.json; a rerun skips it and continues with the first stage
that did not, which resumes from its own latest checkpoint. report.md tabulates each stage's
metrics; summary.json holds them and the comparisons.
"""

import io
import json
import os

import jax

from lineage.data import chat
from lineage.milestones.chatgpt import dialogue, report, session, stages
from lineage.train import metrics as metrics_lib

DONE = "done.json"
# The tour's and the chain's scripted conversation: requests that build on each other.
SCRIPT = ("add milk", "add tea", "how many?", "/reset", "add jam", "remove jam")


def plan(cfg):
  """(stage name, function(cfg, stage dir, dirs of earlier stages) -> summary)."""
  steps = [("pretrain", lambda c, d, dirs: stages.run_pretrain(c, d)),
           ("sft", lambda c, d, dirs: stages.run_sft(_from(c, dirs["pretrain"]), d)),
           ("rm", lambda c, d, dirs: stages.run_rm(_from(c, dirs["sft"]), d)),
           ("ppo", lambda c, d, dirs: stages.run_ppo(_from(c, dirs["sft"], dirs["rm"]), d)),
           ("chat", lambda c, d, dirs: run_chat_stage(c, d, dirs))]
  if cfg.chain.compare_code:
    steps.append(("pretrain_no_code", lambda c, d, dirs: stages.run_pretrain(
        c, d, code_share=c.chain.no_code_share)))
  return steps


def _from(cfg, init_from, reward_from=""):
  out = cfg.copy_and_resolve_references()
  out.init_from = init_from
  if reward_from:
    out.ppo.reward_from = reward_from
  return out


def scripted(model, params, lines, system, max_new_tokens, temperature=0.0):
  """A conversation through the chat session, as its printed transcript."""
  out = io.StringIO()
  chat_session = session.Session(model, params, out, system=system, temperature=temperature,
                                 max_new_tokens=max_new_tokens)
  chat_session.run(io.StringIO("".join(line + "\n" for line in lines)), echo=True)
  return out.getvalue()


def side_by_side(cfg, model, params_by_name, instruction):
  """{model name: its answer to `instruction`}: the base model continues the text as it is
  (it has never seen the chat format); the others answer it as a user turn after the chat's
  system prompt."""
  tokenizer, c = model.tokenizer, cfg.chat
  answers = {}
  for name, params in params_by_name.items():
    if name == "base":
      ids = model.generator.generate(params, [tokenizer.encode(instruction)], c.max_new_tokens,
                                     stop_tokens=(tokenizer.eot_id,))[0]
      answers[name] = instruction + model.text(ids)
    else:
      system = [chat.Turn("system", c.system)] if c.system else []
      answers[name] = dialogue.replies(model, params, [system + [chat.Turn("user", instruction)]],
                                       c.max_new_tokens, 1)[0]
  return answers


def run_chat_stage(cfg, workdir, dirs, lines=SCRIPT):
  """The transcript of a scripted chat with the PPO model and the side-by-side answers."""
  os.makedirs(workdir, exist_ok=True)
  model = stages.chat_model(cfg)
  params = {"base": stages.restore_policy(cfg, dirs["pretrain"]),
            "sft": stages.restore_policy(cfg, dirs["sft"]),
            "ppo": stages.restore_policy(cfg, dirs["ppo"])}
  transcript = scripted(model, params["ppo"], lines, cfg.chat.system, cfg.chat.max_new_tokens)
  prompts = [cfg.chain.instruction, "add milk"]
  answers = {p: side_by_side(cfg, model, params, p) for p in prompts}
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "transcript.txt"), "w") as f:
      f.write(transcript)
  summary = {"transcript": transcript, "side_by_side": answers}
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f, indent=2)
  return summary


def run(cfg, workdir):
  """Runs (or resumes) the chain; returns the chain's summary."""
  os.makedirs(workdir, exist_ok=True)
  dirs, results = {}, {}
  for name, fn in plan(cfg):
    stage_dir = dirs[name] = os.path.join(workdir, name)
    done = os.path.join(stage_dir, DONE)
    if os.path.exists(done):
      with open(done) as f:
        results[name] = json.load(f)
      metrics_lib.console(f"chain: {name} finished earlier ({done}); skipping it")
      continue
    metrics_lib.console(f"chain: stage {name} in {stage_dir}")
    results[name] = fn(cfg, stage_dir, dirs)
    if jax.process_index() == 0:
      with open(done, "w") as f:
        json.dump(results[name], f, indent=2)
  summary = report.summarise(results)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f, indent=2)
    with open(os.path.join(workdir, "report.md"), "w") as f:
      f.write(report.markdown(summary, results))
  return summary
