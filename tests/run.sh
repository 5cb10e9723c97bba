#!/usr/bin/env bash
# The project's one test command: installs the test-only tools, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e '.[test]'
# timm without its torchvision requirement (which would pull a CUDA torch); tests shim torchvision.
python -m pip install -q --no-deps timm==1.0.31
exec python -m pytest "$@"
