#!/bin/bash
# ipvs-record: records the real kernel's raw replies to every IPVS dump and get the
# director uses (and one error) for the unit tests' fixtures. Not part of check-system:
# `make record-ipvs-fixtures` runs it and unpacks the FIXTURE lines it prints (base64)
# into tests/unit/fixtures/ipvs/. The table it records is set up by `ipvs_client_test
# record`, whose values tests/unit/test_ipvs_msg.c checks.
. "$SYS_SRC/lib.sh"
T=$SYS_BIN/ipvs_client_test
sys_ipvs_load
sys_check ipvs_modules_loaded $? || { sys_finish; exit 1; }
sys_bridge br-r && sys_host rec br-r 10.81.0.1/24
sys_check topology $? || { sys_finish; exit 1; }
mkdir -p "$SYS_SCRATCH/fix"
ip netns exec rec "$T" record eth0 "$SYS_SCRATCH/fix"
sys_check record $?
echo "KERNEL $(uname -r) $(uname -m)"
for f in "$SYS_SCRATCH"/fix/*.bin; do
	echo "FIXTURE ${f##*/} $(base64 -w0 "$f")"
done
sys_finish
