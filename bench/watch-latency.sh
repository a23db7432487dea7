#!/usr/bin/env bash
# Push -> watcher-woken latency with 1, 100 and 1,000 watchers, almanac-server against etcd;
# see watch-latency.py.
#   bench/watch-latency.sh --server build/server/almanac-server [--watchers 1,100,1000] [--smoke]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
case " $* " in *" --no-etcd "*) ;; *) bench_need_etcd ;; esac
bench_python watch-latency.py "$@"
