"""One package per milestone, each holding what only it needs: its task builder, its modes,
its report and its tour section. Imports follow history: a milestone may import an earlier
one (LINEAGE order), never a later one; what two share and neither owns lives in the core."""

import dataclasses
import importlib
import importlib.util
from typing import Callable

# Every milestone of the lineage, in historical order; those not built yet have no package.
LINEAGE = ("sentiment_neuron", "transformer", "gpt1", "gpt2", "gpt3", "codex", "clip", "dalle",
           "instructgpt", "chatgpt")


@dataclasses.dataclass(frozen=True)
class TourSection:
  """A milestone's part of `make tour`.

  config: the config it runs with by default ("configs/<name>.py:tiny").
  run(cfg, workdir) -> markdown: trains and measures what the section shows, under
    workdir/<name>/ (its plots may go to workdir itself, which report.md sits in).
  """
  name: str
  config: str
  run: Callable


def present():
  """The milestones built so far, in lineage order."""
  return [name for name in LINEAGE
          if importlib.util.find_spec(f"lineage.milestones.{name}") is not None]


def tour_sections():
  """The tour section of every milestone present, in lineage order."""
  return [importlib.import_module(f"lineage.milestones.{name}.tour").SECTION
          for name in present()]
