# Sourced by the bench/*.sh scripts: installs the tools a benchmark needs from Debian when they
# are missing, without letting the packages start system services, and runs the Python half.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# bench_need COMMAND PACKAGE [COMMAND PACKAGE]...: apt-get install each PACKAGE whose COMMAND is
# missing. Exits 77 (the smoke tests' "skipped") when it cannot.
bench_need() {
    local missing=() cmd pkg
    while [ $# -ge 2 ]; do
        cmd=$1 pkg=$2
        shift 2
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "SKIP: missing ${missing[*]} and cannot apt-get install here" >&2
        exit 77
    fi
    echo "installing ${missing[*]} from Debian" >&2
    # A package's postinst would start nginx or etcd as a system service; policy-rc.d forbids
    # that for the duration of the install, unless the machine already has one.
    local policy=/usr/sbin/policy-rc.d made_policy=
    if [ ! -e $policy ]; then
        printf '#!/bin/sh\nexit 101\n' >$policy && chmod 755 $policy && made_policy=1
    fi
    local ok=1
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            "${missing[@]}" >&2; then
        DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
                "${missing[@]}" >&2 || ok=
    fi
    [ -n "$made_policy" ] && rm -f $policy
    if [ -z "$ok" ]; then
        echo "SKIP: could not install ${missing[*]}" >&2
        exit 77
    fi
}

# The tools every benchmark may use.
bench_need_wrk() { bench_need wrk wrk; }
bench_need_nginx() { bench_need nginx nginx-light; }
bench_need_etcd() { bench_need etcd etcd-server etcdctl etcd-client; }
bench_need_hyperfine() { bench_need hyperfine hyperfine; }

bench_python() {
    exec python3 "$BENCH_DIR/$1" "${@:2}"
}
