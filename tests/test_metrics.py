"""MetricWriter: metrics.jsonl across resumes, and TensorBoard events only when there are some."""

import os

import numpy as np

from lineage.train import metrics


def _event_files(workdir):
  tb = os.path.join(workdir, "tb")
  return sorted(os.listdir(tb)) if os.path.isdir(tb) else []


def test_scalars_go_to_jsonl_and_tensorboard(tmp_path):
  writer = metrics.MetricWriter(str(tmp_path))
  writer.write(1, {"loss": np.float32(2.5), "note": "warm-up"})
  writer.write(2, {"loss": 2.0})
  writer.close()
  assert metrics.read_metrics(str(tmp_path)) == [
      {"step": 1, "loss": 2.5, "note": "warm-up"}, {"step": 2, "loss": 2.0}]
  [events] = _event_files(str(tmp_path))
  assert b"loss" in (tmp_path / "tb" / events).read_bytes()


def test_a_rerun_that_logs_nothing_leaves_no_empty_event_file(tmp_path):
  writer = metrics.MetricWriter(str(tmp_path))
  writer.write(3, {"loss": 1.0})
  writer.close()
  for _ in range(2):  # A finished run started again: it resumes at the end and logs nothing.
    metrics.MetricWriter(str(tmp_path), resume_step=3).close()
  [events] = _event_files(str(tmp_path))
  assert b"loss" in (tmp_path / "tb" / events).read_bytes()


def test_a_writer_with_only_text_opens_no_event_file(tmp_path):
  writer = metrics.MetricWriter(str(tmp_path))
  writer.write(0, {"mode": "eval"})
  writer.close()
  assert _event_files(str(tmp_path)) == []
  assert metrics.read_metrics(str(tmp_path)) == [{"step": 0, "mode": "eval"}]


def test_resume_drops_the_steps_it_logs_again(tmp_path):
  writer = metrics.MetricWriter(str(tmp_path))
  for step in (1, 2, 3, 4):
    writer.write(step, {"loss": float(step)})
  writer.close()
  writer = metrics.MetricWriter(str(tmp_path), resume_step=2)
  writer.write(3, {"loss": 30.0})
  writer.close()
  assert [(r["step"], r["loss"]) for r in metrics.read_metrics(str(tmp_path))] == [
      (1, 1.0), (2, 2.0), (3, 30.0)]


def test_a_disabled_writer_writes_nothing(tmp_path):
  writer = metrics.MetricWriter(str(tmp_path), enabled=False)
  writer.write(1, {"loss": 1.0})
  writer.close()
  assert os.listdir(tmp_path) == []
