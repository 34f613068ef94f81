#!/bin/sh
# The cgroup v2 scenarios, run as PID 1 of the test VM on its tmpfs root (see mod.rs for the
# console protocol). This script only observes: it prints what the runtime answered and what
# the cgroup files say as `CG2-FACT <scenario> <key> <value>` lines, and the Rust tests in
# runtime/tests/cgroup_v2.rs judge them. The scenarios mirror the v1 host's tests in
# runtime/tests/limits.rs and ps_pause_update.rs.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
if ! mount -t cgroup2 cgroup2 /sys/fs/cgroup; then
  echo "CG2-ERROR mounting cgroup2 at /sys/fs/cgroup failed"
  reboot -f
fi
echo CG2-READY

SC=setup
fact() { echo "CG2-FACT $SC $*"; }
# lines KEY FILE: one fact per line of FILE, or "<missing>" when it cannot be read.
lines() {
  if [ -r "$2" ]; then
    while IFS= read -r l || [ -n "$l" ]; do fact "$1" "$l"; done <"$2"
  else
    fact "$1" "<missing>"
  fi
}
# val FILE KEY: the value of KEY in a flat-keyed cgroup file (memory.events, cpu.stat, ...).
val() { sed -n "s/^$2 //p" "$1" 2>/dev/null; }
# rt KEY ARGS...: run the runtime; facts KEY.rc, then KEY.out / KEY.err per output line.
# Fresh files per call: a created container's init inherits them and writes on, and a pipe
# would never reach EOF while it lives. `timeout`: a hung call fails alone (rc 124) instead of
# stopping every later scenario until the test's deadline.
n=0
rt() {
  k=$1
  shift
  n=$((n + 1))
  last_out=/tmp/rt.$n.out
  timeout 60 /bin/bulkhead-runtime --root /run/bh "$@" >$last_out 2>/tmp/rt.$n.err
  fact "$k.rc" $?
  lines "$k.out" /tmp/rt.$n.out
  [ -s /tmp/rt.$n.err ] && lines "$k.err" /tmp/rt.$n.err
}
# within TENTHS CMD...: retry CMD every 0.1 s until it succeeds, at most TENTHS times.
within() {
  w=$1
  shift
  until "$@"; do
    w=$((w - 1))
    [ "$w" -gt 0 ] || return 1
    sleep 0.1
  done
}
# has COMMAND: whether this runtime build has the subcommand.
has() { /bin/bulkhead-runtime "$1" --help >/dev/null 2>&1 && echo yes || echo no; }
exists() { [ -e "$1" ] && echo yes || echo no; }

# busybox names no cgroup2 type: the magic number, CGROUP2_SUPER_MAGIC.
fact fs_magic "$(stat -f -c %t /sys/fs/cgroup)"
fact controllers "$(cat /sys/fs/cgroup/cgroup.controllers)"
# Left empty on purpose: the runtime must enable what it needs in every ancestor itself.
fact subtree_control "$(cat /sys/fs/cgroup/cgroup.subtree_control)"
for c in pause resume update events; do fact "has_$c" "$(has $c)"; done

# memory: OOM-killed and visible (limits.rs memory_limit_oom_kills_and_says_so). Default
# placement: no cgroupsPath, so the group is <the caller's cgroup's parent>/<id> = /<id>.
SC=memory
rt run run --bundle /bundles/oom-run cg2-oom-run
fact run_left "$(exists /sys/fs/cgroup/cg2-oom-run)"
rt create create --bundle /bundles/oom cg2-oom
cg=/sys/fs/cgroup/cg2-oom
lines state.json /run/bh/cg2-oom/state.json
fact memory.max "$(cat $cg/memory.max)"
fact memory.swap.max "$(cat $cg/memory.swap.max)"
fact memory.low "$(cat $cg/memory.low)"
rt start start cg2-oom
oom_killed() { [ "$(val $cg/memory.events oom_kill)" -ge 1 ] 2>/dev/null; }
within 100 oom_killed
fact oom_wait_rc $?
lines memory.events $cg/memory.events
rt delete delete --force cg2-oom
fact left "$(exists $cg)"

# cpu: throttled, not killed (limits.rs cpu_quota_throttles_without_killing). An absolute,
# nested cgroupsPath: the runtime creates (and later removes) two parents and must enable the
# cpu controller in each of them.
SC=cpu
rt create create --bundle /bundles/cpu cg2-cpu
cg=/sys/fs/cgroup/bulkhead-v2/cpu/cg2-cpu
lines state.json /run/bh/cg2-cpu/state.json
fact cpu.max "$(cat $cg/cpu.max)"
fact cpu.weight "$(cat $cg/cpu.weight)"
fact cpuset.cpus "$(cat $cg/cpuset.cpus)"
fact cpuset.mems "$(cat $cg/cpuset.mems)"
fact hugetlb.2MB.max "$(cat $cg/hugetlb.2MB.max)"
rt start start cg2-cpu
pid=$(sed -n 's/.*"pid":\([0-9]*\).*/\1/p' /run/bh/cg2-cpu/state.json)
sleep 1.2
lines cpu.stat $cg/cpu.stat
fact proc_stat "$(cat /proc/$pid/stat)"
rt state state cg2-cpu
rt delete delete --force cg2-cpu
fact left "$(exists /sys/fs/cgroup/bulkhead-v2)"

# pids: a fork bomb stays bounded (limits.rs pids_limit_bounds_a_fork_bomb). A relative
# cgroupsPath: below the caller's cgroup's parent.
SC=pids
rt create create --bundle /bundles/pids cg2-pids
cg=/sys/fs/cgroup/cg2-pids-rel
lines state.json /run/bh/cg2-pids/state.json
fact pids.max "$(cat $cg/pids.max)"
rt start start cg2-pids
most=0
i=0
while [ $i -lt 100 ]; do
  cur=$(cat $cg/pids.current)
  [ "$cur" -gt "$most" ] && most=$cur
  [ "$(val $cg/pids.events max)" -gt 0 ] 2>/dev/null && break
  sleep 0.1
  i=$((i + 1))
done
fact most_current $most
lines pids.events $cg/pids.events
rt state state cg2-pids
# kill --all reaches every process of the group, the bomb's too, however fast it forks.
rt kill_all kill --all cg2-pids KILL
emptied() { [ "$(cat $cg/pids.current)" = 0 ]; }
within 50 emptied
fact pids_after_kill_all "$(cat $cg/pids.current)"
rt delete delete --force cg2-pids
fact left "$(exists $cg)"

# placement: the caller sits in a cgroup that holds processes (a login session's scope on a
# systemd host). v2 forbids controllers in a group with processes of its own, so the container
# goes beside the caller's group, as runc does. The container has its own cgroup namespace (in
# the default spec) and reports what it sees.
SC=placement
mkdir -p /sys/fs/cgroup/session/scope
(
  echo 0 >/sys/fs/cgroup/session/scope/cgroup.procs
  rt create create --bundle /bundles/placement cg2-place
  out=$last_out
  lines state.json /run/bh/cg2-place/state.json
  rt start start cg2-place
  # The container's output lands in the file `create` wrote to: its init inherited it.
  within 50 grep -q "^memory.max" $out
  lines container.out $out
  rt delete delete --force cg2-place
  # Asked for a group inside the busy one: v2 cannot give it a memory controller there.
  rt busy create --bundle /bundles/busy cg2-busy
)
fact busy_left "$(exists /sys/fs/cgroup/session/scope/cg2-busy)"
fact busy_state_left "$(exists /run/bh/cg2-busy)"
fact left "$(exists /sys/fs/cgroup/session/cg2-place)"
# busybox timeout's watchdog outlives the runtime by up to a second, in the scope.
within 30 rmdir /sys/fs/cgroup/session/scope 2>/dev/null
rmdir /sys/fs/cgroup/session

# devices: v2 has no devices.allow; the runtime attaches a BPF filter with the same rules.
SC=devices
rt run run --bundle /bundles/devices cg2-dev
rt run_allow run --bundle /bundles/devices-allow cg2-dev-allow

# freezer (ps_pause_update.rs pause_freezes_every_process_and_resume_thaws): a counter stops
# while paused and goes on after resume; cgroup.freeze and cgroup.events say so; the commands
# a paused container refuses; and a paused container still force-deletes (v2 lets SIGKILL
# through to frozen tasks).
SC=freezer
if [ "$(has pause)" = yes ]; then
  rt create create --bundle /bundles/counter cg2-pause
  rt start start cg2-pause
  cg=/sys/fs/cgroup/cg2-pause
  # -1: unlimited, in v2's words.
  fact memory.max "$(cat $cg/memory.max)"
  fact memory.swap.max "$(cat $cg/memory.swap.max)"
  fact pids.max "$(cat $cg/pids.max)"
  pid=$(sed -n 's/.*"pid":\([0-9]*\).*/\1/p' /run/bh/cg2-pause/state.json)
  # 0 when empty: the freezer may stop the loop between the truncate and the write.
  count() {
    c=$(cat /proc/$pid/root/dev/shm/count 2>/dev/null)
    echo "${c:-0}"
  }
  counting() { [ "$(count)" -ge 3 ]; }
  within 50 counting
  fact counting_rc $?
  rt resume_running resume cg2-pause
  rt pause pause cg2-pause
  fact cgroup.freeze "$(cat $cg/cgroup.freeze)"
  lines cgroup.events $cg/cgroup.events
  rt state_paused state cg2-pause
  fact proc_state "$(sed 's/^.*) \(.\).*/\1/' /proc/$pid/stat)"
  c1=$(count)
  sleep 0.3
  fact count_paused "$c1 $(count)"
  rt pause_twice pause cg2-pause
  rt exec_paused exec cg2-pause true
  rt delete_paused delete cg2-pause
  rt resume resume cg2-pause
  fact cgroup.freeze_resumed "$(cat $cg/cgroup.freeze)"
  lines cgroup.events_resumed $cg/cgroup.events
  rt state_resumed state cg2-pause
  advanced() { [ "$(count)" -gt "$c1" ]; }
  within 50 advanced
  fact advanced_rc $?
  rt pause_again pause cg2-pause
  rt delete delete --force cg2-pause
  fact left "$(exists $cg)"
fi

# stats, update, ps and the event stream on a running container (ps_pause_update.rs
# update_changes_limits_in_the_cgroup_files, events_stats_and_oom).
SC=stats
if [ "$(has events)" = yes ] && [ "$(has update)" = yes ]; then
  rt create create --bundle /bundles/idle cg2-stats
  rt start start cg2-stats
  cg=/sys/fs/cgroup/cg2-stats
  lines state.json /run/bh/cg2-stats/state.json
  rt events events --stats cg2-stats
  rt ps ps --format json cg2-stats
  # A whole CPU and less memory: the OOM below then comes quickly even under TCG.
  rt update update --memory 50331648 --pids-limit 48 --cpu-quota 100000 --cpu-period 100000 cg2-stats
  fact memory.max "$(cat $cg/memory.max)"
  fact pids.max "$(cat $cg/pids.max)"
  fact cpu.max "$(cat $cg/cpu.max)"
  # The stream: stats every interval, an oom event when an exec'd process (which joins the
  # container's group) is OOM-killed, and its end when the container stops.
  /bin/bulkhead-runtime --root /run/bh events --interval 200ms cg2-stats >/tmp/events.log 2>&1 &
  ev=$!
  sleep 0.5
  rt exec exec cg2-stats dd if=/dev/zero of=/dev/null bs=64M count=1
  sleep 0.4
  rt kill kill cg2-stats KILL
  ended() { ! kill -0 $ev 2>/dev/null; }
  within 100 ended || kill $ev
  wait $ev
  fact stream_rc $?
  lines stream /tmp/events.log
  rt delete delete cg2-stats
  fact left "$(exists $cg)"
fi

# view: the container's cgroupfs shows its own group as the root (pids.max where programs
# read it, no sibling's directory), read-only; with a cgroup namespace (cgroup2 mounted in
# it) and without one (a bind of its group). A sibling container lives meanwhile.
SC=view
rt sib create --bundle /bundles/view-sib cg2-view-sib
rt sib-start start cg2-view-sib
rt ns run --bundle /bundles/view-ns cg2-view-ns
rt nons run --bundle /bundles/view-nons cg2-view-nons
rt sib-delete delete --force cg2-view-sib

# The criterion benchmark's `cgroup` group (runtime/benches/create_phases.rs) on this v2
# hierarchy: the host is v1, so this is the one place its v2 path runs. Short settings: TCG
# makes each iteration tens of times slower, so the median says the path works under
# criterion; it is not what v2 costs on hardware (`cargo bench` on a v2 host measures that).
SC=bench
mkdir -p /tmp/criterion
CRITERION_HOME=/tmp/criterion timeout 150 /bin/create_phases --bench '^cgroup/' \
  --warm-up-time 0.2 --measurement-time 1 --sample-size 10 --noplot >/tmp/bench.out 2>&1
fact criterion.rc $?
lines out /tmp/bench.out
for f in /tmp/criterion/cgroup/*/new/estimates.json; do
  [ -r "$f" ] || continue
  id=${f#/tmp/criterion/cgroup/}
  fact "estimates.${id%%/*}" "$(cat "$f")"
done

# Nothing may be left: no group below the root, no state directory (the seccomp cache and the
# one spare state directory are kept on purpose).
SC=end
find /sys/fs/cgroup -mindepth 1 -type d >/tmp/cgroups
lines cgroups /tmp/cgroups
ls /run/bh 2>/dev/null | grep -vxe '@seccomp-cache' -e '@spare' >/tmp/states
lines states /tmp/states
echo CG2-DONE
reboot -f
