#!/usr/bin/env bash
# Sets everything up, then compresses and decompresses the sample image with the default
# model through the `tfcomp` command, and checks the result.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sample=tfcomp/samples/kodim23-crop.png
.venv/bin/tfcomp models
.venv/bin/tfcomp compress "$sample" "$work/sample.tfc"
.venv/bin/tfcomp info "$work/sample.tfc"
.venv/bin/tfcomp decompress "$work/sample.tfc" "$work/decoded.png"
TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python - "$sample" "$work/sample.tfc" "$work/decoded.png" <<'PY'
import os, sys
import numpy as np
from tfcomp import io
sample, coded, decoded = sys.argv[1:]
a, b = io.read_image(sample), io.read_image(decoded)
exact = a.shape == b.shape and bool((a == b).all())
print(f"sample {a.shape[1]}x{a.shape[0]}: PNG {os.path.getsize(sample):,} bytes -> tfcomp "
      f"{os.path.getsize(coded):,} bytes ({8 * os.path.getsize(coded) / a.size:.3f} bits/subpixel); "
      f"decoded bit-exact: {'yes' if exact else 'NO'}")
sys.exit(0 if exact else 1)
PY
