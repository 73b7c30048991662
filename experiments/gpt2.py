"""GPT-2: train, evaluate, sample or export a decoder LM (lineage.milestones.gpt2).

  python -m experiments.gpt2 --config=configs/gpt2.py:tiny --workdir=runs/gpt2_tiny \
      [--mode=train|eval|zero_shot|sample|export] [--config.train.steps=...]
Zero-shot, sampling and export read --config.init_from (DIR[@STEP] or hf:PATH) if given,
else the run in --workdir; zero_shot writes --workdir/zero_shot/{summary.json,report.md}.
See configs/gpt2.py for the presets and what to expect.
"""

from absl import flags

from configs import gpt2 as gpt2_config
from experiments import cli
from lineage.milestones import gpt2

FLAGS = flags.FLAGS
flags.DEFINE_string("prompt", None, "Prompt for --mode=sample (overrides config.sample.prompt).")
flags.DEFINE_enum("sample_preset", "", ["", "tldr"],
                  "tldr: GPT-2's summarization protocol (config.sample.tldr) on the prompt.")
flags.DEFINE_float("temperature", None, "Overrides config.sample.temperature (0: greedy).")
flags.DEFINE_integer("top_k", None, "Overrides config.sample.top_k (0: off).")
flags.DEFINE_float("top_p", None, "Overrides config.sample.top_p (1.0: off).")
flags.DEFINE_integer("max_new_tokens", None, "Overrides config.sample.max_new_tokens.")
flags.DEFINE_integer("num_samples", None, "Overrides config.sample.num_samples.")
flags.DEFINE_integer("seed", None, "Overrides config.sample.seed.")
flags.DEFINE_string("model_name", None,
                    "Row of this model in the zero-shot report (default: the preset name).")


def main(argv):
  cli.start(argv)
  cli.check_mode(gpt2.MODES, [m for m, needs in gpt2.MODES.items() if needs])
  cfg = FLAGS.config
  gpt2_config.resolve_dtype(cfg)
  options = gpt2.SampleOptions(
      prompt=FLAGS.prompt, prompt_file=FLAGS.prompt_file, preset=FLAGS.sample_preset,
      temperature=FLAGS.temperature, top_k=FLAGS.top_k, top_p=FLAGS.top_p,
      max_new_tokens=FLAGS.max_new_tokens, num_samples=FLAGS.num_samples, seed=FLAGS.seed)
  gpt2.run(FLAGS.mode, cfg, FLAGS.workdir, options, model_name=FLAGS.model_name,
           export_dir=FLAGS.export_dir)


if __name__ == "__main__":
  cli.run(main)
