"""The tour: every milestone present, at tiny scale on embedded data, in one report.

  python -m experiments.tour --workdir=runs/tour      (what `make tour` runs; the default)
  python -m experiments.tour --only=gpt2 --force      (rerun one section)

Each milestone package contributes a section (lineage.milestones.<name>.tour.SECTION); they
run in lineage order, each under its own subdirectory, and report.md gathers their markdown
with the time each took. A section whose results are already in the workdir is not rerun
(--force reruns it). `--<name>_config.KEY=VALUE` overrides a section's config.
"""

import json
import os
import shutil
import sys
import time

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import cli  # noqa: F401  (--workdir, shared with the binaries)
from lineage import milestones
from lineage.train import metrics as metrics_lib

FLAGS = flags.FLAGS
SECTIONS = milestones.tour_sections()
DEFAULT_WORKDIR = "runs/tour"
flags.DEFINE_list("only", [], "Sections to run, e.g. gpt2,sentiment_neuron (default: all).")
flags.DEFINE_bool("force", False, "Rerun sections whose results are already in the workdir.")
for _section in SECTIONS:
  config_flags.DEFINE_config_file(f"{_section.name}_config", _section.config,
                                  f"Config of the {_section.name} section.")

RESULT = "section.json"  # {"markdown": ..., "seconds": ...}, written when a section finishes


def run_section(section, workdir, force):
  """(markdown, seconds, reused): the section's result, from the workdir unless forced."""
  section_dir = os.path.join(workdir, section.name)
  saved = os.path.join(section_dir, RESULT)
  if os.path.exists(saved) and not force:
    with open(saved) as f:
      result = json.load(f)
    return result["markdown"], result["seconds"], True
  shutil.rmtree(section_dir, ignore_errors=True)  # a demonstration from scratch, not a resume
  os.makedirs(section_dir)
  start = time.perf_counter()
  markdown = section.run(getattr(FLAGS, f"{section.name}_config"), workdir)
  seconds = time.perf_counter() - start
  with open(saved, "w") as f:
    json.dump({"markdown": markdown, "seconds": seconds}, f)
  return markdown, seconds, False


def report(results):
  """report.md: a table of the sections and their times, then each section."""
  earlier = lambda reused: " (from an earlier run)" if reused else ""
  rows = "\n".join(f"| {name} | {seconds / 60:.1f} min{earlier(reused)} |"
                   for name, _, seconds, reused in results)
  return ("# The lineage tour\n\nEvery milestone present, at tiny scale on embedded data, "
          "trained from scratch on this machine.\n\n| section | time |\n|---|---|\n" + rows +
          "\n\n" + "\n".join(markdown for _, markdown, _, _ in results))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)
  names = [s.name for s in SECTIONS]
  unknown = sorted(set(FLAGS.only) - set(names))
  if unknown:
    raise app.UsageError(f"--only: no tour section {', '.join(unknown)}; the sections are "
                         f"{', '.join(names)}")
  workdir = FLAGS.workdir or DEFAULT_WORKDIR
  os.makedirs(workdir, exist_ok=True)
  results = []
  for section in SECTIONS:
    if FLAGS.only and section.name not in FLAGS.only:
      continue
    markdown, seconds, reused = run_section(section, workdir, FLAGS.force)
    metrics_lib.console(f"tour: {section.name} " + (
        f"already done in {workdir}/{section.name} ({seconds / 60:.1f} min then; "
        "--force reruns it)" if reused else f"took {seconds / 60:.1f} min"))
    results.append((section.name, markdown, seconds, reused))
  path = os.path.join(workdir, "report.md")
  with open(path, "w") as f:
    f.write(report(results))
  print(f"wrote {path}")


if __name__ == "__main__":
  sys.exit(app.run(main))
