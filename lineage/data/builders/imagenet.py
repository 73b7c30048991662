"""ImageNet (ILSVRC-2012) from a manual directory of JPEG class folders.

ImageNet needs a licence and a login, so there is no download: place
`train/<wnid>/*.JPEG` and `val/<wnid>/*.JPEG` (the validation images sorted into class
folders, as most copies are) in $LINEAGE_MANUAL_DIR/imagenet/, with the optional
`LOC_synset_mapping.txt` ("n01440764 tench, Tinca tinca" per line) for class names; without
it a class is named by its wnid. Labels index the train folders' sorted wnids. Images are
decoded with Pillow, resized so the shorter side is `image_size` (bicubic) and centre-cropped
to a square, as downsampled ImageNet; configs imagenet64 (default) and imagenet224.
Records `{"image": uint8 [S, S, 3], "label", "wnid", "class_name"}`.
"""

import dataclasses
import io

import numpy as np
import tensorflow_datasets as tfds

from lineage.data.builders import base

SYNSETS = "LOC_synset_mapping.txt"
_EXTENSIONS = (".jpeg", ".jpg", ".png")


@dataclasses.dataclass
class ImagenetConfig(tfds.core.BuilderConfig):
  image_size: int = 64


def decode(data, image_size, name="image"):
  """uint8 [image_size, image_size, 3]: shorter side resized to image_size, centre crop."""
  try:
    from PIL import Image  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise ImportError("the ImageNet builder decodes JPEGs with Pillow, which is not installed "
                      "in this environment: pip install pillow") from None
  try:
    image = Image.open(io.BytesIO(data)).convert("RGB")
  except Exception as e:  # Pillow raises several types for a corrupt file.
    raise ValueError(f"{name}: not a decodable image ({type(e).__name__}: {e})") from None
  scale = image_size / min(image.size)
  width, height = max(image_size, round(image.width * scale)), max(image_size,
                                                                    round(image.height * scale))
  image = image.resize((width, height), Image.Resampling.BICUBIC)
  left, top = (width - image_size) // 2, (height - image_size) // 2
  return np.asarray(image.crop((left, top, left + image_size, top + image_size)), np.uint8)


def class_names(root, wnids):
  """wnid -> a readable name: the first synonym in LOC_synset_mapping.txt, else the wnid."""
  names = {w: w for w in wnids}
  path = root / SYNSETS
  if path.exists():
    for number, line in base.lines(path):
      wnid, _, synonyms = line.partition(" ")
      if line.strip() and not synonyms:
        raise ValueError(f"{path}:{number}: expected 'wnid name, synonyms', got {line!r}")
      if wnid in names:
        names[wnid] = synonyms.split(",")[0].strip()
  return names


class Imagenet(base.Builder):
  """ILSVRC-2012 images, downsampled at build time."""

  name = "imagenet"
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "place train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (and optionally LOC_synset_mapping.txt) "
      "in $LINEAGE_MANUAL_DIR/imagenet/")
  BUILDER_CONFIGS = [ImagenetConfig(name="imagenet64", image_size=64),
                     ImagenetConfig(name="imagenet224", image_size=224)]

  def _features(self):
    size = self.builder_config.image_size
    return tfds.features.FeaturesDict({
        "image": tfds.features.Tensor(shape=(size, size, 3), dtype=np.uint8),
        "label": tfds.features.Tensor(shape=(), dtype=np.int64),
        "wnid": tfds.features.Text(), "class_name": tfds.features.Text()})

  def _split_generators(self, dl_manager):
    root = base.manual_dir(dl_manager)
    if not (root / "train").is_dir():
      raise FileNotFoundError(f"{root / 'train'} not found: ImageNet has no download here; "
                              f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    wnids = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if not wnids:
      raise FileNotFoundError(f"{root / 'train'} holds no class folders (train/<wnid>/*.JPEG)")
    names = class_names(root, wnids)
    return {split: self._generate_examples(root / folder, wnids, names)
            for split, folder in (("train", "train"), ("validation", "val"))
            if (root / folder).is_dir()}

  def _generate_examples(self, folder, wnids, names):
    index = {w: i for i, w in enumerate(wnids)}
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
      if class_dir.name not in index:
        raise ValueError(f"{class_dir}: class {class_dir.name} has no train folder, so it has "
                         "no label; every validation class needs train/<wnid>/")
      for path in sorted(class_dir.iterdir()):
        if path.suffix.lower() not in _EXTENSIONS:
          continue
        yield f"{class_dir.name}/{path.name}", {
            "image": decode(path.read_bytes(), self.builder_config.image_size, path),
            "label": index[class_dir.name], "wnid": class_dir.name,
            "class_name": names[class_dir.name]}
