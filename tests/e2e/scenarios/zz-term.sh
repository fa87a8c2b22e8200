#!/bin/sh
# vmrun-args: -m 512 -t 600
. "$VMRUN_FILES/guestlib.sh"
lo_up
tree=$CGROOT/idle
mkdir "$tree"; echo "+memory" > "$tree/cgroup.subtree_control"
for p in $(seq 0 9); do
  mkdir "$tree/p$p"; echo "+memory" > "$tree/p$p/cgroup.subtree_control"
  for l in $(seq 0 9); do
    mkdir "$tree/p$p/l$l"; echo 256M > "$tree/p$p/l$l/memory.max"
    sleep 100000 & echo $! > "$tree/p$p/l$l/cgroup.procs"
  done
done
log "tree ready"
hung=0
for i in $(seq 1 40); do
  if [ $((i % 2)) = 0 ]; then cfg="--config $VMRUN_FILES/act-recommended.json"; else cfg=""; fi
  oomguard run $cfg --metrics-listen 127.0.0.1:0 > /tmp/d.jsonl 2> /tmp/d.err &
  pid=$!
  n=$(( (i * 7919) % 40 ))
  sleep "$((n / 10)).$((n % 10))"
  kill -TERM $pid
  k=0
  while [ -d /proc/$pid ] && [ "$(sed 's/.*) //' /proc/$pid/stat | cut -d' ' -f1)" != Z ] && [ $k -lt 100 ]; do sleep 0.1; k=$((k+1)); done
  if [ $k -ge 100 ]; then
    hung=$((hung+1))
    log "HUNG cycle $i after ${n}ds cfg=[$cfg]"
    tail -n 5 /tmp/d.jsonl | cut -c1-300
    for t in /proc/$pid/task/*; do echo "task $t $(cat $t/comm) $(cut -d' ' -f3 $t/stat) $(cat $t/wchan)"; cat $t/stack; done
    kill -KILL $pid
  fi
  wait $pid
  log "cycle $i after ${n}ds rc=$? waited ${k}"
done
log "hung=$hung"
