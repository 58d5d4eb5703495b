#!/usr/bin/env bash
# Install system-level test dependencies:
# - Debian's chromium for the Playwright-based tests (Playwright's own browser
#   download is unavailable here; tests launch /usr/bin/chromium via
#   executable_path) plus a basic font so text renders (--no-install-recommends
#   skips chromium's fonts-liberation);
# - Debian's postgresql (v15 on Debian 12) for the PostgreSQL tests: the test
#   session starts its own throwaway cluster with initdb + pg_ctl from
#   /usr/lib/postgresql/<ver>/bin (tests/pg.py); the system cluster is not used;
# - Debian's dovecot-imapd for the e-mail tests: the test session starts its own
#   unprivileged dovecot on 127.0.0.1 with a config in a temp dir
#   (tests/mailserver.py); the system service is not used.
#
# Idempotent; returns immediately when everything is already installed.
# Safe for CI: non-interactive, never reads stdin.
set -euo pipefail

CHROMIUM="${OMNIBOT_CHROMIUM:-/usr/bin/chromium}"
FONT=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf

have_postgres() {
    # Same search as tests/pg.py: Debian's layout, then pg_config, then PATH.
    local f
    for f in /usr/lib/postgresql/*/bin/initdb; do
        [[ -x "$f" ]] && return 0
    done
    if command -v pg_config >/dev/null 2>&1; then
        [[ -x "$(pg_config --bindir 2>/dev/null)/initdb" ]] && return 0
    fi
    command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1
}

PKGS=()
[[ -x "$CHROMIUM" ]] || PKGS+=(chromium)
[[ -e "$FONT" ]] || PKGS+=(fonts-dejavu-core)
have_postgres || PKGS+=(postgresql)
DOVECOT="${OMNIBOT_DOVECOT:-/usr/sbin/dovecot}"
[[ -x "$DOVECOT" && -x /usr/lib/dovecot/imap ]] || PKGS+=(dovecot-imapd)

# Fast path: nothing to do.
[[ ${#PKGS[@]} -eq 0 ]] && exit 0

log() { echo "install-test-deps: $*" >&2; }

if ! command -v apt-get >/dev/null 2>&1; then
    missing=0
    if [[ ! -x "$CHROMIUM" ]]; then
        log "error: $CHROMIUM not found and apt-get is unavailable."
        log "install Chromium yourself (or set OMNIBOT_CHROMIUM to its path)."
        missing=1
    fi
    if ! have_postgres; then
        log "error: PostgreSQL (initdb, pg_ctl) not found and apt-get is unavailable."
        log "install PostgreSQL 14 or newer yourself, with pg_config or initdb on PATH."
        missing=1
    fi
    if [[ ! -x "$DOVECOT" ]]; then
        log "error: dovecot not found and apt-get is unavailable."
        log "install dovecot with its IMAP server yourself (or set OMNIBOT_DOVECOT to its path)."
        missing=1
    fi
    exit $missing  # a non-Debian host's fonts are its own business
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
log "installing ${PKGS[*]} from Debian (one-time, ~20-40s)..."
apt_quiet apt-get update -qq
apt_quiet apt-get install -y -qq --no-install-recommends "${PKGS[@]}"

if [[ ! -x "$CHROMIUM" ]]; then
    log "error: install finished but $CHROMIUM is still missing."
    exit 1
fi
if ! have_postgres; then
    log "error: install finished but PostgreSQL's initdb is still missing (looked in /usr/lib/postgresql/*/bin)."
    exit 1
fi
if [[ ! -x "$DOVECOT" ]]; then
    log "error: install finished but $DOVECOT is still missing."
    exit 1
fi
pg_ver="$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n1 || true)"
log "done in $((SECONDS - start))s: $("$CHROMIUM" --version 2>/dev/null || echo chromium), PostgreSQL ${pg_ver:-(own install)}, dovecot $("$DOVECOT" --version 2>/dev/null | cut -d' ' -f1)"
