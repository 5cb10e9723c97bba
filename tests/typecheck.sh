#!/usr/bin/env bash
# mypy on mvit's public API. The installed package maps top-level folders to mvit.* (pyproject's
# package-dir), which a type checker does not read: check a tree of links laid out as installed.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
mkdir "$tree/mvit"
ln -s "$PWD/mvit/__init__.py" "$tree/mvit/__init__.py"
for pkg in model export quant benchmarks; do ln -s "$PWD/$pkg" "$tree/mvit/$pkg"; done
# The public API: the top-level functions, the export request and its result, the backend interface,
# checkpoints and the preprocessing contract, the zoo, the int8 front door.
MYPYPATH="$tree" python -m mypy --config-file pyproject.toml --cache-dir "$tree/.cache" \
  -m mvit -m mvit.export -m mvit.export.request -m mvit.export.base -m mvit.export.api -m mvit.export.runner \
  -m mvit.export.metadata -m mvit.export.parity -m mvit.model -m mvit.model.registry -m mvit.model.checkpoint \
  -m mvit.model.contract -m mvit.model.preprocess -m mvit.quant
