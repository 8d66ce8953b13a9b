#!/bin/sh
# run_test.sh WORKDIR: run test_terraform.mjs with node's test runner from WORKDIR (a directory in
# the build tree), after installing the pinned @cdktf/hcl2json there with `npm ci`. npm runs only
# when WORKDIR has no install yet or package-lock.json changed since the last one, so the source
# tree gets no node_modules and later runs need no network.
# BOOKS_TERRAFORM_DIR: the terraform/ directory to check (default: the one in this source tree).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=${1:?usage: run_test.sh WORKDIR}
BOOKS_TERRAFORM_DIR=${BOOKS_TERRAFORM_DIR:-$here/../../terraform}
export BOOKS_TERRAFORM_DIR

for tool in node npm; do
  command -v "$tool" >/dev/null 2>&1 || { echo "run_test.sh: $tool not found (scripts/deps.sh test installs it)" >&2; exit 1; }
done

mkdir -p "$work"
if [ ! -f "$work/node_modules/@cdktf/hcl2json/package.json" ] ||
   ! cmp -s "$here/package-lock.json" "$work/.installed-package-lock.json"; then
  rm -f "$work/.installed-package-lock.json"
  cp "$here/package.json" "$here/package-lock.json" "$work/"
  (cd "$work" && npm ci --no-audit --no-fund --ignore-scripts --prefer-offline)
  cp "$here/package-lock.json" "$work/.installed-package-lock.json"
fi
# Beside its node_modules, so that the import of @cdktf/hcl2json resolves there.
cp "$here/test_terraform.mjs" "$work/"
cd "$work"
exec node --test test_terraform.mjs
