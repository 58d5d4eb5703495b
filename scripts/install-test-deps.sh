#!/usr/bin/env bash
# Install system-level test dependencies for the Playwright-based tests:
# Debian's chromium (Playwright's own browser download is unavailable here;
# tests launch /usr/bin/chromium via executable_path) plus a basic font so
# text renders (--no-install-recommends skips chromium's fonts-liberation).
#
# Idempotent; returns immediately when everything is already installed.
# Safe for CI: non-interactive, never reads stdin.
set -euo pipefail

CHROMIUM="${OMNIBOT_CHROMIUM:-/usr/bin/chromium}"
FONT=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
PKGS=(chromium fonts-dejavu-core)

# Fast path: nothing to do.
[[ -x "$CHROMIUM" && -e "$FONT" ]] && exit 0

log() { echo "install-test-deps: $*" >&2; }

if ! command -v apt-get >/dev/null 2>&1; then
    if [[ -x "$CHROMIUM" ]]; then
        exit 0  # non-Debian host with its own chromium; fonts are its business
    fi
    log "error: $CHROMIUM not found and apt-get is unavailable."
    log "install Chromium yourself (or set OMNIBOT_CHROMIUM to its path)."
    exit 1
fi

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    elif command -v sudo >/dev/null 2>&1 && [[ -t 0 ]]; then
        SUDO=(sudo)  # interactive: let sudo ask for a password
    else
        log "error: ${PKGS[*]} not installed and not running as root (no usable sudo)."
        log "as root, run: apt-get update && apt-get install -y --no-install-recommends ${PKGS[*]}"
        exit 1
    fi
fi

apt_quiet() {
    # Run apt quietly; show its output only if it fails.
    local out rc=0
    out="$(mktemp)"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive "$@" </dev/null >"$out" 2>&1 || rc=$?
    if [[ $rc -ne 0 ]]; then
        cat "$out" >&2
        log "error: '$*' failed (exit $rc)."
    fi
    rm -f "$out"
    return $rc
}

start=$SECONDS
if [[ -x "$CHROMIUM" ]]; then
    log "installing fonts-dejavu-core from Debian (one-time)..."
else
    log "installing chromium from Debian (one-time, ~20s)..."
fi
apt_quiet apt-get update -qq
apt_quiet apt-get install -y -qq --no-install-recommends "${PKGS[@]}"

if [[ ! -x "$CHROMIUM" ]]; then
    log "error: install finished but $CHROMIUM is still missing."
    exit 1
fi
log "done in $((SECONDS - start))s: $("$CHROMIUM" --version 2>/dev/null || echo chromium)"
