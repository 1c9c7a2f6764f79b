#!/usr/bin/env bash
# The deployment under a real systemd: a minimal Debian 12 root (debootstrap, cached in
# .nspawn-cache/), the `make dist` tarball installed into it with Deploy/install.sh --artifact, booted
# with systemd-nspawn -b, and checked from outside:
#
#   1. the unit reaches active (READY=1 after the models load) with its STATUS= line; the binary
#      runs with no Swift toolchain in the root; /openapi.yaml and the models are found
#   2. a job over HTTP (the container shares the host's network; a free loopback port); its state
#      lies in the DynamicUser directory /var/lib/private/rind, owned by a dynamic uid
#   3. `systemctl stop` drains: a running job (held by the test-only --test-hang-at-step) and two
#      queued ones are persisted as queued; `systemctl start` finishes all three
#   4. kill -9 of the main process: Restart=on-failure brings it back and no job is lost
#   5. the watchdog: an idle daemon is fed and stays up; a daemon whose worker hangs with a job is
#      no longer fed, systemd kills and restarts it, and the job finishes after the hang is removed
#   6. the journal has no errors from the sandbox (thread priority, seccomp, mounts)
#
# Exit status: 0 passed, 1 failed, 77 skipped (not root, no systemd-nspawn/debootstrap, or nspawn
# cannot run a container here; the reason is printed).
#   RIND_ARTIFACT=dist/rind-….tar.gz   use this tarball instead of running scripts/dist.sh
#   BOOT_TEST_KEEP=1                   keep the booted root (.nspawn-cache/run-*) for a look
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
started=$SECONDS
say() { printf 'boot-test: [%4ds] %s\n' $((SECONDS - started)) "$*"; }
skip() { echo "boot-test: SKIP: $*"; exit 77; }

[ "$(uname -s)" = Linux ] || skip "not Linux"
[ "$(id -u)" -eq 0 ] || skip "needs root (debootstrap and systemd-nspawn)"
for tool in debootstrap systemd-nspawn nsenter curl python3; do
    command -v "$tool" >/dev/null || skip "$tool is not installed (scripts/bootstrap.sh --test installs it)"
done

cache="$repo/.nspawn-cache"
packages="systemd,systemd-sysv,dbus,libopenblas0-pthread,libpng16-16,libmicrohttpd12,curl"
base="$cache/bookworm-base"
mkdir -p "$cache"

# --- The base root, made once and reused ---------------------------------------------------------
if [ ! -f "$base/.complete" ] || [ "$(cat "$base/.complete")" != "$packages" ]; then
    mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)\/*$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
    mirror=${mirror:-http://deb.debian.org/debian}
    say "debootstrap bookworm from $mirror (cached in $base)"
    fresh="$base.tmp-$$"   # per run, so two runs at once do not write into one root
    rm -rf "$fresh"
    if ! debootstrap --variant=minbase --include="$packages" bookworm "$fresh" "$mirror" > "$fresh.log" 2>&1; then
        tail -20 "$fresh.log"
        echo "boot-test: FAIL: debootstrap failed (log: $fresh.log)"
        exit 1
    fi
    rm -f "$fresh.log"
    echo "$packages" > "$fresh/.complete"
    rm -rf "$base" && mv "$fresh" "$base"
    say "base root ready"
fi

# --- The artifact ----------------------------------------------------------------------------------
tarball=${RIND_ARTIFACT:-}
if [ -z "$tarball" ]; then
    say "make dist"
    tarball=$(bash scripts/dist.sh | tail -1)
fi
[ -f "$tarball" ] && [ -f "$tarball.sha256" ] || { echo "boot-test: FAIL: no artifact $tarball(.sha256)"; exit 1; }

# --- A fresh copy of the root per run --------------------------------------------------------------
root="$cache/run-$$"
machine="rind-boot-$$"
nspawn_pid=""
leader=""
cleanup() {
    local status=$?
    if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
        [ -n "$leader" ] && inside systemctl poweroff >/dev/null 2>&1 || true
        for _ in $(seq 1 60); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.5; done
        kill -KILL "$nspawn_pid" 2>/dev/null || true
        wait "$nspawn_pid" 2>/dev/null || true
    fi
    if [ "${BOOT_TEST_KEEP:-}" = 1 ]; then echo "boot-test: root kept in $root"; else rm -rf "$root" "$root.console" "$root.png"; fi
    exit $status
}
trap cleanup EXIT
rm -rf "$root"
cp -a "$base" "$root"

say "install $(basename "$tarball") with DESTDIR (checksum verified by install.sh)"
DESTDIR="$root" bash Deploy/install.sh --artifact "$tarball"
[ ! -e "$root/opt/swift" ] && [ ! -e "$root/usr/bin/swift" ] || { echo "boot-test: FAIL: a Swift toolchain is in the root"; exit 1; }
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# One worker, so that jobs queue behind a held one; the BLAS threads are left to rind, which counts
# the cores it may use (checked below: ProcSubset=pid hides most of /proc from it).
base_options="--workers 1 --drain-seconds 2"
configure() {   # $1: extra flags for RIND_OPTIONS
    printf 'RIND_HOST=127.0.0.1\nRIND_PORT=%s\nRIND_OPTIONS=%s\n' "$port" "$base_options${1:+ $1}" > "$root/etc/default/rind"
}
configure ""
systemctl --root="$root" enable rind.service >/dev/null 2>&1
[ -L "$root/etc/systemd/system/multi-user.target.wants/rind.service" ] || { echo "boot-test: FAIL: could not enable rind.service"; exit 1; }

# --- Can nspawn run a container here at all? -------------------------------------------------------
nspawn=(systemd-nspawn --quiet --register=no --keep-unit -D "$root")
if ! probe=$("${nspawn[@]}" --machine="$machine-probe" /bin/true 2>&1); then
    skip "systemd-nspawn cannot start a container here: $probe"
fi

# --- Boot -------------------------------------------------------------------------------------------
say "boot: systemd-nspawn -D $root -b (port $port)"
"${nspawn[@]}" --machine="$machine" --console=passive -b > "$root.console" 2>&1 < /dev/null &
nspawn_pid=$!
for _ in $(seq 1 200); do
    for child in $(ps -o pid= --ppid "$nspawn_pid" 2>/dev/null); do
        [ "$(cat "/proc/$child/comm" 2>/dev/null)" = systemd ] && leader=$child
    done
    [ -n "$leader" ] && break
    kill -0 "$nspawn_pid" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$leader" ]; then
    cat "$root.console"
    echo "boot-test: FAIL: the container's systemd did not start"
    exit 1
fi

inside() {
    nsenter -t "$leader" -m -u -i -n -p -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin SYSTEMD_PAGER=cat \
        SYSTEMD_COLORS=0 LANG=C.UTF-8 "$@"
}
fail() {
    echo "boot-test: FAIL: $*"
    echo "---- systemctl status rind"
    inside systemctl status --no-pager --lines=0 rind 2>&1 || true
    echo "---- journalctl -u rind (last 60)"
    inside journalctl --no-pager -u rind -n 60 2>&1 || true
    exit 1
}
prop() { inside systemctl show rind -p "$1" --value; }
# (Output is read whole before grep: `grep -q` in a pipe under pipefail fails when the writer gets SIGPIPE.)
journal_has() {   # journal_has TEXT [journalctl options]: rind's journal contains TEXT
    local text=$1; shift
    grep -qF "$text" <<<"$(inside journalctl -u rind -o cat --no-pager "$@")"
}
url="http://127.0.0.1:$port"
json() {   # json URL PYTHON-EXPR (on `j`)
    curl -sf "$1" | python3 -c "import json, sys; j = json.load(sys.stdin); print($2)"
}
submit() {   # prints the new job's id
    curl -sf -X POST "$url/generate?class=207&steps=4&guidance=0&preview_every=0&seed=$1" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])'
}
wait_for() {   # wait_for SECONDS DESCRIPTION COMMAND...
    local limit=$1 what=$2; shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || fail "$what: not within ${limit}s"
        sleep 0.2
    done
}
status_is() { [ "$(json "$url/jobs/$1" 'j["status"]')" = "$2" ]; }
held() { [ "$(json "$url/jobs/$1" 'j["status"] + " " + str(j["progress"]["step"])')" = "running 1" ]; }
active() { [ "$(prop ActiveState)" = active ]; }
record_status() {   # the job's status on disk, read from the host
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["status"])' \
        "$root/var/lib/private/rind/jobs/$1/job.json"
}

wait_for 120 "the container's system manager came up" inside systemctl is-system-running --wait

# 1. READY, status line, no toolchain -----------------------------------------------------------------
say "1. unit active (Type=notify: READY=1 after the models load)"
wait_for 180 "rind.service active" active
[ "$(prop Type)" = notify ] || fail "Type is $(prop Type)"
status=$(prop StatusText)
# Every bundled model the artifact ships (checkpoints/*/config.json) is served.
models=$(ls "$repo"/checkpoints/*/config.json | wc -l)
[ "$status" = "serving $models model(s) on port $port" ] || fail "status line: '$status' (expected $models models)"
ready_line=$(inside journalctl -u rind -o cat --no-pager | grep -m1 'ready$' | sed 's/^.*rind: //')
say "   status: $status; $ready_line"
grep -qF "plan=1 batch slot(s), $(nproc) matrix thread(s)" <<<"$ready_line" ||
    fail "rind did not see the $(nproc) cores under the unit's sandbox: $ready_line"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$url/readyz")" = 200 ] || fail "/readyz is not 200"
libraries=$(inside ldd /usr/local/bin/rind)
grep -q "not found\|libswift" <<<"$libraries" && fail "the binary needs libraries the root lacks: $libraries"
[ "$(curl -sf "$url/openapi.yaml" | head -c 8)" = "openapi:" ] || fail "/openapi.yaml not served (looked up from /proc/self/exe)"
curl -sf "$url/" | grep -q "<title>rind</title>" || fail "/ does not serve the page (share/rind/web, looked up from /proc/self/exe)"
[ "$(json "$url/models" 'j["default_model"]')" = imagenet64 ] || fail "/models does not name imagenet64 the default model"

# 2. A job over HTTP, state in the DynamicUser directory -----------------------------------------------
say "2. a job over HTTP"
job=$(submit 7)
wait_for 300 "job $job succeeded" status_is "$job" succeeded
curl -sf -o "$root.png" "$url/jobs/$job/image.png"
size=$(python3 -c 'import struct, sys; d = open(sys.argv[1], "rb").read(24); assert d[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"; print("%dx%d" % struct.unpack(">II", d[16:24]))' "$root.png") ||
    fail "image.png is not a PNG"
[ "$size" = 64x64 ] || fail "image.png is $size, not 64x64 (class=207 goes to the default model, imagenet64)"
[ -L "$root/var/lib/rind" ] && [ "$(readlink "$root/var/lib/rind")" = private/rind ] || fail "/var/lib/rind is not the DynamicUser link to private/rind"
[ -f "$root/var/lib/private/rind/jobs/$job/job.json" ] && [ -f "$root/var/lib/private/rind/jobs/$job/image-0.png" ] ||
    fail "the job's files are not in /var/lib/private/rind/jobs/$job"
owner=$(stat -c %u "$root/var/lib/private/rind/jobs/$job/job.json")
[ "$owner" -ge 61184 ] && [ "$owner" -le 65519 ] || fail "job.json is owned by uid $owner, not a dynamic user"
mode=$(stat -c %a "$root/var/lib/private/rind/jobs/$job/job.json")
say "   job $job succeeded ($size PNG); state owned by dynamic uid $owner, job.json mode $mode"

# 3. systemctl stop drains and requeues; start finishes -----------------------------------------------
say "3. systemctl stop with one job held running and two queued"
configure "--test-hang-at-step 1"
inside systemctl restart rind
wait_for 180 "rind.service active again" active
a=$(submit 11); b=$(submit 12); c=$(submit 13)
wait_for 120 "job $a held at step 1" held "$a"
status_is "$b" queued && status_is "$c" queued || fail "jobs $b $c are not queued behind the held one"
stop_mark=$(inside date '+%Y-%m-%d %H:%M:%S')
inside systemctl stop rind
[ "$(prop ActiveState)" = inactive ] && [ "$(prop Result)" = success ] && [ "$(prop ExecMainStatus)" = 0 ] ||
    fail "stop: ActiveState=$(prop ActiveState) Result=$(prop Result) ExecMainStatus=$(prop ExecMainStatus)"
for id in $a $b $c; do
    [ "$(record_status "$id")" = queued ] || fail "job $id is $(record_status "$id") on disk after the stop, not queued"
done
journal_has "persisted as queued" --since "$stop_mark" ||
    fail "the journal does not show the running job persisted as queued"
configure ""
inside systemctl start rind
for id in $a $b $c; do wait_for 300 "job $id succeeded after the start" status_is "$id" succeeded; done
say "   stop drained (exit 0, 3 jobs queued on disk), start finished all 3"

# 4. kill -9: Restart=on-failure, no job lost ----------------------------------------------------------
say "4. kill -9 of the main process with one job held running and one queued"
configure "--test-hang-at-step 1"
inside systemctl restart rind
wait_for 180 "rind.service active again" active
d=$(submit 21); e=$(submit 22)
wait_for 120 "job $d held at step 1" held "$d"
configure ""   # the restart reads /etc/default/rind again
restarts=$(prop NRestarts)
main=$(prop MainPID)
inside bash -c 'kill -9 "$1"' kill "$main"
restarted() { [ "$(prop NRestarts)" -gt "$restarts" ] && active && [ "$(prop MainPID)" != "$main" ]; }
wait_for 180 "systemd restarted rind after kill -9" restarted
for id in $d $e; do wait_for 300 "job $id succeeded after the restart" status_is "$id" succeeded; done
journal_has "status=9/KILL" || fail "the journal does not show the SIGKILL"
say "   restarted by systemd (NRestarts $restarts -> $(prop NRestarts)), both jobs finished"

# 5. The watchdog is fed from progress -----------------------------------------------------------------
say "5. watchdog: WatchdogSec=4 for the test; idle daemon stays up, a hung worker gets it restarted"
mkdir -p "$root/etc/systemd/system/rind.service.d"
printf '[Service]\nWatchdogSec=4\n' > "$root/etc/systemd/system/rind.service.d/boot-test.conf"
inside systemctl daemon-reload
inside systemctl restart rind
wait_for 180 "rind.service active again" active
restarts=$(prop NRestarts)
sleep 12   # three watchdog timeouts with nothing to run: the feeding must go on
active && [ "$(prop NRestarts)" = "$restarts" ] || fail "an idle daemon was restarted by the watchdog"
long=$(curl -sf -X POST "$url/generate?class=281&steps=60&guidance=0&preview_every=0&seed=30" |
       python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
wait_for 600 "job $long succeeded" status_is "$long" succeeded
[ "$(prop NRestarts)" = "$restarts" ] || fail "a daemon making progress was restarted by the watchdog"
say "   idle 12 s and a 60-step job of $(json "$url/jobs/$long" '"%.1f" % j["progress"]["elapsed_s"]') s: fed, no restart"
configure "--test-hang-at-step 1"
inside systemctl restart rind
wait_for 180 "rind.service active again" active
restarts=$(prop NRestarts)
f=$(submit 31)
wait_for 120 "job $f held at step 1" held "$f"
watchdog_mark=$(inside date '+%Y-%m-%d %H:%M:%S')
fired() { [ "$(prop NRestarts)" -gt "$restarts" ] && journal_has "Watchdog timeout" --since "$watchdog_mark"; }
wait_for 60 "the watchdog restarted the hung daemon" fired
configure ""
wait_for 300 "job $f succeeded once the hang was gone" status_is "$f" succeeded
journal_has "not feeding the watchdog" || fail "the daemon did not log the stall"
rm -rf "$root/etc/systemd/system/rind.service.d"
inside systemctl daemon-reload
say "   watchdog fired on the hung worker (NRestarts $restarts -> $(prop NRestarts)); job $f finished after"

# 6. The sandbox is quiet --------------------------------------------------------------------------------
say "6. journal"
journal=$(inside journalctl -u rind -o cat --no-pager)
for noise in "Operation not permitted" "Permission denied" "Bad system call" "Failed to adjust resource limit"; do
    if grep -q "$noise" <<<"$journal"; then
        grep -m3 "$noise" <<<"$journal"
        fail "the journal shows '$noise'"
    fi
done
# libdispatch's thread-priority line goes away with LimitNICE=-4 (see rind.service), which systemd
# can apply only where it holds CAP_SYS_RESOURCE; some sandboxes withhold that capability even from
# root, and then the kernel keeps RLIMIT_NICE at 0 and the line stays.
main=$(prop MainPID)
nice_limit=$(inside cat "/proc/$main/limits" | awk '/^Max nice priority/ {print $4}')
priority_lines=$(grep -c "Failed to set thread priority" <<<"$journal" || true)
if [ "$nice_limit" = 24 ]; then
    [ "$priority_lines" = 0 ] || fail "LimitNICE=-4 applied, yet the journal shows $priority_lines thread-priority lines"
    say "   RLIMIT_NICE 24 (LimitNICE=-4) applied; no thread-priority lines"
else
    say "   NOTE: RLIMIT_NICE is $nice_limit, not 24: systemd could not apply LimitNICE=-4 here" \
        "($(grep CapBnd /proc/self/status | tr -s '\t' ' '), CAP_SYS_RESOURCE is bit 24), so libdispatch's" \
        "'Failed to set thread priority' line shows $priority_lines times; not checked"
fi
say "PASS in ${SECONDS}s"
