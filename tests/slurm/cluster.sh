# A one-machine SLURM cluster for tests: `source` this file, then `slurm_up DIR` starts munged
# (unless one runs), slurmctld and slurmd with a slurm.conf generated in DIR, and exports
# SLURM_CONF; `slurm_down` stops what slurm_up started. Needs root, and no systemd: the
# daemons are started by hand. One node "localhost" with 4 CPUs, partition "debug".

slurm_up() {
  SLURM_DIR=$1
  mkdir -p "$SLURM_DIR"/{state,spool,log}
  SLURM_STARTED_MUNGE=
  if ! munge -n >/dev/null 2>&1; then  # munged must run as the munge user, on its own key
    if [ ! -s /etc/munge/munge.key ]; then
      mungekey --create --keyfile=/etc/munge/munge.key
      chown munge:munge /etc/munge/munge.key
      chmod 0400 /etc/munge/munge.key
    fi
    install -d -o munge -g munge -m 0755 /run/munge
    runuser -u munge -- /usr/sbin/munged
    SLURM_STARTED_MUNGE=1
  fi
  cat >"$SLURM_DIR/slurm.conf" <<CONF
ClusterName=aetrain-test
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# Short credential lifetime: a requeued job may start again after ~2 x this many seconds.
AuthInfo=cred_expire=10
MailProg=/bin/true
StateSaveLocation=$SLURM_DIR/state
SlurmdSpoolDir=$SLURM_DIR/spool
SlurmctldPidFile=$SLURM_DIR/slurmctld.pid
SlurmdPidFile=$SLURM_DIR/slurmd.pid
SlurmctldLogFile=$SLURM_DIR/log/slurmctld.log
SlurmdLogFile=$SLURM_DIR/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
MpiDefault=pmix
ReturnToService=2
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
EnforcePartLimits=ALL
InactiveLimit=0
MinJobAge=300
KillWait=5
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=localhost NodeAddr=127.0.0.1 CPUs=4 RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
  export SLURM_CONF=$SLURM_DIR/slurm.conf SLURM_DIR
  /usr/sbin/slurmctld -i
  /usr/sbin/slurmd -N localhost
  for _ in $(seq 1 120); do
    sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)' && return 0
    sleep 0.25
  done
  echo "slurm_up: the node did not come up; logs in $SLURM_DIR/log" >&2
  return 1
}

slurm_down() {
  scontrol shutdown >/dev/null 2>&1 || true
  for _ in $(seq 1 40); do
    pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null || break
    sleep 0.25
  done
  if [ -n "${SLURM_STARTED_MUNGE:-}" ] && [ -s /run/munge/munged.pid ]; then
    kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
  fi
}
