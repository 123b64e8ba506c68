#!/usr/bin/env bash
# Smoke-test the built application: it must pass its own health check on a clean profile.
#
#   packaging/smoke.sh [APP_EXECUTABLE]      default: "dist/IAD Workstation/iad-workstation"
#
# Runs offscreen (no display needed) with a fresh, empty user data directory, the state of a
# new install with no model weights. Fails unless `--self-check` exits 0. Then it reports
# the cold start to the first window when the GUI is part of the build.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
APP="${1:-$ROOT/dist/IAD Workstation/iad-workstation}"
if [[ ! -x "$APP" ]]; then
    echo "error: no built application at $APP (run packaging/build.sh first)" >&2
    exit 2
fi

export QT_QPA_PLATFORM=offscreen
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
IAD_WORKSTATION_HOME="$(mktemp -d)"
export IAD_WORKSTATION_HOME
trap 'rm -rf "$IAD_WORKSTATION_HOME"' EXIT

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

echo "== $APP --version"
"$APP" --version

echo "== $APP --self-check"
start=$(now)
set +e
"$APP" --self-check
status=$?
set -e
end=$(now)
echo "== self-check exit code $status in $(elapsed "$start" "$end") s"
if [[ $status -ne 0 ]]; then
    echo "SMOKE FAILED: the self-check found a required problem (see above)" >&2
    exit 1
fi

echo "== cold start to the first window (offscreen)"
start=$(now)
set +e
output="$(IAD_QUIT_AFTER_FIRST_WINDOW="$start" timeout 300 "$APP" 2>&1)"
status=$?
set -e
end=$(now)
printf '%s\n' "$output" | tail -5
if [[ $status -eq 0 ]] && grep -q "first window after" <<<"$output"; then
    echo "== GUI cold start: $(grep -o 'first window after [0-9.]* s' <<<"$output") (process exit after $(elapsed "$start" "$end") s)"
else
    echo "SMOKE FAILED: the GUI did not show a window (exit code $status)" >&2
    exit 1
fi
echo "SMOKE PASSED"
