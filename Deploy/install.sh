#!/usr/bin/env bash
# Installs rind with its checkpoints and the systemd unit, and enables the service. Safe to run
# again (upgrade or rollback): files are replaced, the operator's /etc/default/rind is kept, and a
# running service is restarted.
#
#   sudo Deploy/install.sh                          from a checkout: build a release binary here
#                                                   (installs the build packages and needs Swift)
#   sudo Deploy/install.sh --artifact rind-V-linux-x86_64.tar.gz
#                                                   from a `make dist` tarball: checks it against
#                                                   the .sha256 file beside it, then installs it;
#                                                   needs no compiler and no Swift
#   sudo rind-V-linux-x86_64/deploy/install.sh      the same, from an unpacked tarball
#   sudo Deploy/install.sh --uninstall              stop and remove everything but the state in
#                                                   /var/lib/rind and /etc/default/rind
#
# A tarball's binary needs only the runtime libraries: libopenblas0-pthread, libpng16-16 and
# libmicrohttpd12 (installed with apt-get when missing and systemd is live).
# DESTDIR=/some/root installs into a staging tree or an image and skips apt-get and systemctl.
# PREFIX (default /usr/local) is where the binary and checkpoints go.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")

DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
bin="$DESTDIR$PREFIX/bin/rind"
share="$DESTDIR$PREFIX/share/rind"
doc="$DESTDIR$PREFIX/share/doc/rind"
unit="$DESTDIR/etc/systemd/system/rind.service"
envfile="$DESTDIR/etc/default/rind"
runtime_packages=(libopenblas0-pthread libpng16-16 libmicrohttpd12)

systemd_live() { [ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; }
die() { echo "install.sh: $*" >&2; exit 1; }

if [ "${1:-}" = "--uninstall" ]; then
    if systemd_live; then systemctl disable --now rind.service 2>/dev/null || true; fi
    rm -f "$bin" "$unit"
    rm -rf "$share" "$doc"
    if systemd_live; then systemctl daemon-reload; fi
    echo "rind removed; state kept in /var/lib/rind (private/rind under DynamicUser), config in /etc/default/rind"
    exit 0
fi

# --artifact FILE: verify, unpack into a temporary folder, and run this script from there.
if [ "${1:-}" = "--artifact" ]; then
    tarball=${2:-}
    [ -f "$tarball" ] || die "--artifact needs a tarball made by 'make dist' (got '${tarball}')"
    sums="$tarball.sha256"
    [ -f "$sums" ] || die "no checksum file $sums beside the tarball: refusing to install an unverified artifact"
    expected=$(awk '{print $1; exit}' "$sums")
    actual=$(sha256sum "$tarball" | awk '{print $1}')
    [ -n "$expected" ] && [ "$expected" = "$actual" ] ||
        die "checksum mismatch for $tarball: expected $expected, got $actual"
    unpacked=$(mktemp -d)
    trap 'rm -rf "$unpacked"' EXIT
    tar -xzf "$tarball" -C "$unpacked"
    inner=$(find "$unpacked" -mindepth 3 -maxdepth 3 -path '*/deploy/install.sh' | head -1)
    [ -n "$inner" ] || die "$tarball has no deploy/install.sh: not a rind artifact"
    echo "install.sh: $tarball verified (sha256 $actual)"
    bash "$inner"
    exit $?
fi

if [ -x "$top/bin/rind" ] && [ -f "$top/share/rind/openapi.yaml" ]; then
    # An unpacked `make dist` tarball: everything is prebuilt.
    built="$top/bin/rind"
    checkpoints="$top/share/rind/checkpoints"
    openapi="$top/share/rind/openapi.yaml"
    web="$top/share/rind/web"
    docs="$top/share/doc/rind"
    unit_source="$here/rind.service"
    env_example="$here/rind.env.example"
    version=$(cat "$top/share/rind/VERSION")
    if [ -z "$DESTDIR" ] && command -v ldd >/dev/null && ldd "$built" | grep -q "not found"; then
        if systemd_live && command -v apt-get >/dev/null && [ "$(id -u)" -eq 0 ]; then
            echo "install.sh: installing the runtime libraries ${runtime_packages[*]}" >&2
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${runtime_packages[@]}" >&2
        fi
        ! ldd "$built" | grep "not found" || die "missing libraries; install ${runtime_packages[*]}"
    fi
else
    # A checkout: build here. RIND_BINARY=path installs an already built binary (the tests do).
    cd "$top"
    if [ -n "${RIND_BINARY:-}" ]; then
        built=$RIND_BINARY
    else
        bash scripts/bootstrap.sh
        swift build -c release --product rind
        built="$(swift build -c release --show-bin-path)/rind"
    fi
    checkpoints="$top/checkpoints"
    openapi="$top/Sources/RINServer/openapi.yaml"
    web="$top/Sources/RINServer/Web"
    docs=$(mktemp -d)
    trap 'rm -rf "$docs"' EXIT
    cp "$top/README.md" "$docs/README.md"                 # the names a tarball has (scripts/dist.sh)
    cp "$top/Deploy/README.md" "$docs/DEPLOY.md"
    cp "$top/checkpoints/README.md" "$docs/CHECKPOINTS.md"
    unit_source="$top/Deploy/rind.service"
    env_example="$top/Deploy/rind.env.example"
    version=$(git -C "$top" describe --tags --always --dirty 2>/dev/null || echo unknown)
fi

install -d "$(dirname "$bin")" "$share" "$doc" "$(dirname "$unit")" "$(dirname "$envfile")"
install -m 0755 "$built" "$bin.new" && mv -f "$bin.new" "$bin"      # atomic replace of a running binary
rm -rf "$share/checkpoints.new"
cp -r "$checkpoints" "$share/checkpoints.new"
rm -rf "$share/checkpoints" && mv "$share/checkpoints.new" "$share/checkpoints"
install -m 0644 "$openapi" "$share/openapi.yaml"   # served at /openapi.yaml
rm -rf "$share/web.new"                             # the page at /, found from bin/rind as ../share/rind/web
install -d "$share/web.new" && install -m 0644 "$web"/* "$share/web.new/"
rm -rf "$share/web" && mv "$share/web.new" "$share/web"
echo "$version" > "$share/VERSION"
install -m 0644 "$docs"/*.md "$doc/"
sed "s#/usr/local/#$PREFIX/#g" "$unit_source" > "$unit.new" && chmod 0644 "$unit.new" && mv -f "$unit.new" "$unit"
[ -f "$envfile" ] || install -m 0644 "$env_example" "$envfile"

if systemd_live; then
    systemctl daemon-reload
    systemctl enable rind.service
    systemctl restart rind.service
    echo "rind $version installed and running: systemctl status rind; journalctl -u rind -f"
else
    echo "rind $version installed under ${DESTDIR:-/}; systemd not running here, so the service was not started"
fi
