#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: Debian packages (when root), a .venv, the pinned requirements.
#   ./setup.sh       what the studio needs
#   ./setup.sh dev   plus the test tools (pytest, Playwright with Debian's Chromium, xRFM)
# Re-running is fast: pip runs only when the requirements files changed since the last install.
set -euo pipefail
cd "$(dirname "$0")"

mode=${1:-run}
apt_packages=(fluidsynth timgm6mb-soundfont ffmpeg)
requirements=requirements.txt
if [ "$mode" = dev ]; then
  apt_packages+=(chromium)
  requirements=requirements-dev.txt
fi

missing=()
for package in "${apt_packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing Debian packages (${missing[*]}); install them with: sudo apt-get install ${missing[*]}" >&2
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
stamp=.venv/.requirements-$mode
wanted=$(cat requirements*.txt | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "setup: installing Python packages from $requirements" >&2
  .venv/bin/pip install -q --disable-pip-version-check -r "$requirements"
  if [ "$mode" = dev ]; then
    .venv/bin/pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt
  fi
  echo "$wanted" > "$stamp"
fi
