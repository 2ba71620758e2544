"""Entry point of the `tfcomp` command.

It silences TensorFlow's start-up messages before anything can import TensorFlow (the
commands that code do, lazily), to keep the command's stderr to one line on errors and
empty on success.
"""
import os


def run():
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  from tfcomp import cli  # pylint: disable=import-outside-toplevel
  cli.run()


if __name__ == "__main__":
  run()
