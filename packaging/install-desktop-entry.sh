#!/usr/bin/env bash
# Add IAD Workstation to the desktop's application menu for the current user.
#
#   packaging/install-desktop-entry.sh [EXECUTABLE]
#
# EXECUTABLE: the command the menu entry runs. Default: the built app (this script's own
# folder inside a built app, or "dist/IAD Workstation/iad-workstation" in a checkout), else
# `iad-workstation` on PATH (a pip install). Installs into ~/.local/share (XDG_DATA_HOME): no root needed.
# Remove with: packaging/install-desktop-entry.sh --uninstall
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="${XDG_DATA_HOME:-$HOME/.local/share}"
NAME="iad-workstation"
SIZES=(16 32 48 64 128 256 512)

if [[ "${1:-}" == "--uninstall" ]]; then
    rm -f "$DATA/applications/$NAME.desktop"
    for size in "${SIZES[@]}"; do
        rm -f "$DATA/icons/hicolor/${size}x${size}/apps/$NAME.png"
    done
    echo "removed the IAD Workstation menu entry"
    exit 0
fi

# Run from a checkout (packaging/ next to resources/) or from inside a built app folder,
# where build.sh puts a copy of this script next to the executable.
# IAD_WORKSTATION_RESOURCES (the app's own override) points at an installed package's copy.
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BUILT="$ROOT/dist/IAD Workstation/$NAME"
if [[ -n "${IAD_WORKSTATION_RESOURCES:-}" ]]; then
    RESOURCES="$IAD_WORKSTATION_RESOURCES"
elif [[ -x "$HERE/$NAME" && -d "$HERE/_internal/resources" ]]; then
    RESOURCES="$HERE/_internal/resources"
    BUILT="$HERE/$NAME"
else
    RESOURCES="$ROOT/resources"
fi

EXE="${1:-}"
if [[ -z "$EXE" ]]; then
    if [[ -x "$BUILT" ]]; then
        EXE="$BUILT"
    elif command -v "$NAME" >/dev/null; then
        EXE="$(command -v "$NAME")"
    else
        echo "error: no built app and no $NAME on PATH; pass the executable's path" >&2
        exit 2
    fi
fi
[[ -x "$EXE" ]] || { echo "error: $EXE is not an executable" >&2; exit 2; }
EXE="$(cd "$(dirname "$EXE")" && pwd)/$(basename "$EXE")"
# sed replacement text: escape backslash, the delimiter and &
EXE_SED="$(printf '%s' "$EXE" | sed 's/[\\|&]/\\&/g')"

for size in "${SIZES[@]}"; do
    target="$DATA/icons/hicolor/${size}x${size}/apps"
    mkdir -p "$target"
    cp "$RESOURCES/icons/app/$NAME-$size.png" "$target/$NAME.png"
done

mkdir -p "$DATA/applications"
# Exec needs quoting when the path has spaces ("IAD Workstation"), per the desktop entry spec.
sed "s|^Exec=.*|Exec=\"$EXE_SED\"|" "$RESOURCES/$NAME.desktop" >"$DATA/applications/$NAME.desktop"
chmod 644 "$DATA/applications/$NAME.desktop"

command -v update-desktop-database >/dev/null && update-desktop-database -q "$DATA/applications" || true
command -v gtk-update-icon-cache >/dev/null && gtk-update-icon-cache -q -t "$DATA/icons/hicolor" || true
echo "installed $DATA/applications/$NAME.desktop -> $EXE"
