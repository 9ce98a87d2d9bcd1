#!/bin/sh
# What the tests need beyond the test extra: the system packages for ARM, mace-torch without
# its dependency resolution (every release pins e3nn 0.4.4; its runtime dependencies are in the
# test extra), and e3nn 0.4.4 in build/e3nn-0.4.4, the second e3nn the converter is tested
# against (put first on PYTHONPATH by the tests that use it).
set -eu
cd "$(dirname "$0")/.."
sh scripts/install-system-deps.sh
python3 -m pip install -q --no-deps mace-torch==0.3.16
[ -f build/e3nn-0.4.4/e3nn/__init__.py ] || python3 -m pip install -q --no-deps --target build/e3nn-0.4.4 e3nn==0.4.4
