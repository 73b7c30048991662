"""python_code: a corpus of Python source files for fine-tuning a language model on code, as
Codex was (Chen et al. 2021, section 3.1: files from GitHub, with auto-generated, overlong and
duplicate files filtered out).

Config `stdlib` (the default) reads the standard library of the interpreter running the build
(`sysconfig.get_paths()["stdlib"]`, without site-packages): real code, present on every
machine, no download. Config `manual` reads every *.py file under the manual directory
($LINEAGE_MANUAL_DIR/python_code, or --config.data.manual_dir).

The cleaning, in order, with each count logged:
1. files that are not UTF-8, empty, or larger than `max_bytes` are skipped;
2. exact duplicates (equal after dropping blank lines and trailing whitespace) keep one copy;
3. near duplicates (estimated Jaccard similarity of their 5-token shingles >= `near_threshold`,
   by MinHash with locality-sensitive banding) keep the first in path order;
4. contamination: any file containing a HumanEval prompt (whitespace-normalised) is removed,
   so that fine-tuning never sees the benchmark (its prompts come from the humaneval builder);
5. a held-out split: a seeded `heldout_fraction` of the files is validation, the rest train.
Records: {"text": source, "path": path relative to the root}; text_key "text" for the LM.
"""

import dataclasses
import hashlib
import os
import re
import sysconfig
import zlib

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from lineage.data.builders import base

SKIPPED_DIRS = {"site-packages", "dist-packages", "__pycache__", ".git"}
_TOKEN = re.compile(r"\w+|[^\w\s]")


@dataclasses.dataclass
class CodeConfig(tfds.core.BuilderConfig):
  max_bytes: int = 200_000
  near_threshold: float = 0.85
  heldout_fraction: float = 0.05
  seed: int = 0
  num_perm: int = 64
  bands: int = 16


def stdlib_root():
  return sysconfig.get_paths()["stdlib"]


def python_files(root, max_bytes):
  """(path relative to root, text) of the *.py files under root, in path order, and the count
  of files skipped (not UTF-8, empty or over max_bytes)."""
  found, skipped = [], 0
  for directory, dirs, files in os.walk(root):
    dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
    for name in sorted(f for f in files if f.endswith(".py")):
      path = os.path.join(directory, name)
      try:
        if os.path.getsize(path) > max_bytes:
          skipped += 1
          continue
        with open(path, encoding="utf-8") as f:
          text = f.read()
      except (UnicodeDecodeError, OSError):
        skipped += 1
        continue
      if not text.strip():
        skipped += 1
        continue
      found.append((os.path.relpath(path, root), text))
  found.sort()
  return found, skipped


def normalized(text):
  """The text without blank lines or trailing whitespace: exact duplicates compare equal."""
  return "\n".join(line.rstrip() for line in text.splitlines() if line.strip())


def exact_duplicates(texts):
  """Indices of texts whose normalised form an earlier text already has."""
  seen, duplicates = set(), []
  for i, text in enumerate(texts):
    digest = hashlib.sha256(normalized(text).encode()).digest()
    if digest in seen:
      duplicates.append(i)
    seen.add(digest)
  return duplicates


def _mix(x):
  """splitmix64's finaliser: a well-mixed 64-bit hash of each uint64 (arithmetic wraps)."""
  x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
  x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
  return x ^ (x >> np.uint64(31))


def minhash(text, num_perm=64, shingle=5, seed=0):
  """MinHash signature (uint64 [num_perm]) of the text's set of `shingle`-token shingles: for
  each of num_perm seeded hash functions, the smallest hash of a shingle."""
  tokens = _TOKEN.findall(text)
  grams = {" ".join(tokens[i:i + shingle]) for i in range(max(1, len(tokens) - shingle + 1))}
  hashes = np.array([zlib.crc32(g.encode()) for g in grams], np.uint64)
  seeds = _mix(np.arange(num_perm, dtype=np.uint64) + np.uint64(seed) * np.uint64(num_perm))
  return _mix(hashes[None, :] ^ seeds[:, None]).min(axis=1)


def near_duplicates(texts, threshold=0.85, num_perm=64, bands=16, seed=0):
  """Indices of texts whose estimated Jaccard similarity with an earlier kept text is at least
  `threshold`. Candidates share a band of their signatures; the estimate confirms them."""
  if num_perm % bands:
    raise ValueError(f"num_perm={num_perm} must be a multiple of bands={bands}")
  signatures = [minhash(t, num_perm, seed=seed) for t in texts]
  rows = num_perm // bands
  buckets, dropped = {}, []
  for i, sig in enumerate(signatures):
    keys = [(band, sig[band * rows:(band + 1) * rows].tobytes()) for band in range(bands)]
    candidates = {j for key in keys for j in buckets.get(key, ())}
    if any(np.mean(signatures[j] == sig) >= threshold for j in candidates):
      dropped.append(i)
      continue
    for key in keys:
      buckets.setdefault(key, []).append(i)
  return dropped


def _squeezed(text):
  return " ".join(text.split())


def contaminated(texts, prompts):
  """Indices of texts that contain one of the prompts (whitespace-normalised)."""
  needles = [_squeezed(p) for p in prompts if p.strip()]
  return [i for i, t in enumerate(texts) if any(n in _squeezed(t) for n in needles)]


def clean(files, prompts, cfg):
  """(train, validation, counts): `files` ([(path, text)]) after the module doc's steps 2-5."""
  counts = {"files": len(files)}
  for step, find in (("exact_duplicates", exact_duplicates),
                     ("near_duplicates", lambda t: near_duplicates(
                         t, cfg.near_threshold, cfg.num_perm, cfg.bands, cfg.seed)),
                     ("contaminated", lambda t: contaminated(t, prompts))):
    drop = set(find([text for _, text in files]))
    files = [f for i, f in enumerate(files) if i not in drop]
    counts[step] = len(drop)
  order = np.random.default_rng(cfg.seed).permutation(len(files))
  held = int(round(cfg.heldout_fraction * len(files)))
  held = min(max(held, 1 if len(files) > 1 else 0), len(files) - 1) if files else 0
  validation_ids = set(order[:held].tolist())
  train = [f for i, f in enumerate(files) if i not in validation_ids]
  validation = [f for i, f in enumerate(files) if i in validation_ids]
  counts.update(train=len(train), validation=len(validation))
  return train, validation, counts


def humaneval_prompts():
  """HumanEval's 164 prompts, through the humaneval builder ($LINEAGE_MANUAL_DIR/humaneval,
  else downloaded)."""
  from lineage.data import builders  # the registry imports this module
  try:
    source = builders.load("humaneval", "test")
  except FileNotFoundError as e:
    raise FileNotFoundError(
        "python_code removes files containing a HumanEval prompt and so needs HumanEval: set "
        f"LINEAGE_MANUAL_DIR to a directory holding humaneval/HumanEval.jsonl.gz ({e})") from e
  return [source[i]["prompt"].decode("utf-8") for i in range(len(source))]


class PythonCode(base.Builder):
  """Python source files, deduplicated and decontaminated against HumanEval."""

  name = "python_code"
  BUILDER_CONFIGS = [CodeConfig(name="stdlib", description="this interpreter's standard library"),
                     CodeConfig(name="manual", description="*.py files of the manual directory")]

  def _features(self):
    return tfds.features.FeaturesDict({"text": tfds.features.Text(),
                                       "path": tfds.features.Text()})

  def _split_generators(self, dl_manager):
    cfg = self.builder_config
    root = os.fspath(base.manual_dir(dl_manager)) if cfg.name == "manual" else stdlib_root()
    if not os.path.isdir(root):
      raise FileNotFoundError(f"python_code/{cfg.name}: no directory {root}; put the *.py files "
                              "there or set --config.data.manual_dir")
    files, skipped = python_files(root, cfg.max_bytes)
    if not files:
      raise ValueError(f"python_code/{cfg.name}: no readable *.py files under {root}")
    train, validation, counts = clean(files, humaneval_prompts(), cfg)
    logging.warning("python_code/%s from %s: %d files read (%d skipped: not UTF-8, empty or over "
                    "%d bytes); removed %d exact and %d near duplicates and %d containing a "
                    "HumanEval prompt; %d train, %d validation", cfg.name, root, counts["files"],
                    skipped, cfg.max_bytes, counts["exact_duplicates"],
                    counts["near_duplicates"], counts["contaminated"], counts["train"],
                    counts["validation"])
    return {"train": self._generate_examples(train),
            "validation": self._generate_examples(validation)}

  def _generate_examples(self, files):
    for key, (path, text) in enumerate(files):
      yield key, {"text": text, "path": path}
