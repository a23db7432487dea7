#!/usr/bin/env bash
# Starts a server and returns as soon as it answers: the command cold-start.py times.
#   first-answer.sh PIDFILE URL POSTDATA|- -- COMMAND [ARG]...
#   first-answer.sh --wait-gone PIDFILE     (returns when PIDFILE's process has exited)
# Polls URL with curl (POSTDATA as a JSON body unless "-") with no pause between tries, then
# sends the server SIGTERM and exits without waiting: the next run's --prepare step waits for
# PIDFILE's process to be gone, outside the timed part.
set -u
if [ "$1" = --wait-gone ]; then
    # a zombie (exited, not yet reaped by its new parent) counts as gone
    while [ -s "$2" ] && [ -e "/proc/$(cat "$2")/stat" ] &&
            read -r _ _ state _ <"/proc/$(cat "$2")/stat" 2>/dev/null && [ "$state" != Z ]; do
        sleep 0.01
    done
    exit 0
fi
pidfile=$1 url=$2 data=$3
shift 4
"$@" >/dev/null 2>"$pidfile.log" &
pid=$!
echo $pid >"$pidfile"
if [ "$data" = - ]; then post=(); else post=(-H 'Content-Type: application/json' -d "$data"); fi
tries=0
until curl -sf -o /dev/null "${post[@]}" "$url"; do
    tries=$((tries + 1))
    if ! kill -0 $pid 2>/dev/null || [ $tries -gt 20000 ]; then
        echo "server never answered $url:" >&2
        cat "$pidfile.log" >&2
        exit 1
    fi
done
kill $pid
