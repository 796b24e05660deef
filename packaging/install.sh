#!/usr/bin/env bash
# Installs build dependencies, builds a release binary and installs it as ~/.local/bin/ecocode-backup.
# With --service, also installs and starts the systemd user unit (settings: ~/.config/ecocode/backup.env).
set -euo pipefail
cd "$(dirname "$0")/.."
sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
if ! dpkg -s libcurl4-openssl-dev libssl-dev libsqlite3-dev pkg-config >/dev/null 2>&1; then
    sudo_if_needed apt-get update -qq
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        libcurl4-openssl-dev libssl-dev libsqlite3-dev pkg-config
fi
# The Swift runtime linked statically: a self-contained binary, and a smaller resident agent.
swift build -c release --product ecocode-backup --static-swift-stdlib
mkdir -p "$HOME/.local/bin"
install -m 0755 "$(swift build -c release --static-swift-stdlib --show-bin-path)/ecocode-backup" "$HOME/.local/bin/ecocode-backup"
echo "installed $HOME/.local/bin/ecocode-backup"

if [ "${1:-}" = "--service" ]; then
    mkdir -p "$HOME/.config/systemd/user" "$HOME/.config/ecocode" "$HOME/.local/state/ecocode-backup" \
             "$HOME/.local/share/ecocode-backup" "$HOME/.local/share/doc/ecocode-backup"
    chmod 700 "$HOME/.config/ecocode" "$HOME/.local/state/ecocode-backup" "$HOME/.local/share/ecocode-backup"
    install -m 0644 packaging/systemd/ecocode-backup.service "$HOME/.config/systemd/user/ecocode-backup.service"
    install -m 0644 README.md "$HOME/.local/share/doc/ecocode-backup/README.md"
    if [ ! -f "$HOME/.config/ecocode/backup.env" ]; then
        install -m 0600 packaging/backup.env.example "$HOME/.config/ecocode/backup.env"
        echo "edit $HOME/.config/ecocode/backup.env (workspaces, bucket), then: systemctl --user restart ecocode-backup"
    fi
    systemctl --user daemon-reload
    systemctl --user enable --now ecocode-backup
    echo "agent running: systemctl --user status ecocode-backup; logs: journalctl --user -u ecocode-backup -f"
fi
