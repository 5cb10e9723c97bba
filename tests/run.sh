#!/usr/bin/env bash
# The project's one test command: installs the test-only tools, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# The ExecuTorch and Core AI extras too: tests/test_executorch.py and tests/test_coreai.py export and run
# .pte and .aimodel files (skipped without them).
python -m pip install -q -e '.[test,executorch,coreai]'
# timm without its torchvision requirement (which would pull a CUDA torch); tests shim torchvision.
python -m pip install -q --no-deps timm==1.0.31
# JUnit 4 for the Android core's tests (the Kotlin compiler comes from npm, see android_demo/ci/test_core.sh).
if [[ ! -f /usr/share/java/junit4.jar || ! -f /usr/share/java/hamcrest-core.jar ]]; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq junit4 libhamcrest-java >/dev/null
  else
    echo "tests/run.sh: install JUnit 4 first: sudo apt-get install -y junit4 libhamcrest-java" >&2
  fi
fi
# The code's habits first (seconds): lint, formatting, the public API's types.
python -m ruff check --quiet .
python -m ruff format --check --quiet .
bash tests/typecheck.sh
# Two worker processes, one test file per worker at a time (--dist loadfile: a file's module fixtures are
# made once): most of the time goes to converters that use one core. --durations shows where time goes.
exec python -m pytest -n 2 --dist loadfile --durations=25 "$@"
