"""What every builder shares: finding its files, and reporting bad ones precisely.

A file comes from the manual directory when it is there, else from its canonical
URL through the download manager. A manual directory that holds some of a
dataset's split files is taken as the whole local copy: splits whose files are
absent from it are skipped (and logged), so that partial copies such as
../shared/data/wikitext2 (no train split) still build.
"""

import abc
import csv
import dataclasses
import gzip
import inspect
import io
import json
import os

from absl import logging
from etils import epath
import tensorflow_datasets as tfds
from tensorflow_datasets.core import utils as tfds_utils


@dataclasses.dataclass(frozen=True)
class Source:
  """One file: its accepted names in the manual directory, and where it is published.

  `member` is the file's path inside the archive at `url`; None when `url` is the
  file itself. `url=None` marks a file that is never downloaded.
  """
  names: tuple[str, ...]
  url: str | None = None
  member: str | None = None


def split_90_5_5(total):
  """Train, validation and test sizes: 5% (rounded) held out twice, the rest for training.

  Gives 90M/5M/5M for enwik8 and text8 (10^8 units) and TFDS's 1,003,854/55,770/55,770
  for Tiny Shakespeare (1,115,394 chars), and stays proportional for small fixtures.
  """
  held = round(total * 0.05)
  return total - 2 * held, held, held


def open_text(path, newline="\n"):
  """A UTF-8 text stream of the file, gunzipped when its name ends in .gz.

  Streaming keeps memory flat on the large files (WikiText-103 train, LM1B shards).
  """
  raw = epath.Path(path).open("rb")
  if os.fspath(path).endswith(".gz"):
    raw = gzip.GzipFile(fileobj=raw)
  return io.TextIOWrapper(raw, encoding="utf-8", newline=newline)


def read_text(path):
  """A file's whole text (gunzipped when its name ends in .gz)."""
  with open_text(path) as f:
    return f.read()


def lines(path):
  """(line number from 1, line without its newline) for a text file."""
  with open_text(path) as f:
    for number, line in enumerate(f, start=1):
      yield number, line[:-1] if line.endswith("\n") else line


def jsonl(path, fields):
  """(line number, object) for a JSON-lines file whose objects must hold `fields`."""
  for number, line in lines(path):
    if not line.strip():
      continue
    try:
      obj = json.loads(line)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}:{number}: not JSON ({e.msg})") from None
    missing = [f for f in fields if not isinstance(obj, dict) or f not in obj]
    if missing:
      raise ValueError(f"{path}:{number}: missing field(s) {', '.join(missing)}")
    yield number, obj


def csv_rows(path, fields, **dialect):
  """(line number, row dict) for a CSV/TSV file whose header holds `fields`."""
  with open_text(path, newline="") as f:
    reader = csv.reader(f, **dialect)
    header = next(reader, None)
    if header is None or not set(fields) <= set(header):
      raise ValueError(f"{path}:1: header {header} lacks {', '.join(fields)}")
    start = reader.line_num + 1
    for row in reader:
      if row and len(row) != len(header):
        raise ValueError(f"{path}:{start}: {len(row)} fields, the header has {len(header)}")
      if row:
        yield start, dict(zip(header, row))
      start = reader.line_num + 1


class Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A builder whose examples come from upstream files found by `resolve` or `fetch`.

  Subclasses define `_features()` and `_generate_examples(path)`, and either
  SOURCES (split -> Source) or their own `_split_generators`. Keys are integers
  in source order and TFDS's write-time shuffle is off, so records keep the
  files' order (evaluation protocols need it; grain shuffles at read time).
  Builders stay out of TFDS's global registry, where names such as lm1b are
  taken: `lineage.data.builders.BUILDERS` is the registry.
  """

  VERSION = tfds.core.Version("1.0.0")
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Place the upstream files, under their upstream names, in $LINEAGE_MANUAL_DIR/<name>/ "
      "(laid out like ../shared/data/<name>/).")
  MANUAL_NAME = None  # The manual directory's name when it differs from `name`.
  SOURCES: dict[str, Source] = {}

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(skip_registration=True, **kwargs)

  @tfds_utils.classproperty
  @classmethod
  def code_path(cls):
    """The builder's source file: TFDS's own lookup needs importlib_resources, not installed."""
    return epath.Path(inspect.getfile(cls))

  @classmethod
  def manual_name(cls):
    return cls.MANUAL_NAME or cls.name

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, description=self.__doc__,
                                 features=self._features(), disable_shuffling=True)

  @abc.abstractmethod
  def _features(self):
    """The FeaturesDict of one record."""

  def sources(self):
    """Split -> Source; builders with configs override it to depend on `builder_config`."""
    return self.SOURCES

  def _split_generators(self, dl_manager):
    return {split: self._generate_examples(path)
            for split, path in self.resolve(dl_manager, self.sources()).items()}

  def resolve(self, dl_manager, sources):
    """Split -> local path: from the manual directory if it holds any, else downloaded."""
    manual = manual_dir(dl_manager)
    local = {split: _in_manual(manual, src) for split, src in sources.items()}
    if any(local.values()):
      for split in sorted(s for s, path in local.items() if path is None):
        logging.warning("%s: no %s in %s; split %r skipped", self.name, sources[split].names[0],
                        manual, split)
      return {split: path for split, path in local.items() if path is not None}
    return {split: fetch(dl_manager, src) for split, src in sources.items()}


def manual_dir(dl_manager):
  """The manual directory's path, whether or not it exists.

  TFDS's public `manual_dir` raises when the directory is missing or empty, and
  the error messages need the path either way.
  """
  return epath.Path(dl_manager._manual_dir)  # pylint: disable=protected-access


def _in_manual(manual, source):
  for name in source.names:
    if (manual / name).exists():
      return manual / name
  return None


def fetch(dl_manager, source):
  """`source` from the manual directory, else downloaded; FileNotFoundError naming both."""
  manual = manual_dir(dl_manager)
  path = _in_manual(manual, source)
  if path is not None:
    return path
  expected = " or ".join(os.fspath(manual / name) for name in source.names)
  if source.url is None:
    raise FileNotFoundError(f"{expected} not found, and this dataset has no download: "
                            "place the files there by hand")
  try:
    if source.member is None:
      return dl_manager.download(source.url)
    return dl_manager.download_and_extract(source.url) / source.member
  except Exception as e:  # Any network or archive failure means the same thing to the user.
    raise FileNotFoundError(f"{expected} not found, and downloading {source.url} failed "
                            f"({type(e).__name__}: {e})") from e


class TextLines(Builder):
  """A corpus stored one line per record (`{"text": line without its newline}`)."""

  def _features(self):
    return tfds.features.FeaturesDict({"text": tfds.features.Text()})

  def _generate_examples(self, path):
    for number, line in lines(path):
      yield number, {"text": line}


class SplitStream(Builder):
  """One file cut into train/validation/test by `split_90_5_5`, stored in chunks.

  Records are consecutive slices of CHUNK units (all of a split when CHUNK is None);
  a split is its records concatenated in order. Subclasses define SOURCE, `_read`
  (the file as str or bytes) and `_record` (a slice -> feature dict).
  """

  SOURCE: Source
  CHUNK: int | None = None

  @abc.abstractmethod
  def _read(self, path):
    """The whole file, as str or bytes."""

  @abc.abstractmethod
  def _record(self, piece):
    """The feature dict of one slice."""

  def _split_generators(self, dl_manager):
    data = self._read(fetch(dl_manager, self.SOURCE))
    train, valid, _ = split_90_5_5(len(data))
    bounds = {"train": (0, train), "validation": (train, train + valid),
              "test": (train + valid, len(data))}
    return {split: self._generate_examples(data, start, stop)
            for split, (start, stop) in bounds.items()}

  def _generate_examples(self, data, start, stop):
    step = self.CHUNK or max(stop - start, 1)
    for key, offset in enumerate(range(start, stop, step)):
      yield key, self._record(data[offset:min(offset + step, stop)])


class TextStream(SplitStream):
  """A SplitStream of UTF-8 text: records are `{"text": slice}`."""

  def _features(self):
    return tfds.features.FeaturesDict({"text": tfds.features.Text()})

  def _read(self, path):
    return read_text(path)

  def _record(self, piece):
    return {"text": piece}
