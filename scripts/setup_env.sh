#!/usr/bin/env bash
# Create and fill the local virtual environment .venv for one purpose, when it is missing or stale.
#   scripts/setup_env.sh demo   the package, torch (to import PyTorch checkpoints), matplotlib and the quality scores
#   scripts/setup_env.sh test   the package, the test tools and the PyTorch reference (DAC_SPEC 7)
set -euo pipefail
cd "$(dirname "$0")/.."

purpose=${1:?usage: scripts/setup_env.sh demo|test}
python=${PYTHON:-python3}
venv=.venv
stamp=$venv/.ready-$purpose

if [ ! -x "$venv/bin/python" ]; then
    echo "setup: creating $venv with $($python --version)"
    "$python" -m venv "$venv"
fi

# Rebuild when the requirements changed since the last successful install.
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt scripts/install_reference.sh ] \
    && [ "$stamp" -nt scripts/setup_env.sh ]; then
    exit 0
fi

pip=("$venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install -q --upgrade pip
case "$purpose" in
    demo) "${pip[@]}" install -q -e '.[demo]' ;;
    test)
        "${pip[@]}" install -q -e '.[dev]'
        bash scripts/install_reference.sh "$venv"
        ;;
    *) echo "usage: scripts/setup_env.sh demo|test" >&2; exit 2 ;;
esac
touch "$stamp"
echo "setup: $venv ready for $purpose"
