# Sourced by the other scripts: makes .venv with the project and its dev tools installed.
# Re-installs only when pyproject.toml changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${EMAIL_SERVICE_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "email-service needs Python 3.11 or newer; found: $("$PYTHON" --version 2>&1)" >&2
    exit 2
fi
if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating $VENV" >&2
    "$PYTHON" -m venv "$VENV"
fi
STAMP="$VENV/.installed-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
if [ ! -f "$STAMP" ]; then
    echo "==> installing email-service and its dev tools into $VENV" >&2
    sh "$ROOT/scripts/install-package.sh" "$VENV/bin/python" "$ROOT" --dev >&2
    rm -f "$VENV"/.installed-*
    touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
