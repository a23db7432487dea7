#!/usr/bin/env bash
# Cached read on a server with 20 repositories configured against one with one; see
# many-repos-read.py.
#   bench/many-repos-read.sh --server build/server/almanac-server [--duration 10 --rounds 3] [--smoke]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_need_wrk
bench_python many-repos-read.py "$@"
