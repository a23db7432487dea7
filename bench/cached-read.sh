#!/usr/bin/env bash
# Cached GET /{app}/{profile} throughput and latency against nginx and etcd; see cached-read.py.
#   bench/cached-read.sh --server build/server/almanac-server [--duration 10 --rounds 3] [--smoke]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_need_wrk
bench_need_nginx
case " $* " in *" --no-etcd "*) ;; *) bench_need_etcd ;; esac
bench_python cached-read.py "$@"
