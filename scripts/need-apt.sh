#!/usr/bin/env bash
# Install the Debian packages named as arguments that are not installed yet (sudo when not root).
# Usage: scripts/need-apt.sh PACKAGE…
set -euo pipefail
need=()
for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
((${#need[@]})) || exit 0
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
