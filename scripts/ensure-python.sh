#!/usr/bin/env bash
# Installs the PyPI packages the checks run with into .venv, unless present: `requests` (the
# contract's Python examples), `standardwebhooks` (the verifier check) and `aiosmtpd` (the real SMTP
# server the failure-email tests start). Prints the venv's python.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import requests, standardwebhooks, aiosmtpd' 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    'requests>=2.31,<3' 'standardwebhooks>=1.1,<2' 'aiosmtpd>=1.4,<2' >&2
fi
echo "$venv/bin/python"
