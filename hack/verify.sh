#!/usr/bin/env bash
# Regenerates every generated file and fails if anything differs from what is
# committed: generated files are never edited by hand.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

make --no-print-directory generate manifests >/dev/null
if ! gofmt_out=$(gofmt -s -l $(git ls-files '*.go')) || [ -n "$gofmt_out" ]; then
  echo "verify: these files are not gofmt -s formatted:" >&2
  echo "$gofmt_out" >&2
  exit 1
fi
go mod tidy -diff >/dev/null || { echo "verify: go.mod/go.sum are not tidy: run go mod tidy" >&2; exit 1; }

changed=$(git status --porcelain --untracked-files=all -- api config charts)
if [ -n "$changed" ]; then
  echo "verify: generated files differ from what is committed (run make generate manifests):" >&2
  echo "$changed" >&2
  git --no-pager diff --stat -- api config charts >&2
  exit 1
fi
echo "verify: generated files are up to date"
