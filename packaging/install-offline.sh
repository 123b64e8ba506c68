#!/usr/bin/env bash
# On the AIR-GAPPED machine: install IAD Workstation from a wheelhouse folder, no network.
#
#   ./install-offline.sh [VENV_DIR]        run from the folder make-wheelhouse.sh produced
#
# VENV_DIR defaults to ~/.local/share/iad-workstation/venv. Installs the app and its
# dependencies from wheels/ only (--no-index), installs every model bundle in models/,
# links `iad-workstation` into ~/.local/bin, adds the desktop menu entry and finishes with
# `iad-workstation doctor`, whose exit code this script returns.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${1:-${XDG_DATA_HOME:-$HOME/.local/share}/iad-workstation/venv}"
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"

if [[ ! -d "$HERE/wheels" ]]; then
    echo "error: $HERE/wheels is missing; run this script from the wheelhouse folder" >&2
    exit 2
fi

echo "== creating $VENV"
"$PY" -m venv "$VENV"
export PIP_NO_INDEX=1 PIP_FIND_LINKS="$HERE/wheels" PIP_DISABLE_PIP_VERSION_CHECK=1
constraints=()
[[ -s "$HERE/constraints.txt" ]] && constraints=(--constraint "$HERE/constraints.txt")
"$VENV/bin/python" -m pip install "${constraints[@]}" iad-workstation

APP="$VENV/bin/iad-workstation"
shopt -s nullglob
for bundle in "$HERE"/models/*.zip; do
    echo "== installing model bundle $(basename "$bundle")"
    "$APP" models install "$bundle"
done

mkdir -p "$HOME/.local/bin"
ln -sf "$APP" "$HOME/.local/bin/iad-workstation"
if [[ -x "$HERE/install-desktop-entry.sh" ]]; then
    # the icons and .desktop file ship inside the installed package
    IAD_WORKSTATION_RESOURCES="$("$VENV/bin/python" -c \
        'from workstation.paths import resources_dir; print(resources_dir())')" \
        "$HERE/install-desktop-entry.sh" "$APP" || echo "(no desktop menu entry: $?)"
fi

echo "== health check"
"$APP" doctor
