"""Model config dataclasses from `config.model` (a ConfigDict) or a saved run's config.json."""

import dataclasses
import difflib


def from_config(cls, values, ignore_unknown=False):
  """cls(**values) for a dataclass `cls`. An unknown key is an error naming the closest field,
  unless `ignore_unknown` (a config.json written by another version may hold more)."""
  if isinstance(values, cls):
    return values
  values = dict(values)
  fields = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(values) - fields)
  if unknown and not ignore_unknown:
    closest = difflib.get_close_matches(unknown[0], fields, n=1)
    hint = f"; did you mean {closest[0]!r}?" if closest else ""
    raise ValueError(f"{cls.__name__} has no field {unknown[0]!r}{hint} (model.* keys must be "
                     f"among {', '.join(sorted(fields))})")
  return cls(**{k: v for k, v in values.items() if k in fields})
