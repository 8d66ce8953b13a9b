#!/bin/sh
# readme_config_table.sh BOOKS_SERVER README: the configuration table in README.md (between the
# config-table markers) must be exactly what `books-server --help-markdown` prints from the option
# table, so the documentation cannot drift from the code.
set -eu
server=$1 readme=$2
want=$(mktemp) have=$(mktemp)
trap 'rm -f "$want" "$have"' EXIT
"$server" --help-markdown > "$want"
sed -n '/<!-- config-table:begin -->/,/<!-- config-table:end -->/p' "$readme" | sed '1d;$d' > "$have"
if ! [ -s "$have" ]; then
  echo "README.md has no config-table markers or an empty table" >&2
  exit 1
fi
if ! diff -u "$have" "$want"; then
  echo "README.md's configuration table differs from books-server --help-markdown (above);" >&2
  echo "paste the output of --help-markdown between the config-table markers" >&2
  exit 1
fi
