#!/usr/bin/env bash
# Installs Debian's Chromium and ChromeDriver for the dashboard's browser tests, unless present.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  echo "chromium and chromedriver present: $(/usr/bin/chromium --version 2>/dev/null | head -n1)"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
/usr/bin/chromium --version
/usr/bin/chromedriver --version
