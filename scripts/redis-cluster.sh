#!/usr/bin/env bash
# A throwaway Redis Cluster on loopback (three masters, three replicas) for
# benchmarks and trying the shared store by hand; the tests start their own.
#   scripts/redis-cluster.sh start DIR [FIRST_PORT]   (ports FIRST_PORT..+5)
#   scripts/redis-cluster.sh stop DIR
set -euo pipefail
cmd=${1:?start or stop}
dir=${2:?directory}
port=${3:-7100}
case "$cmd" in
start)
    mkdir -p "$dir"
    nodes=()
    for i in 0 1 2 3 4 5; do
        p=$((port + i))
        mkdir -p "$dir/$p"
        redis-server --port "$p" --bind 127.0.0.1 --dir "$dir/$p" --save "" \
            --appendonly yes --appendfsync everysec --cluster-enabled yes \
            --cluster-config-file "$dir/$p/nodes.conf" --cluster-node-timeout 2000 \
            --repl-diskless-sync-delay 0 --daemonize yes --pidfile "$dir/$p/redis.pid" \
            --logfile "$dir/$p/redis.log"
        nodes+=("127.0.0.1:$p")
    done
    for p in $(seq "$port" $((port + 5))); do
        until redis-cli -p "$p" ping >/dev/null 2>&1; do sleep 0.1; done
    done
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >/dev/null
    until redis-cli -p "$port" cluster info | grep -q cluster_state:ok; do sleep 0.2; done
    echo "redis cluster on 127.0.0.1:$port..$((port + 5))"
    ;;
stop)
    for f in "$dir"/*/redis.pid; do
        [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
    done
    ;;
*)
    echo "usage: $0 start|stop DIR [FIRST_PORT]" >&2
    exit 64
    ;;
esac
