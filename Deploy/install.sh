#!/usr/bin/env bash
# Builds a release rind, installs it with the bundled checkpoints and the systemd unit, and enables
# the service. Safe to run again (upgrade): files are replaced, the operator's /etc/default/rind is
# kept, and a running service is restarted.
#
#   sudo Deploy/install.sh              install or upgrade, enable and (re)start rind.service
#   sudo Deploy/install.sh --uninstall  stop and remove everything but the state in /var/lib/rind
#
# DESTDIR=/some/root installs into a staging tree and skips systemctl (used by the tests).
# PREFIX (default /usr/local) is where the binary and checkpoints go.
set -euo pipefail
cd "$(dirname "$0")/.."

DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
bin="$DESTDIR$PREFIX/bin/rind"
share="$DESTDIR$PREFIX/share/rind"
doc="$DESTDIR$PREFIX/share/doc/rind"
unit="$DESTDIR/etc/systemd/system/rind.service"
envfile="$DESTDIR/etc/default/rind"

systemd_live() { [ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; }

if [ "${1:-}" = "--uninstall" ]; then
    if systemd_live; then systemctl disable --now rind.service 2>/dev/null || true; fi
    rm -f "$bin" "$unit"
    rm -rf "$share" "$doc"
    if systemd_live; then systemctl daemon-reload; fi
    echo "rind removed; state kept in /var/lib/rind (private/rind under DynamicUser), config in /etc/default/rind"
    exit 0
fi

# RIND_BINARY=path installs an already built binary (the tests do this) instead of building one.
if [ -n "${RIND_BINARY:-}" ]; then
    built=$RIND_BINARY
else
    bash scripts/bootstrap.sh
    swift build -c release --product rind
    built="$(swift build -c release --show-bin-path)/rind"
fi

install -d "$(dirname "$bin")" "$share" "$doc" "$(dirname "$unit")" "$(dirname "$envfile")"
install -m 0755 "$built" "$bin.new" && mv -f "$bin.new" "$bin"      # atomic replace of a running binary
rm -rf "$share/checkpoints.new"
cp -r checkpoints "$share/checkpoints.new"
rm -rf "$share/checkpoints" && mv "$share/checkpoints.new" "$share/checkpoints"
install -m 0644 Sources/RINServer/openapi.yaml "$share/openapi.yaml"   # served at /openapi.yaml
install -m 0644 README.md Deploy/README.md "$doc/" 2>/dev/null || install -m 0644 README.md "$doc/"
sed "s#/usr/local/#$PREFIX/#g" Deploy/rind.service > "$unit.new" && chmod 0644 "$unit.new" && mv -f "$unit.new" "$unit"
[ -f "$envfile" ] || install -m 0644 Deploy/rind.env.example "$envfile"

if systemd_live; then
    systemctl daemon-reload
    systemctl enable rind.service
    systemctl restart rind.service
    echo "rind installed and running: systemctl status rind; journalctl -u rind -f"
else
    echo "rind installed under ${DESTDIR:-/}; systemd not running here, so the service was not started"
fi
