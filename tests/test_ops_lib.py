"""The plain C++ layer of the ops (coders, exact grids), built and tested without
TensorFlow."""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIB = os.path.join(ROOT, "ops", "lib")


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_cpp_unit_tests_pass_under_sanitizers(tmp_path):
  binary = str(tmp_path / "coder_test")
  subprocess.check_call(
      ["g++", "-O1", "-g", "-std=c++17", "-ffp-contract=off", "-fno-trapping-math", "-Wall",
       "-Wextra", "-Werror",
       "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
       os.path.join(LIB, "coder_test.cc"), os.path.join(LIB, "table_coder.cc"),
       os.path.join(LIB, "mixture_coder.cc"), "-o", binary])
  result = subprocess.run([binary], capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout + result.stderr
  assert "all passed" in result.stdout


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_exact_grid_unit_tests_pass_under_sanitizers(tmp_path):
  binary = str(tmp_path / "exact_grid_test")
  subprocess.check_call(
      ["g++", "-O1", "-g", "-std=c++17", "-ffp-contract=off", "-fno-trapping-math", "-Wall",
       "-Wextra", "-Werror", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
       os.path.join(LIB, "exact_grid_test.cc"), os.path.join(LIB, "exact_grid.cc"), "-o",
       binary])
  result = subprocess.run([binary], capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout + result.stderr
  assert "all passed" in result.stdout


def test_fixed_point_tables_match_their_generator():
  result = subprocess.run([sys.executable, os.path.join(ROOT, "tools",
                                                        "gen_fixed_point_tables.py"), "--check"],
                          capture_output=True, text=True)
  assert result.returncode == 0, result.stderr
