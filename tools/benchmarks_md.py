"""Keeps BENCHMARKS.md as one section per tool, each replaced whole by its tool's run."""
import datetime
import os
import platform
import re

import tensorflow as tf

PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    "BENCHMARKS.md")
HEADER = ("# tfcomp benchmarks\n\nEvery section is written by the tool it names; re-run the "
          "command shown to reproduce it. Times drift between machines: compare the ratios "
          "measured side by side in one run.\n")


def machine():
  cpu = platform.processor() or "unknown CPU"
  try:
    with open("/proc/cpuinfo") as f:
      cpu = re.search(r"model name\s*:\s*(.*)", f.read()).group(1)
  except (OSError, AttributeError):
    pass
  return (f"{datetime.date.today().isoformat()}, {cpu}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, TensorFlow {tf.__version__}")


def update_section(title, body, path=PATH):
  """Replaces (or appends) the section `## title` of BENCHMARKS.md with `body`."""
  text = open(path).read() if os.path.exists(path) else HEADER
  section = f"## {title}\n\n{body.strip()}\n"
  pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
  if pattern.search(text):
    text = pattern.sub(lambda _: section + "\n", text).rstrip() + "\n"
  else:
    text = text.rstrip() + "\n\n" + section
  with open(path, "w") as f:
    f.write(text)
