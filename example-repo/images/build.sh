#!/usr/bin/env bash
# Builds the images the example repository and the test suite run, with no
# registry: a root filesystem made of Debian's busybox-static (one static
# binary, every applet a symlink), imported with `docker import`.
#
#   capstan.local/busybox:1   sh, httpd, nc, wget, sleep, ... (used by every example pod)
#
# Idempotent: an image that already exists is left alone unless --force is given.
set -euo pipefail

IMAGE=${CAPSTAN_BUSYBOX_IMAGE:-capstan.local/busybox:1}
force=${1:-}

if [ "$force" != "--force" ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "image $IMAGE already present"
  exit 0
fi

busybox=$(command -v busybox || true)
if [ -z "$busybox" ] || ! file -L "$busybox" 2>/dev/null | grep -q 'statically linked'; then
  busybox=/bin/busybox
fi
if [ ! -x "$busybox" ]; then
  echo "busybox-static is missing: apt-get install -y busybox-static" >&2
  exit 1
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,www,var/run,root,proc,sys,dev}
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -sf /bin/busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
echo '<h1>capstan</h1>' > "$root/www/index.html"

tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/bin:/sbin:/usr/bin:/usr/sbin' \
  --change 'CMD ["/bin/sh"]' \
  - "$IMAGE" >/dev/null
echo "built $IMAGE"
