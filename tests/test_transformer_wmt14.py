"""WMT14 en-de, the paper presets' data, built from fixtures in the upstream formats (plain
parallel text for train and newstest2013, SGML for newstest2014): from a manual directory,
from the canonical archives, and read by the milestone."""

import pathlib
import shutil

import pytest
import tensorflow_datasets as tfds

from configs import transformer as transformer_config
from lineage.data import builders
from lineage.milestones.transformer import task as task_lib

FIXTURE = pathlib.Path(__file__).resolve().parent / "fixtures" / "wmt14"
# The archive each fixture file comes in, and its path inside.
ARCHIVES = {
    "europarl-v7.de-en.{}": ("http://www.statmt.org/wmt13/training-parallel-europarl-v7.tgz",
                             "training/europarl-v7.de-en.{}"),
    "commoncrawl.de-en.{}": ("http://www.statmt.org/wmt13/training-parallel-commoncrawl.tgz",
                             "commoncrawl.de-en.{}"),
    "news-commentary-v9.de-en.{}": ("http://www.statmt.org/wmt14/training-parallel-nc-v9.tgz",
                                    "training/news-commentary-v9.de-en.{}"),
    "newstest2013.{}": ("http://www.statmt.org/wmt14/dev.tgz", "dev/newstest2013.{}"),
}


def lines(name):
  return (FIXTURE / name).read_text(encoding="utf-8").split("\n")[:-1]


@pytest.fixture
def offline(monkeypatch):
  def refuse(self, url):
    raise OSError(f"network unreachable: {url}")
  monkeypatch.setattr(tfds.download.DownloadManager, "download", refuse)
  monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract", refuse)


def records(split, data_dir, manual):
  source = builders.load("wmt14", split, data_dir=data_dir, manual_dir=manual)
  return [(r["en"].decode(), r["de"].decode()) for r in source]


def expected_train():
  out = []
  for stem in ("europarl-v7.de-en.{}", "commoncrawl.de-en.{}", "news-commentary-v9.de-en.{}"):
    out += list(zip(lines(stem.format("en")), lines(stem.format("de"))))
  return out


def test_splits_from_a_manual_directory(tmp_path, offline):
  """Train is the three corpora in turn, empty lines kept; newstest2014 is its <seg> texts,
  whitespace collapsed as sacrebleu does; the milestone reads the test split as its test."""
  assert records("train", tmp_path, FIXTURE) == expected_train()
  assert records("validation", tmp_path, FIXTURE) == list(
      zip(lines("newstest2013.en"), lines("newstest2013.de")))
  test = records("test", tmp_path, FIXTURE)
  assert len(test) == 3 and test[0] == ("Gutach: Increased safety for pedestrians",
                                        "Gutach: Noch mehr Sicherheit für Fußgänger")
  assert test[2][0] == ("Two sets of lights so close to one another: intentional or just a "
                        "silly error?")
  data = transformer_config.get_config("base").data
  assert data.name == "wmt14"
  data.update(data_dir=str(tmp_path), manual_dir=str(FIXTURE))
  assert task_lib.text_pairs(data, "test") == test


def test_downloads_the_canonical_archives(tmp_path, monkeypatch):
  """With no manual copy, every file comes from its statmt.org archive (test-full for the
  3,003 sentences of newstest2014)."""
  archives = {}
  for stem, (url, member) in ARCHIVES.items():
    for lang in ("en", "de"):
      archives.setdefault(url, []).append((stem.format(lang), member.format(lang)))
  for name in ("newstest2014-deen-src.en.sgm", "newstest2014-deen-ref.de.sgm"):
    archives.setdefault("http://www.statmt.org/wmt14/test-full.tgz", []).append(
        (name, f"test-full/{name}"))
  extracted = {}
  for number, (url, members) in enumerate(archives.items()):
    for name, member in members:
      path = tmp_path / "extracted" / str(number) / member
      path.parent.mkdir(parents=True, exist_ok=True)
      shutil.copy(FIXTURE / name, path)
    extracted[url] = tmp_path / "extracted" / str(number)
  asked = []

  def download_and_extract(self, url):
    asked.append(url)
    return extracted[url]
  monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract",
                      download_and_extract)
  assert records("train", tmp_path / "tfds", tmp_path / "no_manual") == expected_train()
  assert set(asked) == set(archives)
  assert len(records("test", tmp_path / "tfds", tmp_path / "no_manual")) == 3


def test_files_of_different_lengths_are_a_clear_error(tmp_path, offline):
  manual = tmp_path / "manual"
  shutil.copytree(FIXTURE, manual)
  (manual / "newstest2013.de").write_text(lines("newstest2013.de")[0] + "\n", encoding="utf-8")
  with pytest.raises(Exception, match=r"newstest2013.en and .*newstest2013.de differ in length"):
    records("validation", tmp_path / "tfds", manual)
