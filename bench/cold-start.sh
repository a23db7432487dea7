#!/usr/bin/env bash
# Cold start with a warm cache dir: process start to first answered request, against nginx and
# etcd; see cold-start.py.
#   bench/cold-start.sh --server build/server/almanac-server [--runs 10 --rounds 3] [--smoke]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_need curl curl
bench_need_nginx
# without hyperfine, cold-start.py times the runs itself
( bench_need_hyperfine ) || true
case " $* " in *" --no-etcd "*|*" --smoke "*) ;; *) bench_need_etcd ;; esac
bench_python cold-start.py "$@"
