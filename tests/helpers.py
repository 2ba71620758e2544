"""Helpers for the tests that drive the `tfcomp` command."""
import io as _io

from tfcomp import cli


def run_cli(*argv):
  """Runs `tfcomp argv...` in-process; returns (exit status, stdout, stderr)."""
  out, err = _io.StringIO(), _io.StringIO()
  status = cli.main([str(a) for a in argv], out, err)
  return status, out.getvalue(), err.getvalue()
