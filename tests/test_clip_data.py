"""CIFAR-10 and ImageNet builders on tiny fixtures in their upstream formats, written here."""

import io
import tarfile

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from lineage.data import builders
from lineage.data.builders import cifar10, imagenet


@pytest.fixture
def offline(monkeypatch):
  def refuse(self, url):
    raise OSError(f"network unreachable: {url}")
  monkeypatch.setattr(tfds.download.DownloadManager, "download", refuse)
  monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract", refuse)


def _cifar_batch(rng, n):
  labels = rng.integers(10, size=n).astype(np.uint8)
  planes = rng.integers(256, size=(n, 3, 32, 32)).astype(np.uint8)  # R, G, B planes
  data = np.concatenate([labels[:, None], planes.reshape(n, -1)], axis=1).tobytes()
  return data, planes.transpose(0, 2, 3, 1), labels


def _write_cifar_archive(path, batches, meta="\n".join(cifar10.CLASS_NAMES) + "\n\n"):
  with tarfile.open(path, "w:gz") as tar:
    for name, data in {**batches, "batches.meta.txt": meta.encode()}.items():
      info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))


def test_cifar10_binary_archive(tmp_path, offline):
  rng = np.random.default_rng(0)
  manual = tmp_path / "manual"
  manual.mkdir()
  batches, images, labels = {}, [], []
  for name in cifar10.SPLIT_FILES["train"] + cifar10.SPLIT_FILES["test"]:
    batches[name], batch_images, batch_labels = _cifar_batch(rng, 3)
    images.append(batch_images)
    labels.append(batch_labels)
  _write_cifar_archive(manual / cifar10.ARCHIVE, batches)
  train = builders.load("cifar10", "train", data_dir=tmp_path / "tfds", manual_dir=manual)
  test = builders.load("cifar10", "test", data_dir=tmp_path / "tfds", manual_dir=manual)
  assert len(train) == 15 and len(test) == 3
  for i in range(15):
    np.testing.assert_array_equal(train[i]["image"], images[i // 3][i % 3])
    assert train[i]["label"] == labels[i // 3][i % 3]
  np.testing.assert_array_equal(test[2]["image"], images[5][2])


def test_cifar10_bad_files(tmp_path):
  with pytest.raises(ValueError, match="not a whole number of 3073-byte records"):
    cifar10.parse_batch(b"\0" * 3074, "data_batch_1.bin")
  with pytest.raises(ValueError, match="label 12 out of range"):
    cifar10.parse_batch(bytes([12]) + b"\0" * 3072)


def test_cifar10_missing_is_clear(tmp_path, offline):
  with pytest.raises(FileNotFoundError, match="cifar-10-binary.tar.gz not found, and "
                     "downloading .* failed"):
    builders.load("cifar10", "train", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "none")


def _jpeg(colour, size=(40, 30)):
  buffer = io.BytesIO()
  Image.new("RGB", size, colour).save(buffer, "JPEG", quality=95)
  return buffer.getvalue()


def test_imagenet_class_folders(tmp_path, offline):
  manual = tmp_path / "manual"
  colours = {"n01440764": (200, 30, 30), "n01443537": (30, 30, 200)}
  for split, count in (("train", 2), ("val", 1)):
    for wnid, colour in colours.items():
      (manual / split / wnid).mkdir(parents=True)
      for i in range(count):
        (manual / split / wnid / f"{wnid}_{i}.JPEG").write_bytes(_jpeg(colour))
  (manual / "train" / "n01440764" / "notes.txt").write_text("ignored")
  (manual / imagenet.SYNSETS).write_text("n01440764 tench, Tinca tinca\n"
                                         "n01443537 goldfish, Carassius auratus\n")
  cfg = imagenet.ImagenetConfig(name="imagenet16", image_size=16)
  train = builders.load("imagenet", "train", data_dir=tmp_path / "tfds", manual_dir=manual,
                        config=cfg)
  val = builders.load("imagenet", "validation", data_dir=tmp_path / "tfds", manual_dir=manual,
                      config=cfg)
  assert len(train) == 4 and len(val) == 2
  for record in list(train) + list(val):
    assert record["image"].shape == (16, 16, 3)
    wnid = record["wnid"].decode()
    assert record["label"] == sorted(colours).index(wnid)
    assert record["class_name"].decode() == {"n01440764": "tench",
                                             "n01443537": "goldfish"}[wnid]
    np.testing.assert_allclose(record["image"].mean((0, 1)), colours[wnid], atol=6)


def test_imagenet_decode_and_errors(tmp_path, offline):
  wide = imagenet.decode(_jpeg((0, 255, 0), size=(90, 30)), 24)
  assert wide.shape == (24, 24, 3)
  with pytest.raises(ValueError, match="x.JPEG: not a decodable image"):
    imagenet.decode(b"not a jpeg", 24, "x.JPEG")
  with pytest.raises(FileNotFoundError, match="ImageNet has no download here"):
    builders.load("imagenet", "train", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "none")
