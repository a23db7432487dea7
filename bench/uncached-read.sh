#!/usr/bin/env bash
# Uncached reads (rendered per request, first request after a commit) and the .yml/.properties
# forms, against nginx; see uncached-read.py.
#   bench/uncached-read.sh --server build/server/almanac-server [--duration 10 --rounds 3] [--smoke]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_need_wrk
bench_need_nginx
bench_python uncached-read.py "$@"
