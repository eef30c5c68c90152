#!/usr/bin/env bash
# Through a real Postfix: no milter, a no-op milter, then sra-milter, in
# turn, ROUNDS times (the cost must not grow with the sender's history).
# smtp-source sends MESSAGES messages over SESSIONS sessions from one sender
# and one client IP (a hot sender, as any load test is); Postfix relays to
# smtp-sink. Prints messages/s, the milter's CPU per 1000 messages and its
# context switches per message.
#
#   scripts/postfix-bench.sh [MESSAGES] [SESSIONS] [ROUNDS] [tcp|unix] [noauth|auth]
#
# sra-milter runs with a fresh store in a temp dir; Postfix is a private
# instance on loopback. With `noauth` (the default) sra-milter runs with
# [auth] verify = false and smtp-source's own generated message. With `auth`
# every run sends one DKIM-signed message (examples/bench_mail.rs) and
# sra-milter checks SPF, DKIM and DMARC against a real DNS server on loopback
# (dnsmasq) serving the sender domain's records: the full per-message work.
# SRA_MILTER=PATH runs another build of the daemon (before/after figures).
# SRA_MILTER=noop runs a second no-op milter in sra-milter's place: the
# rounds then measure the bench's own noise (an identical milter's ratio).
# SRA_MILTER=noop+headers: a no-op that adds sra-milter's two headers
# (what adding them costs Postfix).
# ORDER=abba (the default) runs each round as none, then PAIRS times
# (default 2) no-op, sra, sra, no-op (every other time sra, no-op, no-op,
# sra), the milters' MESSAGES split evenly over their runs, and pools each
# milter's runs: a machine that slows or speeds up during a round (other
# guests on the host, CPU credit) then weighs on both alike, and neither
# milter always has the first and last places. Each run starts on a quiet
# machine (`settle`). ORDER=turn runs none, no-op, sra once each,
# whole.
# PERF_DIR=DIR records each run system-wide with `perf record -a` into
# DIR/NAME-ROUND-TIME.data; `perf report -i FILE --sort comm` then shows which
# process (Postfix's, the milter, the client) took the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
messages=${1:-1000}
sessions=${2:-10}
rounds=${3:-3}
transport=${4:-tcp}
auth=${5:-noauth}
case "$auth" in auth|noauth) ;; *) echo "postfix-bench: auth or noauth, not $auth" >&2; exit 2 ;; esac
. scripts/deps.sh
need_postfix
[ "$auth" = auth ] && need_packages dnsmasq-base
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sra-milter/target}"
cargo build --release --bin sra-milter --example noop_milter --example bench_mail >&2
bin="$CARGO_TARGET_DIR/release"

work=$(mktemp -d /tmp/sra-pfbench.XXXXXX)
chmod 0755 "$work"
pids=()
cleanup() {
    postfix -c "$work/etc" stop >/dev/null 2>&1 || true
    [ -f "$work/postfix-start.log" ] && cat "$work/postfix-start.log" >&2
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -n "${KEEP:-}" ] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT

# Four distinct free ports, held together while they are chosen.
read -r smtp_port sink_port sra_port noop_port < <(python3 -c '
import socket
s = [socket.socket() for _ in range(4)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
if [ "$transport" = unix ]; then
    mkdir -p "$work/spool/milter" && chmod 0777 "$work/spool/milter"
    sra_sock="unix:$work/spool/milter/sra.sock"; noop_sock="unix:$work/spool/milter/noop.sock"
    sra_pf="unix:$work/spool/milter/sra.sock"; noop_pf="unix:$work/spool/milter/noop.sock"
else
    sra_sock="inet:127.0.0.1:$sra_port"; noop_sock="inet:127.0.0.1:$noop_port"
    sra_pf="inet:127.0.0.1:$sra_port"; noop_pf="inet:127.0.0.1:$noop_port"
fi

# The relay behind Postfix.
# (With KEEP set, it also keeps what it received, in $work/dump.)
dump=()
[ -n "${KEEP:-}" ] && mkdir -p "$work/dump" && chmod 0777 "$work/dump" && dump=(-d "$work/dump/%M.")
smtp-sink -u postfix "${dump[@]}" "127.0.0.1:$sink_port" 256 &
pids+=($!)

# With auth: the signed message and a DNS server with its domain's records.
source_args=()
auth_conf="verify = false"
if [ "$auth" = auth ]; then
    "$bin/examples/bench_mail" "$work/message" >"$work/records"
    source_args=(-F "$work/message")
    txt=()
    while IFS=$'\t' read -r name value; do txt+=("--txt-record=$name,$value"); done <"$work/records"
    # A free port can be taken before dnsmasq binds it (UDP and TCP): a few
    # tries, each on a new port; up when it listens, and stop if it never is.
    dns_port=
    for _ in 1 2 3; do
        p=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        /usr/sbin/dnsmasq --keep-in-foreground --listen-address=127.0.0.1 --bind-interfaces \
            --no-resolv --no-hosts --local=/example/ --local=/arpa/ --local-ttl=3600 \
            --pid-file= --user=root --port="$p" "${txt[@]}" 2>>"$work/dnsmasq.log" &
        dns_pid=$!
        for _ in $(seq 50); do
            kill -0 "$dns_pid" 2>/dev/null || break
            if ss -Hlun "sport = :$p" | grep -q .; then
                sleep 0.2
                kill -0 "$dns_pid" 2>/dev/null && dns_port=$p
                break
            fi
            sleep 0.1
        done
        [ -n "$dns_port" ] && { pids+=("$dns_pid"); break; }
        kill "$dns_pid" 2>/dev/null || true
    done
    [ -n "$dns_port" ] || { echo "postfix-bench: dnsmasq did not start:" >&2; cat "$work/dnsmasq.log" >&2; exit 1; }
    auth_conf="verify = true
authserv_id = \"mx.example.com\"
[dns]
servers = [\"127.0.0.1:$dns_port\"]"
fi

# The milters.
cat >"$work/sra.toml" <<CONF
socket = "$sra_sock"
socket_mode = "0666"
state_dir = "$work/state"
enterprise_domains = ["example.com"]
internal_networks = []
[admin]
control_socket = "$work/control.sock"
[auth]
$auth_conf
[log]
level = "${SRA_LOG:-warn}"
CONF
if [ "${SRA_MILTER:-}" = noop ]; then
    "$bin/examples/noop_milter" "$sra_sock" &
elif [ "${SRA_MILTER:-}" = noop+headers ]; then
    "$bin/examples/noop_milter" "$sra_sock" headers &
else
    "${SRA_MILTER:-$bin/sra-milter}" run -c "$work/sra.toml" 2>"$work/sra.log" &
fi
sra_pid=$!
pids+=($sra_pid)
# NOOP_HEADERS=1: the yardstick adds sra-milter's two headers too, so the
# rounds compare the work alone.
"$bin/examples/noop_milter" "$noop_sock" ${NOOP_HEADERS:+headers} &
noop_pid=$!
pids+=($noop_pid)

# A private Postfix (its own main.cf and master.cf, smtpd not chrooted so
# that a unix milter socket outside the spool is reachable).
mkdir -p "$work/etc" "$work/spool/etc" "$work/data"
chown postfix "$work/data"
for f in localtime services resolv.conf hosts nsswitch.conf host.conf; do
    cp "/etc/$f" "$work/spool/etc/" 2>/dev/null || true
done
cat >"$work/etc/master.cf" <<CONF
127.0.0.1:$smtp_port inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
CONF
cat >"$work/etc/main.cf" <<CONF
compatibility_level = 3.6
queue_directory = $work/spool
data_directory = $work/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.example.com
mydomain = example.com
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = example.com
relayhost = [127.0.0.1]:$sink_port
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
maillog_file_prefixes = /var, /dev/stdout, /tmp
maillog_file = $work/maillog
disable_dns_lookups = yes
smtp_dns_support_level = disabled
alias_maps =
alias_database =
local_recipient_maps =
smtputf8_enable = no
smtpd_client_connection_count_limit = 0
smtpd_client_message_rate_limit = 0
milter_default_action = accept
milter_protocol = 6
smtpd_milters =
CONF
postfix -c "$work/etc" start >"$work/postfix-start.log" 2>&1 || { cat "$work/postfix-start.log" >&2; exit 1; }
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$smtp_port") 2>/dev/null && break
    sleep 0.1
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Minor page faults (memory the allocator gave back and takes again).
faults() { awk '{print $10}' "/proc/$1/stat"; }
# Context switches of all the process's threads (each wake-up costs the
# kernel's scheduler time that the CPU figure includes).
switches() { cat /proc/"$1"/task/*/status | awk '/ctxt_switches/ {n += $2} END {print n + 0}'; }
hz=$(getconf CLK_TCK)

# Until Postfix's queue is empty (every message relayed to the sink).
drain() {
    for _ in $(seq 600); do
        [ -z "$(find "$work/spool/incoming" "$work/spool/active" -type f 2>/dev/null | head -1)" ] && return 0
        sleep 0.1
    done
    echo "postfix-bench: the queue did not drain in 60 s" >&2
    exit 1
}

# Until the machine is quiet: the run before leaves work behind that
# smtp-source does not wait for (the files it queued being written out and
# removed, processes restarted by the reload), and whichever run comes next
# would pay for it. Written-out first, then at least 90 % idle over half a
# second (at most 30 s).
settle() {
    sync
    python3 - <<'PY'
import time
def busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)
deadline = time.time() + 30
while time.time() < deadline:
    b0, t0 = busy()
    time.sleep(0.5)
    b1, t1 = busy()
    if t1 > t0 and (b1 - b0) / (t1 - t0) <= 0.1:
        break
PY
}

run() { # NAME MILTER PID MESSAGES
    # smtp-source ends when Postfix has queued its mail, not delivered it:
    # the run before must not still be relaying while this one is timed
    # (nor be cut off by the reload: its mail would wait for a later
    # queue run).
    drain
    postconf -c "$work/etc" -e "smtpd_milters = $2"
    postfix -c "$work/etc" reload >/dev/null 2>&1
    sleep 1
    settle
    local before=0 after=0 sw0=0 sw1=0 pf0=0 pf1=0
    [ -n "$3" ] && before=$(cpu_ticks "$3") && sw0=$(switches "$3") && pf0=$(faults "$3")
    local start end
    local prof=()
    [ -n "${PERF_DIR:-}" ] && mkdir -p "$PERF_DIR" &&
        prof=(perf record -q -a -F 997 -o "$PERF_DIR/$1-$round-$(date +%s%N).data" --)
    start=$(date +%s.%N)
    "${prof[@]}" smtp-source -s "$sessions" -m "$4" -f carol@partner.example "${source_args[@]}" \
        -t alice@example.com "127.0.0.1:$smtp_port"
    end=$(date +%s.%N)
    [ -n "$3" ] && after=$(cpu_ticks "$3") && sw1=$(switches "$3") && pf1=$(faults "$3")
    python3 - "$1" "$start" "$end" "$before" "$after" "$hz" "$4" "$sw0" "$sw1" "$pf0" "$pf1" "$work/round" <<'PY'
import sys
name, start, end, before, after, hz, n, sw0, sw1, pf0, pf1, log = sys.argv[1:]
secs = float(end) - float(start)
with open(log, "a") as f:
    f.write(f"{name} {n} {secs}\n")
cpu = (int(after) - int(before)) / int(hz)
per = (
    f"{cpu / int(n) * 1000:.2f} s CPU per 1000, "
    f"{(int(sw1) - int(sw0)) / int(n):.1f} context switches and "
    f"{(int(pf1) - int(pf0)) / int(n):.1f} page faults per message"
    if name != "none"
    else ""
)
print(f"  {name:<10} {int(n) / secs:7.0f} msg/s  {per}")
PY
}

order=${ORDER:-abba}
case "$order" in abba|turn) ;; *) echo "postfix-bench: ORDER is abba or turn, not $order" >&2; exit 2 ;; esac
pairs=${PAIRS:-2}
case "$pairs" in [1-9]|[1-9][0-9]) ;; *) echo "postfix-bench: PAIRS is 1..99, not $pairs" >&2; exit 2 ;; esac
part=$((messages / (2 * pairs)))
[ "$order" = turn ] || [ "$part" -ge 1 ] || { echo "postfix-bench: $messages messages cannot make $pairs pairs of runs" >&2; exit 2; }
echo "postfix-bench: $messages messages x $sessions sessions, $transport, $auth, $rounds rounds, $order"
[ "$order" = abba ] && echo "  (each milter: $pairs x 2 runs of $part messages a round)"
for round in $(seq "$rounds"); do
    echo "round $round"
    : >"$work/round"
    run none "" "" "$messages"
    if [ "$order" = abba ]; then
        for pair in $(seq "$pairs"); do
            # no-op, sra, sra, no-op; then sra, no-op, no-op, sra: each
            # milter takes the first, the middle and the last places alike
            # (with one pair a round, from one round to the next).
            if [ $(((round + pair) % 2)) = 0 ]; then a=noop b=sra; else a=sra b=noop; fi
            for name in "$a" "$b" "$b" "$a"; do
                if [ "$name" = noop ]; then
                    run noop "$noop_pf" "$noop_pid" "$part"
                else
                    run sra "$sra_pf" "$sra_pid" "$part"
                fi
            done
        done
    else
        run noop "$noop_pf" "$noop_pid" "$messages"
        run sra "$sra_pf" "$sra_pid" "$messages"
    fi
    python3 - "$work/round" <<'PY'
import sys
total = {}
for line in open(sys.argv[1]):
    name, n, secs = line.split()
    m, s = total.get(name, (0, 0.0))
    total[name] = (m + int(n), s + float(secs))
rate = {k: m / s for k, (m, s) in total.items()}
print(f"  round: noop {rate['noop']:.0f} msg/s, sra {rate['sra']:.0f} msg/s, "
      f"sra / noop {rate['sra'] / rate['noop']:.2f}")
PY
done
case "${SRA_MILTER:-}" in noop|noop+headers) daemon=no ;; *) daemon=yes ;; esac
if [ "$auth" = auth ] && [ "$daemon" = yes ]; then
    # What sra-milter made of the signed message: authenticated mail builds
    # the sender's history; if it did not, the runs measured less than the
    # full work and say so.
    seen=$("$bin/sra-milter" explain -c "$work/sra.toml" --sender carol@partner.example | sed -n 1,3p)
    echo "$seen"
    if grep -q "never seen" <<<"$seen"; then
        echo "postfix-bench: the signed message did not authenticate (see $work/dnsmasq.log)" >&2
        exit 1
    fi
fi
