"""Running a milestone binary in this process, as its command line would: absl's flagsaver
restores every flag afterwards, so one test process can run many commands without paying a
subprocess's imports for each."""

import importlib
import sys
from unittest import mock

from absl.testing import flagsaver

from experiments import cli


def run_in_process(binary, *args):
  """experiments.<binary>'s main on `args`; errors propagate as exceptions (SystemExit(2) for
  a flag the parser refuses, after its one-line message on stderr)."""
  module = importlib.import_module(f"experiments.{binary}")
  argv = [binary, *args]
  # ml_collections reads --config.KEY overrides from sys.argv, not from the argv parsed.
  with flagsaver.flagsaver(), mock.patch.object(sys, "argv", argv):
    cli.parse_flags(argv)
    return module.main([binary])
