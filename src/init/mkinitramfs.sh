#!/bin/sh
# Packs msb-init as /init into an uncompressed newc initramfs: the kernel
# unpacks it without a decompressor, which matters where guest kernel code is
# slow.  Owners are root and times fixed, so the archive is reproducible.
# usage: mkinitramfs.sh MSB_INIT OUT.cpio
set -eu
init=$1 out=$2
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/dev" "$stage/proc" "$stage/sys" "$stage/mnt"
cp "$init" "$stage/init"
chmod 0755 "$stage/init"
find "$stage" -exec touch -h -d @0 {} +
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort |
	cpio --quiet -o -H newc -R 0:0 --reproducible) >"$out.tmp"
mv "$out.tmp" "$out"
