"""The code corpus builder: exact and near duplicates removed, HumanEval-contaminated files
removed and counted, a held-out split; the TFDS builder end to end on a fixture directory."""

import gzip
import json

import pytest

from lineage.data import builders
from lineage.data.builders import python_code as pc

LONG = "\n".join(f"def function_{i}(x):\n    return x * {i} + {i * 7} - len(str(x))\n"
                 for i in range(40))
PROMPT = 'def below_zero(operations):\n    """ Detect if the balance falls below zero. """\n'


def _tree(root):
  files = {
      "a.py": LONG,
      "pkg/a_copy.py": "\n\n" + LONG.replace("\n", "   \n") + "\n\n",  # exact, after normalising
      "pkg/a_near.py": LONG.replace("function_39", "renamed_39"),  # one name of 40 differs
      "pkg/other.py": "import os\n\nclass Thing:\n    pass\n",
      "leak.py": "import math\n\n" + PROMPT.replace("    ", "\t") + "    return True\n",
      "empty.py": "   \n",
      "latin1.py": "x = 'caf\xe9'\n",
      "site-packages/vendored.py": "x = 1\n",
      "notes.txt": "not python",
  }
  for name, text in files.items():
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("latin-1" if name == "latin1.py" else "utf-8"))
  for i in range(6):
    (root / f"mod{i}.py").write_text(f"VALUE_{i} = {i}\n" * (i + 1) + f"def f{i}(): pass\n")


def test_reading_deduplicating_and_decontaminating(tmp_path):
  _tree(tmp_path)
  files, skipped = pc.python_files(tmp_path, max_bytes=100_000)
  paths = [p for p, _ in files]
  assert skipped == 2  # empty.py and latin1.py; site-packages and notes.txt are never read
  assert "site-packages/vendored.py" not in paths and paths == sorted(paths)
  texts = [t for _, t in files]
  assert [paths[i] for i in pc.exact_duplicates(texts)] == ["pkg/a_copy.py"]
  assert [paths[i] for i in pc.near_duplicates(texts, threshold=0.85)] == [
      "pkg/a_copy.py", "pkg/a_near.py"]
  assert [paths[i] for i in pc.contaminated(texts, [PROMPT])] == ["leak.py"]
  cfg = pc.CodeConfig(name="t", heldout_fraction=0.25)
  train, validation, counts = pc.clean(files, [PROMPT], cfg)
  assert counts == {"files": 11, "exact_duplicates": 1, "near_duplicates": 1, "contaminated": 1,
                    "train": 6, "validation": 2}
  kept = {p for p, _ in train + validation}
  assert kept == {"a.py", "pkg/other.py"} | {f"mod{i}.py" for i in range(6)}
  assert not {p for p, _ in train} & {p for p, _ in validation}
  assert pc.clean(files, [PROMPT], cfg)[1] == validation  # the split is seeded


def test_minhash_estimates_jaccard():
  a = " ".join(f"w{i}" for i in range(400))
  b = " ".join(f"w{i}" for i in range(200, 600))  # shingles: about 196 shared of 600
  same = (pc.minhash(a, 256) == pc.minhash(a, 256)).mean()
  estimate = (pc.minhash(a, 256) == pc.minhash(b, 256)).mean()
  assert same == 1.0 and 0.2 < estimate < 0.45
  with pytest.raises(ValueError, match="multiple of bands"):
    pc.near_duplicates(["x"], num_perm=10, bands=3)


def test_builder_end_to_end_logs_counts(tmp_path, monkeypatch):
  manual = tmp_path / "manual"
  _tree(manual / "python_code")
  (manual / "humaneval").mkdir()
  problem = {"task_id": "HumanEval/3", "prompt": PROMPT, "canonical_solution": "  pass\n",
             "test": "def check(c):\n  pass\n", "entry_point": "below_zero"}
  with gzip.open(manual / "humaneval" / "HumanEval.jsonl.gz", "wt") as f:
    f.write(json.dumps(problem) + "\n")
  monkeypatch.setenv("LINEAGE_MANUAL_DIR", str(manual))
  monkeypatch.setenv("LINEAGE_DATA_DIR", str(tmp_path / "tfds"))
  logged = []
  monkeypatch.setattr(pc.logging, "warning", lambda fmt, *args: logged.append(fmt % args))
  train = builders.load("python_code/manual", "train")
  validation = builders.load("python_code/manual", "validation")
  assert len(train) + len(validation) == 8 and len(validation) == 1
  texts = [train[i]["text"].decode() for i in range(len(train))]
  assert all("below_zero" not in t for t in texts)
  assert any("removed 1 exact and 1 near duplicates and 1 containing a HumanEval prompt" in line
             for line in logged), logged


def test_missing_humaneval_is_a_clear_error(tmp_path, monkeypatch):
  monkeypatch.setenv("LINEAGE_MANUAL_DIR", str(tmp_path / "nowhere"))
  monkeypatch.setenv("LINEAGE_DATA_DIR", str(tmp_path / "tfds"))
  monkeypatch.setattr(builders, "load", lambda *a, **k: (_ for _ in ()).throw(
      FileNotFoundError("HumanEval.jsonl.gz not found")))
  with pytest.raises(FileNotFoundError, match="needs HumanEval: set LINEAGE_MANUAL_DIR"):
    pc.humaneval_prompts()


@pytest.mark.slow
def test_default_is_the_standard_library(shared_data, tmp_path, monkeypatch):
  monkeypatch.setenv("LINEAGE_MANUAL_DIR", str(shared_data))
  monkeypatch.setenv("LINEAGE_DATA_DIR", str(tmp_path / "tfds"))
  train = builders.load("python_code", "train")
  validation = builders.load("python_code", "validation")
  assert len(train) > 1000 and len(validation) > 50
  paths = {train[i]["path"].decode() for i in range(len(train))}
  assert "json/decoder.py" in paths or "json/decoder.py" in {
      validation[i]["path"].decode() for i in range(len(validation))}
