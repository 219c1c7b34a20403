#!/usr/bin/env bash
# Install everything the tests need and run them:
#   - Debian packages for the real servers the tests start themselves on 127.0.0.1
#     (PostgreSQL, Mosquitto, Chromium), the MQTT command-line clients the docs use and
#     Node.js with npm (for Eclipse Ditto's JavaScript SDK, which the tests install with
#     npm ci) and the shells whose completion is tested (zsh, fish), when missing and
#     when we may install them;
#   - the package with its test extras;
# then lint (ruff), type-check (mypy, configured in pyproject.toml) and pytest (extra
# arguments are passed on).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null 2>&1 || need+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)  # the docs' examples
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v node >/dev/null 2>&1 || need+=(nodejs)  # Ditto's JavaScript SDK (tests/ditto_sdk)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v zsh >/dev/null 2>&1 || need+=(zsh)    # the shell completion tests
command -v fish >/dev/null 2>&1 || need+=(fish)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    sudo=""
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo -n"
  else
    sudo="none"
  fi
  if [ "$sudo" = none ]; then
    echo "note: cannot install ${need[*]} (not root); the tests that need them will be skipped" >&2
  else
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
fi

python3 -m pip install -q -e ".[test]"
python3 -m ruff check src tests benchmarks examples
python3 -m ruff format --check --quiet src tests benchmarks examples
python3 -m mypy
exec python3 -m pytest -q "$@"
