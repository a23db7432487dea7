#!/usr/bin/env bash
# Cached read with a JWT (ServiceAccount token) caller against a Basic caller; see jwt-read.py.
#   bench/jwt-read.sh --server build/server/almanac-server [--duration 10 --rounds 3] [--smoke]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_need_wrk
bench_python jwt-read.py "$@"
