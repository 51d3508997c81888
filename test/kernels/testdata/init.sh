#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TMPDIR=/tmp
mkdir -p /proc /sys /dev /tmp /root /run
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
stty -F /dev/ttyS1 raw -echo
exec 3>/dev/ttyS1
say() { echo "@@kernels $*" >&3; }
need() { "$@" || say warn "failed: $*"; }
need mount -t tracefs tracefs /sys/kernel/tracing
need mount -t debugfs debugfs /sys/kernel/debug
need mount -t bpf bpf /sys/fs/bpf
need mount -t cgroup2 cgroup2 /sys/fs/cgroup
need mount -t tmpfs tmpfs /tmp
need ip link set lo up
if [ -f /lib/modules/tcpstat/order ]; then
	for m in $(cat /lib/modules/tcpstat/order); do need insmod /lib/modules/tcpstat/$m.ko; done
fi
say uname "$(uname -r)"
export TCPSTAT_BIN=/bin/tcpstat
say begin internal/tcp
(cd /src/internal/tcp && exec ./00-tcp.test '-test.v=test2json' '-test.timeout=5m0s' '-test.run=Test'\''Quoted') >&3 2>&3
say end internal/tcp $?
say begin internal/tracer
(cd /src/internal/tracer && exec ./01-tracer.test '-test.v=test2json' '-test.timeout=5m0s' '-test.run=Test'\''Quoted') >&3 2>&3
say end internal/tracer $?
say doctor-begin
/bin/tcpstat doctor >&3 2>&3
say doctor-end $?
say done
sync
poweroff -f
