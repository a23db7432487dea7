#!/usr/bin/env bash
# Profile of the cached read: perf (default) or valgrind --tool=callgrind; see profile.py.
#   bench/profile.sh --server build/server/almanac-server [--duration 10] [--callgrind] [--smoke]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_need_wrk
case " $* " in
    *" --callgrind "*) bench_need valgrind valgrind ;;
    *) bench_need perf linux-perf ;;
esac
bench_python profile.py "$@"
