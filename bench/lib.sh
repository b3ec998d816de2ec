# bench/lib.sh — helpers for scripts/bench (source it, do not run it). Adapted from the project's
# shared SIPp harness: same scenarios, same result columns, plus CPU accounting per process and a
# pass/fail verdict per ladder step.
#
# Everything talks to 127.0.0.1 (and 127.0.0.11, the UAC's second loopback address) only. Every
# process started is recorded by PID and stopped by that PID, never by name. Every sipp run is
# bounded by -m (call count), -timeout and an outer `timeout`.

set -u
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${OUT:-/tmp/callgate-bench}"
RESULTS="${RESULTS:-$OUT/results.tsv}"
UAS_PORT="${UAS_PORT:-5080}"
UAC_PORT="${UAC_PORT:-5060}"
SUT_PORT="${SUT_PORT:-5070}"
# The UAC calls from 127.0.0.11 (callgate's PBX extension address) and dials a number the
# extension's outbound rule matches; the direct and Kamailio runs use the same UAC settings.
UAC_IP="${UAC_IP:-127.0.0.11}"
UAC_EXTRA="${UAC_EXTRA:--s 3125559999}"
# abortunexp off: a late 180 after the 200 (multi-process proxy) is ignored, as a real UA does;
# a call that really gets stuck still fails on the 10 s receive timeout.
UAC_FLAGS="${UAC_FLAGS:--default_behaviors all,-abortunexp -recv_timeout 10000}"
SIPP_BUF="${SIPP_BUF:-4194304}"          # sipp -buff_size (SO_RCVBUF/SO_SNDBUF)
CLK_TCK="$(getconf CLK_TCK)"
NCPU="$(nproc)"
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true  # sipp wants many fds for held calls

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" | tee -a "$OUT/bench.log" >&2; }

# stop_pid PID — SIGTERM one PID, wait up to 5 s, then SIGKILL that same PID.
stop_pid() {
  local pid="$1" i
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || return 0
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null && log "note: PID $pid ($(cat /proc/$pid/comm 2>/dev/null)) ignored SIGTERM for 5 s; killed"
  # Wait until it is gone: the next component binds the same ports.
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  return 0
}

# start_uas TAG — sipp UAS on 127.0.0.1:$UAS_PORT in the background (-bg forks and prints
# "PID=[n]"); sets UAS_PID.
start_uas() {
  local tag="$1" line
  line=$(cd "$OUT" && timeout 10 sipp -sf "$BENCH_DIR/uas.xml" -i 127.0.0.1 -p "$UAS_PORT" -nostdin -bg \
           -buff_size "$SIPP_BUF" -trace_stat -stf "$OUT/$tag-uas.csv" -fd 1 2>&1 | grep -o 'PID=\[[0-9]*\]')
  UAS_PID=$(echo "$line" | tr -dc 0-9)
  [ -n "$UAS_PID" ] || { log "UAS failed to start"; return 1; }
  sleep 0.5
}

# csv_last FILE COLUMN — value of a named column in the last line of a sipp -trace_stat CSV.
csv_last() {
  awk -F';' -v col="$2" 'NR==1{for(i=1;i<=NF;i++) if($i==col) c=i} END{print $c+0}' "$1" 2>/dev/null
}

# udp_drops — kernel-wide UDP RcvbufErrors (datagrams dropped because a socket buffer was full).
udp_drops() { awk '/^Udp:/{n++; if(n==1) for(i=1;i<=NF;i++) h[i]=$i; else for(i=1;i<=NF;i++) if(h[i]=="RcvbufErrors") print $i}' /proc/net/snmp; }

# cpu_ticks PID... — utime+stime (clock ticks) summed over PIDs (a dead PID counts 0).
cpu_ticks() {
  local p s=0 v
  for p in "$@"; do
    v=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)
    s=$((s + ${v:-0}))
  done
  echo "$s"
}
# machine_ticks — "busy total" jiffies of all CPUs from /proc/stat.
machine_ticks() { awk '/^cpu /{b=$2+$3+$4+$7+$8+$9; t=b+$5+$6; print b, t}' /proc/stat; }
rss_kb() { awk '/^VmRSS:/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# SUT_PIDS: PIDs of the system under test for CPU accounting (set by the caller; empty = none).
SUT_PIDS="${SUT_PIDS:-}"

# run_uac TAG TARGET RATE CALLS HOLD_MS [extra sipp args] — run the UAC in the foreground, then
# print (and append to $RESULTS) one line:
#   tag target rate calls ok failed retrans unexp udp_drops wall_s achieved_cps
#   cpu_uac% cpu_uas% cpu_sut% cpu_machine%
# achieved_cps = calls / wall time of the sipp process (start-up is ~0.1 s); CPU figures are % of
# one core over that wall time (precise: the kernel scales them from scheduler run time);
# cpu_machine is the whole machine from /proc/stat (max NCPU*100, neighbours included), tick-sampled,
# so it under-counts bursty processes such as sipp: read it as a hint of neighbour load only.
run_uac() {
  local tag="$1" target="$2" rate="$3" calls="$4" hold="$5"; shift 5
  local csv="$OUT/$tag-uac.csv" tmo=$(( calls / rate + hold / 1000 + 30 ))
  rm -f "$csv"
  local d0 t0 u0 s0 m0 d1 t1 u1 s1 m1
  d0=$(udp_drops); u0=$(cpu_ticks ${UAS_PID:-}); s0=$(cpu_ticks $SUT_PIDS); m0=$(machine_ticks)
  t0=$(date +%s.%N)
  # `times` in the subshell prints the CPU its children (timeout + sipp) used.
  (cd "$OUT" && timeout $((tmo + 15)) sipp -sf "${UAC_XML:-$BENCH_DIR/uac.xml}" "$target" -i "$UAC_IP" -p "$UAC_PORT" \
      -r "$rate" -m "$calls" -d "$hold" -l "${UAC_LIMIT:-20000}" -nostdin -buff_size "$SIPP_BUF" \
      -trace_stat -stf "$csv" -fd 1 -trace_screen -screen_file "$OUT/$tag-uac-screen.log" \
      -timeout "${tmo}s" $UAC_FLAGS $UAC_EXTRA "$@" >"$OUT/$tag-uac.out" 2>&1; times >"$OUT/$tag-uac.times")
  t1=$(date +%s.%N)
  d1=$(udp_drops); u1=$(cpu_ticks ${UAS_PID:-}); s1=$(cpu_ticks $SUT_PIDS); m1=$(machine_ticks)
  local wall ok failed retrans unexp uac_cpu line
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')
  ok=$(csv_last "$csv" 'SuccessfulCall(C)')
  failed=$(csv_last "$csv" 'FailedCall(C)')
  retrans=$(csv_last "$csv" 'Retransmissions(C)')
  unexp=$(awk '/Statistics Screen/{exit} /<----------|Pause \[/{s+=$NF} END{print s+0}' "$OUT/$tag-uac-screen.log" 2>/dev/null)
  # second line of `times`: children's user and system time, e.g. "0m1.250s 0m0.310s"
  uac_cpu=$(awk 'NR==2{split($1,a,/[ms]/); split($2,b,/[ms]/); print a[1]*60+a[2]+b[1]*60+b[2]}' "$OUT/$tag-uac.times")
  line=$(awk -v tag="$tag" -v tg="$target" -v r="$rate" -v n="$calls" -v ok="${ok:-0}" -v f="${failed:-0}" \
    -v re="${retrans:-0}" -v ux="${unexp:-0}" -v dr="$((d1 - d0))" -v w="$wall" -v uc="${uac_cpu:-0}" \
    -v uu="$((u1 - u0))" -v su="$((s1 - s0))" -v hz="$CLK_TCK" -v nc="$NCPU" \
    -v mb0="${m0% *}" -v mt0="${m0#* }" -v mb1="${m1% *}" -v mt1="${m1#* }" 'BEGIN{
      printf "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.3f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\n", tag, tg, r, n, ok, f, re, ux, dr, w,
        (w>0)?n/w:0, 100*uc/w, 100*uu/hz/w, 100*su/hz/w, (mt1>mt0)?100*nc*(mb1-mb0)/(mt1-mt0):0 }')
  [ -f "$RESULTS" ] || printf 'tag\ttarget\trate\tcalls\tok\tfailed\tretrans\tunexp\tudp_drops\twall_s\tachieved_cps\tcpu_uac%%\tcpu_uas%%\tcpu_sut%%\tcpu_machine%%\n' >"$RESULTS"
  echo "$line" >>"$RESULTS"
  echo "$line"
}

# step_passes LINE — a ladder step passes when every call succeeded, none failed, retransmissions
# stay under RETRANS_PERMILLE per mille of the calls, and the offered rate was really reached
# (achieved >= MIN_ACHIEVED_PCT % of -r: sipp falls behind its schedule when starved of CPU).
step_passes() {
  echo "$1" | awk -F'\t' -v pm="${RETRANS_PERMILLE:-1}" -v ap="${MIN_ACHIEVED_PCT:-90}" \
    '{exit !($5==$4 && $6==0 && $7*1000 <= pm*$4 && $11*100 >= ap*$3)}'
}

# ladder TAG TARGET AFTER_STEP_HOOK RATE... — one step of SECS seconds of zero-hold calls per
# rate, in increasing order, stopping at the first failing step. Sets CEILING to the last rate
# that passed (0 if none) and CEILING_CPS to its achieved rate. The hook (a function name or
# "true") runs after every step, e.g. the callgate counter check.
ladder() {
  local prefix="$1" target="$2" hook="$3"; shift 3
  local r line
  CEILING=0; CEILING_CPS=0
  for r in "$@"; do
    line=$(run_uac "$prefix-r$r" "$target" "$r" $(( r * ${SECS:-8} )) 0)
    sleep 1    # let the UAS and the system under test drain
    "$hook" "$prefix-r$r"
    if step_passes "$line"; then
      log "  pass  $line"
      CEILING=$r; CEILING_CPS=$(echo "$line" | cut -f11)
    else
      log "  FAIL  $line"
      break
    fi
  done
}

# rtt_percentiles FILE — p50 p99 max (ms) of the response times in a sipp -trace_rtt CSV.
rtt_percentiles() {
  awk -F';' 'NR>1{print $2}' "$1" | sort -n | awk '{v[NR]=$1} END{
    if(NR==0){print "- - -"; exit}
    i50=int(NR*0.50); if(i50<1)i50=1; i99=int(NR*0.99); if(i99<1)i99=1;
    print v[i50], v[i99], v[NR]}'
}

# ---- Kamailio (the incumbent, bench/kamailio.cfg) ----
KAM_CTL="unix:$OUT/kamailio_ctl"
kamcmd_() { timeout 5 kamcmd -s "$KAM_CTL" "$@"; }
# start_kamailio TAG [extra args] — -DD (no fork) as a background job; sets KAM_PID.
start_kamailio() {
  local tag="$1" i; shift
  mkdir -p "$OUT/kam-run"
  kamailio -DD -E -f "${KAM_CFG:-$BENCH_DIR/kamailio.cfg}" -n "${KAM_CHILDREN:-2}" -m "${KAM_SHM_MB:-2048}" -M 16 ${KAM_ARGS--x tlsf} \
    -Y "$OUT/kam-run" -w "$OUT" -A "CTL_SOCK=\"$KAM_CTL\"" "$@" >"$OUT/$tag-kamailio.log" 2>&1 &
  KAM_PID=$!
  for i in $(seq 100); do kamcmd_ core.uptime >/dev/null 2>&1 && return 0; sleep 0.1; done
  log "kamailio did not come up; see $OUT/$tag-kamailio.log"; return 1
}
kam_pids() { echo "$KAM_PID" $(ps --ppid "$KAM_PID" -o pid= 2>/dev/null); }
kam_profile_size() { kamcmd_ dlg.profile_get_size calls 2>/dev/null | tr -dc 0-9; }
