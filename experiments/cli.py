"""What every milestone binary shares: the --config, --workdir and --mode flags, the
multi-process flags, and a start-up that turns a bad --config.KEY into one clear line.

A binary defines its own flags, then calls `cli.run(main)`. Flags are defined here once, so
tests can import several binaries into one process and run them in-process (absl's
flagsaver) instead of paying a subprocess's imports for each bad-flag case.
"""

import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from lineage.train import distributed

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "configs/<name>.py:PRESET", lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory: checkpoints, metrics, summary, plots.")
flags.DEFINE_string("mode", "train", "What to do; each binary lists its modes.")
# Shared by the binaries that export Hugging Face directories (gpt1, gpt2): one definition, so
# that tests can import both into one process.
flags.DEFINE_string("export_dir", None, "Where --mode=export writes the Hugging Face directory.")
# Shared by gpt2 (--mode=sample: the prompt's text) and chatgpt (--mode=chat: lines typed in
# turn, messages and /commands, for a scripted conversation).
flags.DEFINE_string("prompt_file", None, "A UTF-8 file: the prompt of gpt2's --mode=sample, or "
                    "the lines typed in turn in chatgpt's --mode=chat.")
distributed.define_flags()

_CONFIG_FLAG = re.compile(r"^--?(config\.[\w.]+)=")
_SUGGESTION = re.compile(r'Did you mean "([\w.]+)" instead of "([\w.]+)"')


def config_error(argv, error):
  """One line for an unknown --config.KEY: the flag, the key and the closest valid one."""
  message = str(error).strip("'\"").replace("\\n", "\n")
  suggestion = _SUGGESTION.search(message)
  if suggestion is None:
    return None
  valid, wrong = suggestion.groups()
  for arg in argv[1:]:
    match = _CONFIG_FLAG.match(arg)
    if match and wrong in match.group(1).split("."):
      path = match.group(1)
      closest = path.replace(wrong, valid, 1)
      return (f"{arg.split('=', 1)[0]}: the config has no key {wrong!r} here; the closest "
              f"valid one is --{closest}")
  return f"unknown config key {wrong!r}; the closest valid one is {valid!r}"


def parse_flags(argv):
  """absl's parser, with an unknown config key reported in one line instead of a traceback."""
  try:
    return FLAGS(argv)
  except (AttributeError, KeyError) as e:
    line = config_error(argv, e)
    if line is None:
      raise
    print(f"error: {line}", file=sys.stderr)
    sys.exit(2)


def check_mode(modes, needs_workdir=()):
  """--mode must be one of `modes`; those in `needs_workdir` also need --workdir."""
  if FLAGS.mode not in modes:
    raise app.UsageError(f"--mode={FLAGS.mode} is not a mode of this binary; choose one of "
                         f"{', '.join(modes)}")
  if FLAGS.mode in needs_workdir and not FLAGS.workdir:
    raise app.UsageError(f"--mode={FLAGS.mode} needs --workdir=DIR")


def start(argv):
  """The common start of a binary's main: no stray arguments, quiet orbax, multi-process."""
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint phase at INFO
  distributed.initialize_from_flags()


def run(main):
  flags.mark_flags_as_required(["config"])
  sys.exit(app.run(main, flags_parser=parse_flags))
