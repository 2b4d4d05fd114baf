#!/usr/bin/env bash
# Build the skv image with buildah on a machine that reaches Debian's package archive and the npm
# registry but no container registry (node:20-bookworm-slim cannot be pulled).
#
# Stand-in base: a debootstrap'd Debian bookworm (variant minbase) plus this machine's own
# Node.js 20 package files (Debian bookworm ships Node 18 only). It plays the part of
# node:20-bookworm-slim through the Containerfile's NODE_IMAGE build argument; the Containerfile
# itself is the one a registry-connected build uses.
#
# Usage (as root, from anywhere): deploy/image/build-with-buildah.sh [TAG]
#   env: SKV_ROOTFS (default /var/tmp/skv-bookworm-rootfs), DEBIAN_MIRROR, BUILDAH_STORAGE_DRIVER
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
tag="${1:-localhost/skv:dev}"
rootfs="${SKV_ROOTFS:-/var/tmp/skv-bookworm-rootfs}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
base="localhost/skv-node-base:20-bookworm"
storage=(--storage-driver "${BUILDAH_STORAGE_DRIVER:-vfs}")

for tool in buildah debootstrap dpkg-query; do
  command -v "$tool" >/dev/null || { echo "build-with-buildah: $tool is missing (apt-get install buildah debootstrap)" >&2; exit 2; }
done
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" = 20 ] || { echo "build-with-buildah: host Node.js is $node_major, need 20" >&2; exit 2; }
dpkg-query -W nodejs >/dev/null 2>&1 || { echo "build-with-buildah: Node.js 20 must be installed as the Debian package 'nodejs'" >&2; exit 2; }

if [ ! -x "$rootfs/usr/bin/apt-get" ]; then
  echo "build-with-buildah: debootstrap bookworm into $rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror"
fi

echo "build-with-buildah: Node.js $(node --version) and npm $(npm --version) from the host into the base"
# The nodejs package's files (docs left out, as in the slim image; its headers kept, as the slim
# image keeps them, for the build stage's LevelDB build), then npm as it is installed now: the
# package's npm may have been upgraded in place since, so its file list is stale.
dpkg-query -L nodejs | while IFS= read -r f; do
  case "$f" in /usr/share/doc/* | /usr/share/man/* | /usr/lib/node_modules/*) continue ;; esac
  if [ -f "$f" ] || [ -L "$f" ]; then
    mkdir -p "$rootfs$(dirname "$f")"
    cp -a "$f" "$rootfs$f"
  fi
done
rm -rf "$rootfs/usr/lib/node_modules/npm"
mkdir -p "$rootfs/usr/lib/node_modules"
cp -a /usr/lib/node_modules/npm "$rootfs/usr/lib/node_modules/npm"
ln -sfn ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/bin/npm"
ln -sfn ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/bin/npx"
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot "$rootfs" /usr/bin/node --version >/dev/null
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root chroot "$rootfs" /usr/bin/npm --version >/dev/null

# The base is rebuilt each time from the root filesystem above, so it always matches it.
buildah "${storage[@]}" rmi "$base" >/dev/null 2>&1 || true
ctr="$(buildah "${storage[@]}" from scratch)"
buildah "${storage[@]}" copy --quiet "$ctr" "$rootfs" /
buildah "${storage[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --cmd node "$ctr"
buildah "${storage[@]}" commit --quiet --rm "$ctr" "$base"

# A machine whose network intercepts TLS trusts an extra CA (NODE_EXTRA_CA_CERTS): lend it to the
# build's npm through a bind-mounted npmrc, so that nothing of it lands in an image layer.
mounts=()
if [ -n "${NODE_EXTRA_CA_CERTS:-}" ] && [ -f "$NODE_EXTRA_CA_CERTS" ]; then
  npmrc="$(mktemp)"
  trap 'rm -f "$npmrc"' EXIT
  echo "cafile=/run/skv-build/ca.crt" >"$npmrc"
  mounts+=(--volume "$NODE_EXTRA_CA_CERTS:/run/skv-build/ca.crt:ro" --volume "$npmrc:/root/.npmrc:ro")
fi

cd "$repo"
buildah "${storage[@]}" bud --isolation chroot --pull=never --format docker \
  "${mounts[@]}" \
  --build-arg "NODE_IMAGE=$base" \
  --ignorefile deploy/Containerfile.dockerignore \
  -f deploy/Containerfile -t "$tag" .
echo "build-with-buildah: built $tag"
