#!/usr/bin/env bash
# Fleet scale: 3,000 applications x 3 profiles, 15,000 watchers, one commit to application.yml
# woken through POST /actuator/refresh and a signed POST /monitor, against etcd 3.4 (15,000
# watch streams over 3,000 keys, one transaction); the rate of first requests after such a
# commit; see fleet.py (--help).
#   bench/fleet.sh --server build/server/almanac-server [--watchers 15000] [--apps 3000]
#                  [--compare OTHER_BINARY] [--perf] [--small | --smoke] [--no-etcd]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
case " $* " in *" --help "*|*" -h "*) bench_python fleet.py "$@" ;; esac
case " $* " in *" --no-etcd "*) ;; *) bench_need_etcd ;; esac
case " $* " in *" --perf "*) bench_need perf linux-perf ;; esac
# Every parked watcher is a socket on both sides: the client processes inherit this limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
bench_python fleet.py "$@"
