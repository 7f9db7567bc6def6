#!/usr/bin/env bash
# Regenerates every generated file in a scratch copy of the tree and fails if
# anything differs from the files here: generated files are never edited by
# hand. The working tree is left as it is, so no edit is lost.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} sh -c '[ -e "{}" ] && printf "%s\0" "{}"' |
  tar --null -T - -cf - | tar -xf - -C "$scratch"

make --no-print-directory -C "$scratch" generate manifests >/dev/null
status=0
for dir in api config charts; do
  [ -e "$dir" ] || [ -e "$scratch/$dir" ] || continue
  if ! diff -ru --new-file "$dir" "$scratch/$dir" >"$scratch/diff.txt"; then
    echo "verify: $dir differs from what make generate manifests produces; run it and do not edit generated files by hand:" >&2
    sed "s|$scratch/||g" "$scratch/diff.txt" | head -40 >&2
    status=1
  fi
done

unformatted=$(gofmt -s -l $(git ls-files --cached --others --exclude-standard '*.go'))
if [ -n "$unformatted" ]; then
  echo "verify: these files are not gofmt -s formatted (run make fmt):" >&2
  echo "$unformatted" >&2
  status=1
fi
if ! go mod tidy -diff >/dev/null; then
  echo "verify: go.mod and go.sum are not tidy (run go mod tidy)" >&2
  status=1
fi
[ $status -eq 0 ] && echo "verify: generated files are up to date"
exit $status
