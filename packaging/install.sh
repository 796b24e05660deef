#!/usr/bin/env bash
# Installs build dependencies, builds a release binary and installs it as ~/.local/bin/ecocode-backup.
set -euo pipefail
cd "$(dirname "$0")/.."
sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
if ! dpkg -s libcurl4-openssl-dev libssl-dev libsqlite3-dev pkg-config >/dev/null 2>&1; then
    sudo_if_needed apt-get update -qq
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        libcurl4-openssl-dev libssl-dev libsqlite3-dev pkg-config
fi
swift build -c release --product ecocode-backup
mkdir -p "$HOME/.local/bin"
install -m 0755 "$(swift build -c release --show-bin-path)/ecocode-backup" "$HOME/.local/bin/ecocode-backup"
echo "installed $HOME/.local/bin/ecocode-backup"
