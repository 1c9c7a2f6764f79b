#!/usr/bin/env bash
# `make dist`: the release artifact for a fleet of render boxes that have no Swift toolchain.
#
# Builds rind with the Swift standard library and Foundation linked in statically (its own scratch
# folder, .build-dist, so it does not fight the normal build), strips it, and packs
#
#   rind-VERSION-linux-ARCH/
#     bin/rind                        the daemon; needs only libopenblas0-pthread, libpng16-16,
#                                     libmicrohttpd12 (and libc) at run time
#     bin/librind-cpuid-mask.so       what `rind bench --cpuid-mask` preloads, found beside rind
#     share/rind/checkpoints/         the bundled models   (found from bin/rind as ../share/rind/…,
#     share/rind/openapi.yaml         the served API       so the tree also runs where it is unpacked)
#     share/rind/web/                 the page at /
#     share/rind/VERSION
#     share/doc/rind/                 README.md, Deploy/README.md as DEPLOY.md, checkpoints/README.md
#     deploy/                         install.sh, rind.service, rind.env.example
#
# into dist/rind-VERSION-linux-ARCH.tar.gz with dist/rind-VERSION-linux-ARCH.tar.gz.sha256 beside it
# (`sha256sum -c` format). VERSION is `git describe --tags --always --dirty` unless RIND_VERSION is set.
# Prints the tarball's path as the last line.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/bootstrap.sh
version=${RIND_VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo unknown)}
arch=$(uname -m)
name="rind-$version-linux-$arch"
out=${DIST_DIR:-dist}

swift build -c release --product rind --static-swift-stdlib --scratch-path .build-dist >&2
built="$(swift build -c release --static-swift-stdlib --scratch-path .build-dist --show-bin-path)/rind"
# The CPUID mask is C alone; SwiftPM links even a C-only dynamic product against libswiftCore.so
# (--static-swift-stdlib does not apply to it), so the tarball's copy is built by the clang
# that comes with Swift.
mask=".build-dist/librind-cpuid-mask.so"
clang -O2 -shared -fPIC -o "$mask" Sources/CCPUIDMask/cpuid_mask.c

# A binary that still asks for the toolchain's libswiftCore.so would need Swift on every box.
for file in "$built" "$mask"; do
    if ldd "$file" | grep -q "libswift\|libFoundation\|libdispatch"; then
        echo "dist: $file links Swift runtime libraries dynamically:" >&2
        ldd "$file" >&2
        exit 1
    fi
done

mkdir -p "$out"
stage=$(mktemp -d "$out/.stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
tree="$stage/$name"
install -d "$tree/bin" "$tree/share/rind" "$tree/share/doc/rind" "$tree/deploy"
strip -o "$tree/bin/rind" "$built"
chmod 0755 "$tree/bin/rind"
# `rind bench --cpuid-mask` looks for it in the folder of the rind it runs as.
strip --strip-unneeded -o "$tree/bin/librind-cpuid-mask.so" "$mask"
chmod 0755 "$tree/bin/librind-cpuid-mask.so"
cp -r checkpoints "$tree/share/rind/checkpoints"
rm -f "$tree/share/rind/checkpoints/README.md"
install -m 0644 Sources/RINServer/openapi.yaml "$tree/share/rind/openapi.yaml"
install -d "$tree/share/rind/web"
install -m 0644 Sources/RINServer/Web/* "$tree/share/rind/web/"
echo "$version" > "$tree/share/rind/VERSION"
install -m 0644 README.md "$tree/share/doc/rind/README.md"
install -m 0644 Deploy/README.md "$tree/share/doc/rind/DEPLOY.md"
install -m 0644 checkpoints/README.md "$tree/share/doc/rind/CHECKPOINTS.md"
install -m 0755 Deploy/install.sh "$tree/deploy/install.sh"
install -m 0644 Deploy/rind.service Deploy/rind.env.example "$tree/deploy/"

# Reproducible order, owner and times, so the same sources give the same tarball.
stamp=$(git log -1 --format=%ct 2>/dev/null || echo 0)
tarball="$out/$name.tar.gz"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$stamp" -C "$stage" -cf - "$name" |
    gzip -n -9 > "$tarball.new"
mv -f "$tarball.new" "$tarball"
(cd "$out" && sha256sum "$name.tar.gz" > "$name.tar.gz.sha256")
echo "dist: $(du -h "$tarball" | cut -f1) $(cat "$tarball.sha256")" >&2
echo "$tarball"
