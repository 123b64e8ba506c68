#!/usr/bin/env bash
# On a CONNECTED machine: gather everything an air-gapped install needs into one folder.
#
#   packaging/make-wheelhouse.sh OUT_DIR [MODEL ...]
#
#   OUT_DIR/wheels/   the iad-workstation wheel and every dependency's wheel
#   OUT_DIR/models/   one verified bundle zip per MODEL (e.g. dinov2-small clip-b16-plus)
#   OUT_DIR/install-offline.sh, install-desktop-entry.sh   what the offline machine runs
#
# Copy OUT_DIR to the offline machine (USB disk) and run OUT_DIR/install-offline.sh there.
#
# Environment knobs (optional):
#   IAD_TORCH          cpu (default: small, runs everywhere) or cuda (the PyPI default build)
#   IAD_TORCH_PIP_ARGS how the CPU torch wheels are fetched (default: torch torchvision from
#                      download.pytorch.org/whl/cpu; a mirror: "torch==2.13.0+cpu ...")
#   IAD_PIP_TARGET     extra `pip download` arguments when the offline machine differs from
#                    this one, e.g. "--platform win_amd64 --python-version 3.11
#                      --only-binary=:all:" for a Windows station (see WINDOWS.md)
#   PYTHON             interpreter to use (default: python3); must have iad-workstation
#                      installed when MODELs are given (it runs `iad-workstation models ...`)
set -euo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: packaging/make-wheelhouse.sh OUT_DIR [MODEL ...]" >&2
    exit 2
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$(mkdir -p "$1" && cd "$1" && pwd)"
shift
PY="${PYTHON:-python3}"
WHEELS="$OUT/wheels"
mkdir -p "$WHEELS" "$OUT/models"
# shellcheck disable=SC2206  # a list of pip arguments
TARGET=(${IAD_PIP_TARGET:-})

echo "== building the iad-workstation wheel"
"$PY" -m pip wheel --no-deps --wheel-dir "$WHEELS" "$ROOT"
WHEEL="$(ls -t "$WHEELS"/iad_workstation-*.whl | head -1)"

CONSTRAINTS="$OUT/constraints.txt"
: >"$CONSTRAINTS"
if [[ "${IAD_TORCH:-cpu}" == "cpu" ]]; then
    echo "== downloading CPU torch"
    # shellcheck disable=SC2086  # the knob is a list of pip arguments
    "$PY" -m pip download --dest "$WHEELS" "${TARGET[@]}" \
        ${IAD_TORCH_PIP_ARGS:-torch torchvision --index-url https://download.pytorch.org/whl/cpu}
    # pin exactly those CPU wheels, so resolving the rest never swaps in the CUDA build
    for wheel in "$WHEELS"/torch-*.whl "$WHEELS"/torchvision-*.whl; do
        base="$(basename "$wheel")"
        name="${base%%-*}"
        version="$(cut -d- -f2 <<<"$base")"
        echo "$name==${version//%2B/+}" >>"$CONSTRAINTS"
    done
fi

echo "== downloading every dependency"
"$PY" -m pip download --dest "$WHEELS" "${TARGET[@]}" \
    --find-links "$WHEELS" --constraint "$CONSTRAINTS" "$WHEEL"

for model in "$@"; do
    echo "== bundling model $model"
    "$PY" -m workstation models download "$model"
    "$PY" -m workstation models bundle "$model" "$OUT/models/$model.zip"
done

cp "$ROOT/packaging/install-offline.sh" "$ROOT/packaging/install-desktop-entry.sh" "$OUT/"
echo "== wheelhouse ready: $OUT ($(du -sh "$OUT" | cut -f1))"
ls "$OUT/models"
