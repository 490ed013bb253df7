#!/usr/bin/env bash
# Install what the Argilla review tests start on loopback: Debian's redis-server, and
# argilla-server 2.8.0 in its own venv .venv-argilla-server/ (its CLI pins typer<0.10, which breaks
# on click>=8.2, while huggingface_hub 2.x in .venv needs a newer click: platform.md §5).
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  $sudo_cmd env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends redis-server
fi

venv=.venv-argilla-server
version() { "$venv/bin/python" -m pip show argilla-server 2>/dev/null | sed -n 's/^Version: //p'; }
if [ "$(version)" != "2.8.0" ]; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q "argilla-server==2.8.0" "click<8.2"
fi
"$venv/bin/python" -m argilla_server --help >/dev/null  # the CLI the test fixture runs
echo "argilla-server $(version) in $venv; $(redis-server --version | cut -d' ' -f1-3)"
