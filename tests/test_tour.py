"""The tour runner: sections of the milestones present in lineage order, one report with each
section's time, results already in the workdir reused, --only and --force."""

import importlib
import json
import pathlib

import pytest
from absl.testing import flagsaver

from experiments import tour
from lineage import milestones


def _packages_on_disk():
  """Every milestone package in lineage/milestones/, however it is named."""
  root = pathlib.Path(milestones.__file__).parent
  return {p.parent.name for p in root.glob("*/__init__.py")}


def test_sections_are_the_milestones_present_in_lineage_order():
  names = [s.name for s in milestones.tour_sections()]
  on_disk = _packages_on_disk()
  assert on_disk <= set(milestones.LINEAGE), "a milestone package missing from LINEAGE"
  assert names == milestones.present() == [m for m in milestones.LINEAGE if m in on_disk]
  assert names[:4] == ["sentiment_neuron", "transformer", "gpt1", "gpt2"]
  assert [s.name for s in tour.SECTIONS] == names
  for section in tour.SECTIONS:  # each milestone's own config, at a preset that exists
    path, preset = section.config.split(":")
    assert path == f"configs/{section.name}.py"
    importlib.import_module(f"configs.{section.name}").get_config(preset)


@pytest.fixture
def fake_sections(monkeypatch):
  """Two cheap sections in place of the real ones; `calls` records which ran."""
  calls = []

  def section(name):
    def run(cfg, workdir):
      calls.append(name)
      return f"## {name} (ran {len(calls)})\n"
    return milestones.TourSection(name, f"configs/{name}.py:tiny", run)
  monkeypatch.setattr(tour, "SECTIONS", [section("sentiment_neuron"), section("gpt2")])
  return calls


def _tour(workdir, *args):
  with flagsaver.flagsaver():
    tour.FLAGS(["tour", f"--workdir={workdir}", *args])
    tour.main(["tour"])
  return (workdir / "report.md").read_text()


def test_report_times_reuse_only_and_force(tmp_path, fake_sections, capsys):
  report = _tour(tmp_path)
  assert fake_sections == ["sentiment_neuron", "gpt2"]
  assert report.index("## sentiment_neuron") < report.index("## gpt2")
  assert "| sentiment_neuron | 0.0 min |" in report and "| gpt2 | 0.0 min |" in report
  saved = json.loads((tmp_path / "gpt2" / tour.RESULT).read_text())
  assert saved["markdown"] == "## gpt2 (ran 2)\n" and saved["seconds"] >= 0

  report = _tour(tmp_path)  # everything is done: nothing reruns, the report is the same
  assert fake_sections == ["sentiment_neuron", "gpt2"]
  assert "(from an earlier run)" in report and "## gpt2 (ran 2)" in report
  assert "gpt2 already done" in capsys.readouterr().out

  report = _tour(tmp_path, "--only=gpt2", "--force")
  assert fake_sections == ["sentiment_neuron", "gpt2", "gpt2"]
  assert "## gpt2 (ran 3)" in report and "sentiment_neuron" not in report


def test_unknown_section_names_the_choices(tmp_path, fake_sections):
  with pytest.raises(Exception, match="no tour section gpt4; the sections are "
                                      "sentiment_neuron, gpt2"):
    _tour(tmp_path, "--only=gpt4")
  assert fake_sections == []
