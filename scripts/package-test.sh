#!/usr/bin/env bash
# Builds the packages, installs the .deb on this Debian machine and checks it
# as an administrator would; checks the .rpm's metadata and contents. Leaves
# the machine as it found it (the package is purged at the end).
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
need_packages rpm python3
./scripts/package.sh >/tmp/sra-milter-package.log 2>&1 || { cat /tmp/sra-milter-package.log; echo "package: build failed"; exit 1; }
deb=$(ls target/packages/sra-milter_*.deb | tail -n1)
rpmf=$(ls target/packages/sra-milter-*.rpm | tail -n1)

passed=0
failed=0
check() {
    local what="$1"
    shift
    if "$@" >/tmp/sra-milter-check.log 2>&1; then
        echo "package check $what ... ok"
        passed=$((passed + 1))
    else
        echo "package check $what ... FAILED"
        sed 's/^/    /' /tmp/sra-milter-check.log | tail -20
        failed=$((failed + 1))
    fi
}

# A previous run's leftovers.
dpkg --purge sra-milter >/dev/null 2>&1 || true

check "dpkg -i installs" dpkg -i "$deb"
check "the sra-milter user exists" getent passwd sra-milter
check "the conffile is in place, root:sra-milter 0640" \
    sh -c 'test "$(stat -c %U:%G:%a /etc/sra-milter/sra-milter.toml)" = root:sra-milter:640'
check "dpkg knows the conffile" sh -c "dpkg-query -W -f='\${Conffiles}' sra-milter | grep -q /etc/sra-milter/sra-milter.toml"
check "the state directory is 0750 sra-milter" \
    sh -c 'test "$(stat -c %U:%a /var/lib/sra-milter)" = sra-milter:750'
check "check-config passes on the packaged config" \
    runuser -u sra-milter -- /usr/sbin/sra-milter check-config -c /etc/sra-milter/sra-milter.toml
check "the packaged config is monitor-only" \
    sh -c '/usr/sbin/sra-milter check-config -c /etc/sra-milter/sra-milter.toml | grep -q "^mode = \"monitor\""'
check "man pages are installed" test -f /usr/share/man/man8/sra-milter.8.gz -a -f /usr/share/man/man5/sra-milter.toml.5.gz
check "README and LICENSE are in the doc dir" test -f /usr/share/doc/sra-milter/README.md -a -f /usr/share/doc/sra-milter/LICENSE
check "the systemd unit is installed" test -f /usr/lib/systemd/system/sra-milter.service
if command -v systemd-analyze >/dev/null; then
    check "systemd-analyze verify" systemd-analyze verify /usr/lib/systemd/system/sra-milter.service
    systemd-analyze security --offline=true /usr/lib/systemd/system/sra-milter.service 2>/dev/null | tail -n 1 | sed 's/^/package: /'
else
    echo "package: systemd-analyze not available here; unit verification not run"
fi

# The daemon, as the service user, on the packaged socket.
# setpriv execs the daemon itself (runuser would fork), so $! is its pid.
setpriv --reuid=sra-milter --regid=sra-milter --init-groups \
    /usr/sbin/sra-milter run -c /etc/sra-milter/sra-milter.toml >/tmp/sra-milter-pkg-run.log 2>&1 &
pid=$!
probe() {
    python3 - <<'PY'
import socket, struct, time
for _ in range(100):
    try:
        s = socket.create_connection(("127.0.0.1", 8894), timeout=2)
        break
    except OSError:
        time.sleep(0.1)
else:
    raise SystemExit("no listener on 127.0.0.1:8894")
def send(cmd, data=b""):
    s.sendall(struct.pack(">I", len(data) + 1) + cmd + data)
def recv():
    n = struct.unpack(">I", s.recv(4))[0]
    buf = b""
    while len(buf) < n:
        buf += s.recv(n - len(buf))
    return buf
send(b"O", struct.pack(">III", 6, 0x1FF, 0x1FFFFF))
r = recv()
assert r[:1] == b"O", r
send(b"C", b"mx.partner.example\0" + b"4" + struct.pack(">H", 25) + b"192.0.2.10\0")
r = recv()
assert r[:1] == b"c", r
send(b"Q")
print("milter answered negotiate and connect")
PY
}
check "the daemon runs as sra-milter and answers a milter connection" probe
check "it runs as the sra-milter user" sh -c "test \"\$(ps -o user= -p $pid)\" = sra-milter"
kill -TERM "$pid"
check "SIGTERM stops it with status 0" wait "$pid"

echo "# edited by the package test" >>/etc/sra-milter/sra-milter.toml
check "dpkg -r removes the package" dpkg -r sra-milter
check "remove keeps the conffile" test -f /etc/sra-milter/sra-milter.toml
check "remove keeps the state" test -d /var/lib/sra-milter
check "dpkg --purge purges" dpkg --purge sra-milter
check "purge removes the conffile" test ! -e /etc/sra-milter/sra-milter.toml
check "purge removes the state" test ! -e /var/lib/sra-milter
check "purge removes the user" sh -c '! getent passwd sra-milter'

# The .rpm: metadata and the same contents.
check "rpm -qpi names the package and licence" sh -c "rpm -qpi '$rpmf' | grep -q 'GPL-3.0-or-later'"
for f in /usr/sbin/sra-milter /etc/sra-milter/sra-milter.toml /usr/lib/systemd/system/sra-milter.service \
    /usr/lib/sysusers.d/sra-milter.conf /usr/share/man/man8/sra-milter.8 /usr/share/man/man5/sra-milter.toml.5 \
    /usr/share/doc/sra-milter/README.md /usr/share/doc/sra-milter/LICENSE; do
    check "rpm -qpl lists $f" sh -c "rpm -qpl '$rpmf' | grep -qx '$f'"
done
check "the rpm marks the config %config(noreplace)" sh -c "rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' '$rpmf' | grep -q '^cn /etc/sra-milter/sra-milter.toml'"
check "the rpm creates the user before install" sh -c "rpm -qp --scripts '$rpmf' | grep -q 'useradd -r'"

echo "package: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
