#!/usr/bin/env bash
# Memory per idle watcher (1,000 and 10,000) and resident memory for 1,000 applications x 3
# profiles, with etcd holding the same documents for comparison; see memory.py.
#   bench/memory.sh --server build/server/almanac-server [--watchers 1000,10000] [--smoke]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
case " $* " in *" --no-etcd "*) ;; *) bench_need_etcd ;; esac
bench_python memory.py "$@"
