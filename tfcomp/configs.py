"""Model configs: plain JSON of constructor arguments, one file per (family, name).

The repository keeps them in configs/<family>/<name>.json; `load` finds that folder next
to the package (a source checkout) or takes a path to a .json file.
"""
import json
import os

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "configs")


def names(family):
  folder = os.path.join(CONFIG_DIR, family)
  if not os.path.isdir(folder):
    return []
  return sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".json"))


def parse_overrides(overrides):
  """{"key": value} from ["key=value", ...], each value parsed as JSON (else a string)."""
  out = {}
  for item in overrides:
    key, sep, value = item.partition("=")
    if not sep or not key:
      raise ValueError(f"override must be key=value, got {item!r}")
    try:
      out[key] = json.loads(value)
    except json.JSONDecodeError:
      out[key] = value
  return out


def load(family, name, overrides=()):
  """The config dict of `family` called `name` (or a .json path), with overrides applied."""
  path = name if name.endswith(".json") else os.path.join(CONFIG_DIR, family, f"{name}.json")
  if not os.path.isfile(path):
    raise ValueError(f"no config {name!r} for {family!r}; known: {names(family)}")
  with open(path) as f:
    config = json.load(f)
  extra = parse_overrides(overrides)
  unknown = sorted(set(extra) - set(config))
  if unknown:
    raise ValueError(f"unknown config fields {unknown} for {family}/{name}; "
                     f"fields: {sorted(config)}")
  config.update(extra)
  return config
