"""The datasets as TFDS builders writing ArrayRecord, and `load`, which prepares and opens one.

`load("ptb", "test")` returns a random-access source (len, integer indexing, dicts
whose Text fields are bytes) in the files' order. Configs go after a slash:
`load("hh_rlhf/helpful-base", "test")`, `load("cbt/NE", "validation")`.
"""

import os
import pathlib

import tensorflow_datasets as tfds

from lineage.data.builders import (cbt, cifar10, digits, enwik8, hh_rlhf, humaneval, imagenet,
                                   lambada, lm1b, multi30k, openwebtext, ptb, python_code, rte,
                                   self_instruct, shapes, sst_binary, story_cloze, stsb,
                                   synthetic_reviews, synthetic_text, text8, tiny_shakespeare,
                                   wikitext2, wikitext103, wmt14)

BUILDERS = {cls.name: cls for cls in (
    tiny_shakespeare.TinyShakespeare, ptb.Ptb, wikitext2.Wikitext2, wikitext103.Wikitext103,
    lambada.Lambada, cbt.Cbt, enwik8.Enwik8, text8.Text8, lm1b.Lm1b, openwebtext.Openwebtext,
    synthetic_text.SyntheticText, sst_binary.SstBinary, story_cloze.StoryCloze, rte.Rte,
    multi30k.Multi30k, humaneval.Humaneval, self_instruct.SelfInstruct, hh_rlhf.HhRlhf,
    synthetic_reviews.SyntheticReviews, stsb.Stsb, wmt14.Wmt14, shapes.Shapes, digits.Digits,
    cifar10.Cifar10, imagenet.Imagenet, python_code.PythonCode)}

# Language-model corpora: records hold exactly one feature, "text".
TEXT_DATASETS = ("tiny_shakespeare", "ptb", "wikitext2", "wikitext103", "lambada", "text8",
                 "lm1b", "openwebtext", "synthetic_text")


def builder(name, *, data_dir=None, config=None):
  """The builder for `name` ("dataset" or "dataset/config"), writing ArrayRecord.

  `config` (a BuilderConfig) selects a config that is not predefined, such as a
  synthetic_text corpus of another size.
  """
  dataset, _, config_name = name.partition("/")
  if dataset not in BUILDERS:
    raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(sorted(BUILDERS))}")
  data_dir = data_dir or os.environ.get("LINEAGE_DATA_DIR") or (
      pathlib.Path.home() / ".cache" / "lineage" / "tfds")
  predefined = {c.name for c in BUILDERS[dataset].BUILDER_CONFIGS}
  if config is not None and config.name in predefined:
    config = config.name  # TFDS refuses a custom config named like a predefined one
  return BUILDERS[dataset](data_dir=os.fspath(data_dir), config=config or config_name or None,
                           file_format="array_record")


def load(name, split, *, data_dir=None, manual_dir=None, config=None):
  """The random-access source of one split, preparing the dataset first if needed.

  data_dir defaults to $LINEAGE_DATA_DIR, else ~/.cache/lineage/tfds; manual_dir to
  $LINEAGE_MANUAL_DIR/<dataset's manual name>, else <data_dir>/manual/<same>.
  """
  b = builder(name, data_dir=data_dir, config=config)
  if manual_dir is None:
    root = os.environ.get("LINEAGE_MANUAL_DIR") or os.path.join(b.data_dir_root, "manual")
    manual_dir = os.path.join(root, b.manual_name())
  if not b.is_prepared():
    b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir),
                           file_format="array_record")
  return b.as_data_source(split=split)
