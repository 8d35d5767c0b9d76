#!/bin/sh
# Installs email-service into a virtual environment: the one install command shared by
# scripts/bootstrap.sh (the tests' .venv) and the Dockerfile (the image), so both get the
# same package from the same pyproject.toml.
#
#   scripts/install-package.sh PYTHON SOURCE_DIR          # the package (the image)
#   scripts/install-package.sh PYTHON SOURCE_DIR --dev    # editable, with the dev tools
#
# PYTHON is the virtual environment's interpreter; SOURCE_DIR holds pyproject.toml.
set -eu
if [ "$#" -lt 2 ] || [ "$#" -gt 3 ] || { [ "$#" -eq 3 ] && [ "$3" != "--dev" ]; }; then
    echo "usage: $0 PYTHON SOURCE_DIR [--dev]" >&2
    exit 2
fi
python="$1"
source_dir="$2"
"$python" -m pip install --quiet --upgrade pip
if [ "$#" -eq 3 ]; then
    "$python" -m pip install --quiet --editable "$source_dir[dev]"
else
    "$python" -m pip install --quiet "$source_dir"
fi
