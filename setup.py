"""Builds tfcomp and compiles its custom ops into tfcomp/_tfcomp_ops.so.

The ops are compiled with g++ against the installed TensorFlow, with the flags
`tf.sysconfig.get_compile_flags()` / `get_link_flags()` give, passed through unchanged.
"""
import os
import shutil
import subprocess
import sys

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
OP_SOURCES = [
    "ops/lib/exact_grid.cc",
    "ops/lib/table_coder.cc",
    "ops/lib/mixture_coder.cc",
    "ops/kernels/coder_kernels.cc",
    "ops/defs/coder_ops.cc",
]
OP_LIBRARY = "tfcomp/_tfcomp_ops.so"

INSTALL_REQUIRES = [
    "tensorflow==2.14.1",
    "tensorflow-compression==2.14.1",
    "tensorflow-probability~=0.22.0",
    "tensorflow-datasets==4.9.4",
    "tensorflow-metadata<1.15",
    "protobuf<4",
    "numpy<2",
    "pillow",
    "absl-py",
    "imagecodecs<2024.9",
    # RC's base layer (tfcomp.base_layer): HEVC through libheif, x265 and libde265.
    "pillow-heif>=1.0",
]


class BuildOps(build_ext):
  """Compiles the op library with g++ instead of distutils' compiler driver."""

  def build_extension(self, ext):
    if shutil.which("g++") is None:
      sys.exit("tfcomp: g++ is needed to compile the custom ops; install it "
               "(Debian/Ubuntu: apt-get install g++) and run the install again.")
    try:
      import tensorflow as tf  # pylint: disable=import-outside-toplevel
    except ImportError as e:
      sys.exit(f"tfcomp: TensorFlow is needed to compile the custom ops ({e}); "
               "install tensorflow==2.14.1 first.")
    include = tf.sysconfig.get_include()
    if not os.path.exists(os.path.join(include, "tensorflow", "core", "framework", "op.h")):
      sys.exit(f"tfcomp: TensorFlow's C++ headers are missing under {include}.")
    target = self.get_ext_fullpath(ext.name)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    # -ffp-contract=off: no fused multiply-adds, so results do not depend on the CPU.
    # -fno-trapping-math: lets the clamp loops vectorize; it changes no computed value.
    command = (["g++", "-shared", "-fPIC", "-O3", "-ffp-contract=off", "-fno-trapping-math",
                "-I", HERE]
               + [os.path.join(HERE, s) for s in OP_SOURCES] + ["-o", target]
               + tf.sysconfig.get_compile_flags() + tf.sysconfig.get_link_flags())
    print(" ".join(command))
    subprocess.check_call(command)


setup(
    name="tfcomp",
    version="0.2.0",
    description="Learned image compression in TensorFlow 2 / Keras with real bitstreams",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["tfcomp", "tfcomp.*"]),
    py_modules=["tfcomp_cli"],
    package_data={"tfcomp": ["zoo/weights/*", "zoo/manifest.json", "samples/*"]},
    ext_modules=[Extension("tfcomp._tfcomp_ops", sources=OP_SOURCES)],
    cmdclass={"build_ext": BuildOps},
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": ["pytest", "hypothesis"],
                    "bench": ["matplotlib"]},
    entry_points={"console_scripts": ["tfcomp = tfcomp_cli:run"]},
    zip_safe=False,
)
