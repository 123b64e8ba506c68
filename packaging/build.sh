#!/usr/bin/env bash
# Build the one-folder Linux application: dist/IAD Workstation/iad-workstation
#
#   packaging/build.sh              fresh CPU-only venv in build/venv-cpu (small app, no CUDA)
#   packaging/build.sh --current    use the venv that is active now (whatever torch it has)
#
# Environment knobs (all optional):
#   IAD_BUILD_VENV     where the fresh venv goes (default: build/venv-cpu)
#   IAD_TORCH_PIP_ARGS how torch is installed into the fresh venv
#                      (default: CPU wheels from download.pytorch.org; on an offline mirror
#                      e.g. "torch==2.13.0+cpu torchvision==0.28.0")
#   PYTHON             interpreter for the fresh venv (default: python3.11 or python3)
#   IAD_CLEAN=1        drop PyInstaller's caches first (a rebuild reuses them otherwise)
#   IAD_DIST           output folder (default: dist); the app is "$IAD_DIST/IAD Workstation"
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

mode="fresh"
case "${1:-}" in
    --current) mode="current" ;;
    "") ;;
    *) echo "usage: packaging/build.sh [--current]" >&2; exit 2 ;;
esac

if [[ "$mode" == "current" ]]; then
    if [[ -z "${VIRTUAL_ENV:-}" ]]; then
        echo "error: --current needs an active venv (source .../bin/activate first)" >&2
        exit 2
    fi
    PY="$VIRTUAL_ENV/bin/python"
    # keep an editable install editable: only add what the build itself needs
    "$PY" -m pip install --quiet "pyinstaller>=6.5"
else
    VENV="${IAD_BUILD_VENV:-$ROOT/build/venv-cpu}"
    BASE_PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
    if [[ ! -x "$VENV/bin/python" ]]; then
        echo "== creating build venv $VENV"
        "$BASE_PY" -m venv "$VENV"
    fi
    PY="$VENV/bin/python"
    "$PY" -m pip install --quiet --upgrade pip wheel
    echo "== installing CPU torch"
    # shellcheck disable=SC2086  # the knob is a list of pip arguments
    "$PY" -m pip install --quiet ${IAD_TORCH_PIP_ARGS:-torch torchvision --index-url https://download.pytorch.org/whl/cpu}
    echo "== installing iad-workstation[package]"
    "$PY" -m pip install --quiet ".[package]"
fi

"$PY" - <<'PYEOF'
import torch
print(f"== torch {torch.__version__} (CUDA build: {torch.version.cuda or 'no'})")
PYEOF

DIST="$(mkdir -p "${IAD_DIST:-$ROOT/dist}" && cd "${IAD_DIST:-$ROOT/dist}" && pwd)"
echo "== running PyInstaller (several minutes)"
start=$(date +%s)
clean=()
[[ "${IAD_CLEAN:-0}" == "1" ]] && clean=(--clean)
"$PY" -m PyInstaller --noconfirm "${clean[@]}" \
    --distpath "$DIST" --workpath "$ROOT/build/pyinstaller-$mode" \
    "$ROOT/packaging/iad-workstation.spec"
end=$(date +%s)

APP="$DIST/IAD Workstation"
# the menu-entry installer travels with the app (it finds _internal/resources next to it)
cp "$ROOT/packaging/install-desktop-entry.sh" "$APP/"
echo "== built $APP in $((end - start)) s"
du -sh "$APP"
echo "== largest parts:"
du -sh "$APP/_internal/"* 2>/dev/null | sort -h | tail -8
