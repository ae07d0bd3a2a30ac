#!/usr/bin/env bash
# Installs the Debian packages the platform uses, when missing. Idempotent.
# As root it runs apt-get; otherwise it prints what to install and fails for the required ones.
# Usage: install-system-packages.sh [--with-test-deps]
set -euo pipefail

# command-to-check  debian-package  required(1)/optional(0)
wanted=(
  "bwrap bubblewrap 1"
  "cc gcc 1"
  "python3.11 python3.11 1"
  "runsc runsc 0"
  "node nodejs 0"
  # git: publishing workspaces to git remotes (agentic export, POST /v1/workspaces/{id}/export).
  "git git 1"
)
if [[ "${1:-}" == "--with-test-deps" ]]; then
  wanted+=("chromium chromium 1")
  # npm fetches the official JS SDK for the browser test (skipped, saying why, without it).
  wanted+=("npm npm 0")
  # Postgres may live in /usr/local/bin (preinstalled) or /usr/lib/postgresql/*/bin (Debian).
  if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    wanted+=("__missing_initdb postgresql 1")
  fi
fi

missing=()
required_missing=()
for entry in "${wanted[@]}"; do
  read -r cmd pkg required <<<"$entry"
  if ! command -v "$cmd" >/dev/null 2>&1 && [[ ! -x "/usr/bin/$cmd" ]]; then
    missing+=("$pkg")
    [[ "$required" == "1" ]] && required_missing+=("$pkg")
  fi
done
# The sandbox launcher (sandbox/host/launcher.c) is linked statically: it needs libc.a.
if [[ ! -e /usr/lib/x86_64-linux-gnu/libc.a && ! -e "/usr/lib/$(uname -m)-linux-gnu/libc.a" ]]; then
  missing+=("libc6-dev"); required_missing+=("libc6-dev")
fi
# libseccomp is loaded by pyseccomp through ctypes.
if ! ldconfig -p 2>/dev/null | grep -q 'libseccomp.so.2'; then
  missing+=("libseccomp2"); required_missing+=("libseccomp2")
fi

if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null 2>&1; then
  echo "==> installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Optional packages may be unavailable on some releases: install required ones strictly, others best-effort.
  if [[ ${#required_missing[@]} -gt 0 ]]; then
    apt-get install -y -qq --no-install-recommends "${required_missing[@]}"
  fi
  for pkg in "${missing[@]}"; do
    [[ " ${required_missing[*]} " == *" $pkg "* ]] && continue
    apt-get install -y -qq --no-install-recommends "$pkg" || echo "note: optional package $pkg not installed"
  done
  exit 0
fi

echo "Missing system packages: ${missing[*]}" >&2
if [[ ${#required_missing[@]} -gt 0 ]]; then
  echo "Install them with: sudo apt-get install ${required_missing[*]}" >&2
  exit 1
fi
echo "(optional; the features that need them are reported by 'agentic doctor')" >&2
