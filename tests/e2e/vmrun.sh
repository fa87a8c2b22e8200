#!/usr/bin/env bash
# vmrun.sh — run one guest script in a throwaway Debian 6.12 kernel under QEMU.
#
# Prepares (once, cached under ${OOMGUARD_LAB_CACHE:-/var/cache/oomguard-lab}) the kernel and a
# busybox initramfs, then boots one VM that runs SCRIPT with ARGS and powers off. The exit code is
# the script's, or 125 when the guest gave no exit marker (panic, hang, QEMU failure): an
# infrastructure failure, reported as such on stderr. See tests/e2e/README.md.
#
# The guest's console goes to stdout (and to a log file); this script's own messages go to stderr.
set -euo pipefail

readonly VMRUN_FORMAT=3   # bump when the base initramfs layout or /init changes
# The kernel: Debian's 6.12 by default; VMRUN_KERNEL names another meta-package (e.g.
# linux-image-amd64, bookworm's 6.1) for scenarios that must hold on more than one kernel.
readonly META_PACKAGE=${VMRUN_KERNEL:-linux-image-6.12-amd64}
readonly MODULES_9P=(netfs 9pnet 9pnet_virtio 9p)
readonly MODULES_ZRAM=(lz4_compress lz4hc_compress zram)
readonly BASE_LIBS=(ld-linux-x86-64.so.2 libc.so.6 libm.so.6 libstdc++.so.6 libgcc_s.so.1
                    libpthread.so.0 libdl.so.2 librt.so.1)
readonly INFRA_RC=125

cache="${OOMGUARD_LAB_CACHE:-/var/cache/oomguard-lab}"

say() { printf 'vmrun: %s\n' "$*" >&2; }
die() { printf 'vmrun: error: %s\n' "$*" >&2; exit "$INFRA_RC"; }

usage() {
  cat <<'EOF'
usage: vmrun.sh [options] SCRIPT [ARGS...]
       vmrun.sh --check | --prepare [--refresh-kernel]
Boots a Debian 6.12 kernel in QEMU with a busybox initramfs and runs SCRIPT (busybox sh, or any
shebang whose interpreter is in the guest) as root in the root cgroup; exits with its exit code.
  -m MiB        guest memory (default 1024)
  -c CPUS       vCPUs (default 1; with TCG, more than 1 uses single-threaded TCG)
  -s SWAP_MiB   zram swap of this size (default 0: none)
  -t SECONDS    wall-clock limit for the whole VM (default 120)
  -b BINARY     copy a host binary and its ldd libraries into /usr/local/bin (repeatable)
  -f FILE       copy a file into /vmrun/files/ in the guest (repeatable)
  -d DIR        share this host directory at /mnt/host over 9p (the script runs there)
  -a 'ARGS'     extra kernel command line
  -l FILE       console log (default DIR/console.log with -d, else a temporary file)
  --no-retry    do not retry a guest that died before the script started
  --deb PKG     apt-get download the Debian package PKG once into the cache (pinned to the version
                resolved then; never installed), and copy its usr/bin, usr/sbin executables into
                /usr/local/bin like -b (repeatable)
  --expect-panic  the script is meant to crash the kernel: exit 0 when the guest panicked after the
                script started (no exit marker); 1 when the script exited 0 instead (no panic), its
                code when it exited non-zero; 125 still for a timeout or a guest that never started
  --check       only report whether QEMU can run here (exit 0) or not (exit 1)
  --prepare     only prepare the cache (kernel, initramfs)
  --refresh-kernel  re-resolve linux-image-6.12-amd64 and re-pin (with --prepare or a run)
Exit: the script's code; 125 = infrastructure failure (no exit marker: panic, timeout, QEMU error).
With --expect-panic: 0 = the kernel panicked while the script ran (see above).
Env: OOMGUARD_LAB_CACHE (cache dir), VMRUN_ACCEL=tcg|kvm (override the automatic choice),
     VMRUN_KERNEL (the kernel meta-package, default linux-image-6.12-amd64; e.g. linux-image-amd64).
EOF
}

# ---------------------------------------------------------------------------------------------
# options
mem=1024 cpus=1 swap=0 timeout_s=120 share="" extra_cmdline="" log="" retry=1
mode=run refresh_kernel=0 expect_panic=0
binaries=() files=() debs=()
while [ $# -gt 0 ]; do
  case "$1" in
    -m) mem="$2"; shift 2 ;;
    -c) cpus="$2"; shift 2 ;;
    -s) swap="$2"; shift 2 ;;
    -t) timeout_s="$2"; shift 2 ;;
    -b) binaries+=("$2"); shift 2 ;;
    -f) files+=("$2"); shift 2 ;;
    -d) share="$2"; shift 2 ;;
    -a) extra_cmdline="$2"; shift 2 ;;
    -l) log="$2"; shift 2 ;;
    --no-retry) retry=0; shift ;;
    --deb) debs+=("$2"); shift 2 ;;
    --expect-panic) expect_panic=1; shift ;;
    --check) mode=check; shift ;;
    --prepare) mode=prepare; shift ;;
    --refresh-kernel) refresh_kernel=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    -*) usage >&2; exit 2 ;;
    *) break ;;
  esac
done
for n in "$mem" "$cpus" "$swap" "$timeout_s"; do
  [[ "$n" =~ ^[0-9]+$ ]] || { say "not a number: $n"; exit 2; }
done

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---------------------------------------------------------------------------------------------
# accelerator and --check
choose_accel() {
  if [ -n "${VMRUN_ACCEL:-}" ]; then echo "$VMRUN_ACCEL"; return; fi
  if [ -w /dev/kvm ] && grep -Eqw 'vmx|svm' /proc/cpuinfo; then echo kvm; else echo tcg; fi
}

check_qemu() {
  local missing=() tool
  for tool in qemu-system-x86_64 timeout cpio gzip zstd xz dpkg-deb apt-get apt-cache flock awk; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  [ -x /bin/busybox ] || missing+=("/bin/busybox (busybox-static)")
  if [ "${#missing[@]}" -gt 0 ]; then
    say "QEMU cannot run here: missing ${missing[*]} (run scripts/install-deps.sh test)"
    return 1
  fi
  local accel out
  accel=$(choose_accel)
  if ! out=$(echo quit | timeout 20 qemu-system-x86_64 -machine none -accel "$accel" -nodefaults \
               -no-user-config -display none -monitor stdio 2>&1); then
    say "QEMU cannot run here: qemu-system-x86_64 -accel $accel failed: $out"
    return 1
  fi
  say "QEMU can run here: $(qemu-system-x86_64 --version | head -n1), accel=$accel"
  return 0
}

if [ "$mode" = check ]; then
  if check_qemu; then exit 0; else exit 1; fi
fi
check_qemu >/dev/null 2>&1 || { check_qemu || true; die "QEMU cannot run here"; }

# ---------------------------------------------------------------------------------------------
# cache: kernel
mkdir -p "$cache" 2>/dev/null || die "cannot create cache dir $cache (set OOMGUARD_LAB_CACHE)"
[ -w "$cache" ] || die "cache dir $cache is not writable (set OOMGUARD_LAB_CACHE)"
exec 9>"$cache/.lock"
flock 9   # one preparer at a time; released when this script exits

resolve_kernel() {
  local dep version
  dep=$(apt-cache depends "$META_PACKAGE" 2>/dev/null | awk '/Depends: linux-image-/ { print $2; exit }')
  if [ -z "$dep" ]; then
    say "resolving $META_PACKAGE: apt-get update"
    apt-get update -qq >&2 || die "apt-get update failed"
    dep=$(apt-cache depends "$META_PACKAGE" 2>/dev/null | awk '/Depends: linux-image-/ { print $2; exit }')
  fi
  [ -n "$dep" ] || die "cannot resolve $META_PACKAGE (is bookworm-security in the apt sources?)"
  version=$(apt-cache policy "$dep" | awk '/Candidate:/ { print $2; exit }')
  if [ -z "$version" ] || [ "$version" = "(none)" ]; then die "no candidate version for $dep"; fi
  printf '%s=%s\n' "$dep" "$version"
}

bytes_at() {  # FILE OFFSET COUNT -> those bytes on stdout
  dd if="$1" bs=64K iflag=skip_bytes,count_bytes skip="$2" count="$3" status=none
}

extract_vmlinux() {  # bzImage -> the uncompressed ELF it carries (zstd payload), for PVH boot
  local bz="$1" out="$2" setup_sects payload_off payload_len start want have
  setup_sects=$(bytes_at "$bz" $((0x1f1)) 1 | od -An -tu1 | tr -d ' ')
  read -r payload_off payload_len < <(bytes_at "$bz" $((0x248)) 8 | od -An -tu4)
  start=$(( (setup_sects + 1) * 512 + payload_off ))
  # The payload is one zstd frame followed by the 4-byte uncompressed size.
  [ "$(bytes_at "$bz" "$start" 4 | od -An -tx1 | tr -d ' \n')" = 28b52ffd ] \
    || die "the bzImage payload is not zstd"
  bytes_at "$bz" "$start" $((payload_len - 4)) | zstd -q -dc > "$out" \
    || die "zstd payload extraction failed"
  want=$(bytes_at "$bz" $((start + payload_len - 4)) 4 | od -An -tu4 | tr -d ' ')
  have=$(stat -c %s "$out")
  [ "$want" = "$have" ] || die "vmlinux size $have != $want from the bzImage trailer"
  [ "$(bytes_at "$out" 0 4 | od -An -c | tr -d ' ')" = '177ELF' ] || die "vmlinux is not an ELF file"
}

prepare_kernel() {
  local pin_file="$cache/kernel.pin" pin pkg kdir tmp kver
  [ "$META_PACKAGE" = linux-image-6.12-amd64 ] || pin_file="$cache/kernel-$META_PACKAGE.pin"
  if [ "$refresh_kernel" = 1 ] || [ ! -s "$pin_file" ]; then
    pin=$(resolve_kernel)
    echo "$pin" > "$pin_file.tmp" && mv "$pin_file.tmp" "$pin_file"
    say "pinned kernel package $pin"
  fi
  pin=$(cat "$pin_file")
  pkg=${pin%%=*}
  kdir="$cache/kernel/$pkg"
  if [ ! -e "$kdir/.complete" ]; then
    local t0; t0=$(now)
    say "fetching $pin (apt-get download, not installed)"
    tmp=$(mktemp -d "$cache/tmp.kernel.XXXXXX")
    chmod 755 "$tmp"   # apt's _apt sandbox user must be able to write there
    local apt_opts=(-q)
    # As root apt would warn that its _apt sandbox user cannot write the cache dir.
    [ "$(id -u)" -ne 0 ] || apt_opts+=(-o APT::Sandbox::User=root)
    ( cd "$tmp" && apt-get download "${apt_opts[@]}" "$pin" >&2 ) \
      || die "apt-get download $pin failed (re-resolve with --refresh-kernel)"
    mkdir -p "$tmp/x" "$tmp/out/modules"
    # Modules are xz-compressed in Debian's 6.12, plain .ko in bookworm's 6.1.
    local ko=.ko.xz listing order=()
    listing=$(dpkg-deb -c "$tmp"/*.deb)   # whole, not piped into grep -q (pipefail, SIGPIPE)
    grep -qE '/9p\.ko\.xz$' <<<"$listing" || ko=.ko
    # virtio is built in on 6.12 and modular on bookworm's 6.1: load what the package has, first.
    # In dependency order; each only where the package has it as a module (fscache is part of
    # netfs from 6.x on, a module of its own in 6.1).
    for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci netfs fscache 9pnet \
             9pnet_virtio 9p; do
      if grep -qE "/$m\\$ko\$" <<<"$listing"; then order+=("$m"); fi
    done
    [[ " ${order[*]} " == *" 9p "* && " ${order[*]} " == *" 9pnet_virtio "* ]] || die "$pin has no 9p modules"
    local patterns=('./boot/vmlinuz-*' './boot/config-*')
    for m in "${order[@]}" "${MODULES_ZRAM[@]}"; do patterns+=("*/$m$ko"); done
    dpkg-deb --fsys-tarfile "$tmp"/*.deb | tar -x -C "$tmp/x" --wildcards "${patterns[@]}" \
      || die "unpacking $pkg failed"
    rm -f "$tmp"/*.deb
    local vmlinuz config m f
    vmlinuz=$(find "$tmp/x/boot" -name 'vmlinuz-*' | head -n1)
    config=$(find "$tmp/x/boot" -name 'config-*' | head -n1)
    if [ -z "$vmlinuz" ] || [ -z "$config" ]; then die "$pkg has no /boot/vmlinuz or config"; fi
    kver=${vmlinuz##*/vmlinuz-}
    cp "$vmlinuz" "$tmp/out/vmlinuz"
    cp "$config" "$tmp/out/config"
    echo "$kver" > "$tmp/out/release"
    echo "${order[*]}" > "$tmp/out/modules/9p.order"
    for m in "${order[@]}" "${MODULES_ZRAM[@]}"; do
      f=$(find "$tmp/x" -name "$m$ko" | head -n1)
      [ -n "$f" ] || die "module $m not found in $pkg"
      if [ "$ko" = .ko.xz ]; then xz -dc "$f" > "$tmp/out/modules/$m.ko"; else cp "$f" "$tmp/out/modules/$m.ko"; fi
    done
    # PVH boot of the bare ELF saves ~1.2 s; a bzImage whose payload is not zstd boots as it is.
    if [ "$(bytes_at "$tmp/out/vmlinuz" $(( ($(bytes_at "$tmp/out/vmlinuz" $((0x1f1)) 1 | od -An -tu1 | tr -d ' ') + 1) * 512 \
            + $(bytes_at "$tmp/out/vmlinuz" $((0x248)) 4 | od -An -tu4 | tr -d ' ') )) 4 | od -An -tx1 | tr -d ' \n')" = 28b52ffd ]; then
      extract_vmlinux "$tmp/out/vmlinuz" "$tmp/out/vmlinux"
    else
      cp "$tmp/out/vmlinuz" "$tmp/out/vmlinux"
    fi
    grep -q '^CONFIG_MEMCG=y' "$tmp/out/config" || die "$pkg lacks CONFIG_MEMCG"
    touch "$tmp/out/.complete"
    rm -rf "$kdir"
    mkdir -p "$cache/kernel"
    mv "$tmp/out" "$kdir"
    rm -rf "$tmp"
    say "kernel $kver ready in $(elapsed "$t0") s"
  fi
  kernel_dir="$kdir"
  kernel_release=$(cat "$kdir/release")
}

# ---------------------------------------------------------------------------------------------
# cache: base initramfs

host_lib() {  # soname -> host path of the x86-64 library
  local path
  path=$(ldconfig -p | awk -v n="$1" '$1 == n && /x86-64/ { print $NF; exit }')
  if [ -z "$path" ] && [ "$1" = ld-linux-x86-64.so.2 ]; then path=/lib64/ld-linux-x86-64.so.2; fi
  [ -n "$path" ] && [ -e "$path" ] && readlink -f "$path"
}

guest_path() {  # host absolute path -> path in the merged-/usr guest tree (no leading slash)
  local p="${1#/}"
  case "$p" in
    lib/*|lib64/*|bin/*|sbin/*) p="usr/$p" ;;
  esac
  printf '%s\n' "$p"
}

write_init() {
  cat <<'INIT'
#!/bin/sh
# /init of the oomguard e2e lab (generated by tests/e2e/vmrun.sh)
export PATH=/usr/local/bin:/usr/bin:/usr/sbin HOME=/root TERM=dumb
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
# marker TEXT: a line for the host's reading of the console, written twice. A write to the console's tty
# returns once its bytes are queued for the UART, which sends them from interrupts; poweroff -f right
# after it can cut them off (a CI run lost an exit marker that way, after the script's last line had
# reached the host). The kernel prints a /dev/kmsg record to its console synchronously, before the
# power-off's own "reboot: Power down"; at level 2 it passes loglevel=3. The host takes the first copy.
marker() {
  printf '\n%s\n' "$1"
  printf '<2>%s\n' "$1" > /dev/kmsg 2>/dev/null
}
setup_failed() { marker "@@VMRUN-SETUP-FAILED: $*@@"; poweroff -f; sleep 10; }
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /dev/shm
mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 /sys/fs/cgroup || setup_failed "cgroup2 mount"
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
  echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control || setup_failed "enabling controller $c"
done
hostname vm
share=0 swap=0 timeout=0
for word in $(cat /proc/cmdline); do
  case "$word" in
    vmrun.share=*) share=${word#vmrun.share=} ;;
    vmrun.swap=*) swap=${word#vmrun.swap=} ;;
    vmrun.timeout=*) timeout=${word#vmrun.timeout=} ;;
  esac
done
mods=/usr/lib/modules/$(uname -r)
VMRUN_SHARE=
if [ "$share" = 1 ]; then
  # 9p.order: the 9p modules in load order, after virtio's where the kernel builds it as modules (6.1).
  for m in $(cat "$mods/9p.order" 2>/dev/null || echo netfs 9pnet 9pnet_virtio 9p); do
    insmod "$mods/$m.ko" || setup_failed "insmod $m"
  done
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=none host /mnt/host \
    || setup_failed "9p mount"
  VMRUN_SHARE=/mnt/host
fi
if [ "$swap" -gt 0 ]; then
  for m in lz4_compress lz4hc_compress zram; do insmod "$mods/$m.ko" || setup_failed "insmod $m"; done
  echo "${swap}M" > /sys/block/zram0/disksize || setup_failed "zram disksize"
  mkswap /dev/zram0 >/dev/null && swapon /dev/zram0 || setup_failed "zram swapon"
fi
export VMRUN_SHARE VMRUN_SWAP_MB="$swap" VMRUN_FILES=/vmrun/files
set --
[ -f /vmrun/args ] && . /vmrun/args
if [ -n "$VMRUN_SHARE" ]; then cd "$VMRUN_SHARE"; else cd /tmp; fi
# The watchdog: a guest still running 15 s before the host's wall-clock limit is hung or too slow.
# It leaves evidence on the console before QEMU is killed: memory, pressure, the kernel's blocked tasks,
# and every process that is not an idle sleeper or kernel thread (with its kernel stack when it runs or
# is blocked). It does not stop the script (the host's limit does).
if [ "$timeout" -gt 45 ]; then
  (
    due=$((timeout - 15))
    up=$(cut -d. -f1 /proc/uptime)
    [ "$due" -gt "$up" ] && sleep $((due - up))   # one sleep: no wake-ups in the guest until then
    printf '\n@@VMRUN-WATCHDOG uptime=%s: still running %s s before the limit; the state follows@@\n' \
      "$(cut -d' ' -f1 /proc/uptime)" 15
    # Memory, pressure and the kernel's blocked tasks first (the likeliest evidence, and cheap), then
    # the processes, parsed with shell builtins: a hung guest may hold a thousand of them and forks
    # are slow under emulation.
    grep -E '^(MemTotal|MemFree|MemAvailable|SwapFree):' /proc/meminfo | sed 's/^/watchdog: /'
    sed 's/^/watchdog: pressure memory /' /proc/pressure/memory 2>/dev/null
    dmesg -n 7
    echo w > /proc/sysrq-trigger
    idle=0
    for d in /proc/[0-9]*; do
      s=
      { read -r s < "$d/stat"; } 2>/dev/null
      [ -n "$s" ] || continue                      # gone
      comm=${s#*(}; comm=${comm%)*}
      set -- ${s##*) }                             # state, ppid, ...
      st=$1 ppid=$2
      case "$st" in
        S|I)                                       # asleep: shown unless an idle sleeper or kernel thread
          if [ "$comm" = sleep ] || [ "$ppid" = 2 ] || [ "$ppid" = 0 ]; then idle=$((idle + 1)); continue; fi ;;
      esac
      w=
      { read -r w < "$d/wchan"; } 2>/dev/null
      printf 'watchdog: pid %s state %s wchan %s comm %s\n' "${d#/proc/}" "$st" "$w" "$comm"
      case "$st" in
        D|R) { sed 's/^/watchdog:   /' "$d/stack" | head -n 16; } 2>/dev/null ;;
      esac
    done
    echo "watchdog: and $idle idle sleepers and kernel threads"
    printf '@@VMRUN-WATCHDOG-END@@\n'
  ) &
fi
if [ -x /vmrun/script ]; then
  printf '\n@@VMRUN-START uptime=%s@@\n' "$(cut -d' ' -f1 /proc/uptime)"
  /vmrun/script "$@" </dev/null
  rc=$?
else
  echo "vmrun: no /vmrun/script in the initramfs"
  rc=125
fi
sync
marker "@@VMRUN-EXIT=$rc@@"
poweroff -f
sleep 10
INIT
}

prepare_initramfs() {
  local busybox=/bin/busybox lib key inputs=() name
  busybox --list >/dev/null 2>&1 || die "/bin/busybox does not run"
  if ldd "$busybox" 2>&1 | grep -q '=>'; then die "/bin/busybox is not static (install busybox-static)"; fi
  declare -gA base_lib_paths=()
  for name in "${BASE_LIBS[@]}"; do
    lib=$(host_lib "$name") || true
    if [ -z "$lib" ]; then
      case "$name" in libpthread.so.0|libdl.so.2|librt.so.1) continue ;; esac
      die "host library $name not found"
    fi
    base_lib_paths[$name]=$lib
    inputs+=("$lib")
  done
  key=$( { echo "format $VMRUN_FORMAT $kernel_release"; write_init
           sha256sum "$busybox" "${inputs[@]}" "$kernel_dir"/modules/*.ko | awk '{ print $1 }'
           cat "$kernel_dir"/modules/9p.order 2>/dev/null || true
           printf '%s\n' "${BASE_LIBS[@]}"; } | sha256sum | cut -c1-16)
  base_initramfs="$cache/initramfs-$key.cpio.gz"
  [ -s "$base_initramfs" ] && return 0

  local t0 root applet
  t0=$(now)
  root=$(mktemp -d "$cache/tmp.initramfs.XXXXXX")
  mkdir -p "$root"/usr/{bin,sbin,lib/x86_64-linux-gnu,lib64,local/bin} \
           "$root"/{dev,proc,sys,tmp,run,root,etc,mnt/host,vmrun/files} \
           "$root/usr/lib/modules/$kernel_release"
  ln -s usr/bin "$root/bin"; ln -s usr/sbin "$root/sbin"
  ln -s usr/lib "$root/lib"; ln -s usr/lib64 "$root/lib64"
  cp "$busybox" "$root/usr/bin/busybox"
  for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/usr/bin/$applet"
  done
  for name in "${!base_lib_paths[@]}"; do
    cp "${base_lib_paths[$name]}" "$root/usr/lib/x86_64-linux-gnu/$name"
  done
  ln -s ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$root/usr/lib64/ld-linux-x86-64.so.2"
  cp "$kernel_dir"/modules/*.ko "$root/usr/lib/modules/$kernel_release/"
  cp "$kernel_dir"/modules/9p.order "$root/usr/lib/modules/$kernel_release/" 2>/dev/null || true
  printf 'root:x:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
  printf 'root:x:0:\n' > "$root/etc/group"
  write_init > "$root/init"
  chmod 755 "$root/init"
  # The kernel opens /dev/console before /init runs; without the node /init starts with no stdio
  # (it re-opens the console after mounting devtmpfs anyway).
  mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true
  ( cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet ) \
    | gzip -6 > "$base_initramfs.tmp"
  mv "$base_initramfs.tmp" "$base_initramfs"
  rm -rf "$root"
  # Older builds for this kernel go; another kernel's (VMRUN_KERNEL) stay.
  find "$cache" -maxdepth 1 -name 'initramfs-*.cpio.gz' ! -path "$base_initramfs" -mmin +1440 -delete
  say "base initramfs built in $(elapsed "$t0") s ($(du -h "$base_initramfs" | cut -f1))"
}

# ---------------------------------------------------------------------------------------------
# cache: extra Debian packages (--deb), e.g. earlyoom to run beside oomguard in the guest

prepare_deb() {  # PKG -> appends its executables to binaries
  local name="$1" pin_file="$cache/debs/$1.pin" pin version ddir tmp f found=0
  mkdir -p "$cache/debs"
  if [ "$refresh_kernel" = 1 ] || [ ! -s "$pin_file" ]; then
    version=$(apt-cache policy "$name" 2>/dev/null | awk '/Candidate:/ { print $2; exit }')
    if [ -z "$version" ] || [ "$version" = "(none)" ]; then die "no candidate version for package $name"; fi
    echo "$name=$version" > "$pin_file.tmp" && mv "$pin_file.tmp" "$pin_file"
    say "pinned package $name=$version"
  fi
  pin=$(cat "$pin_file")
  ddir="$cache/debs/${pin//[:=~+]/_}"
  if [ ! -e "$ddir/.complete" ]; then
    say "fetching $pin (apt-get download, not installed)"
    tmp=$(mktemp -d "$cache/tmp.deb.XXXXXX")
    chmod 755 "$tmp"
    local apt_opts=(-q)
    [ "$(id -u)" -ne 0 ] || apt_opts+=(-o APT::Sandbox::User=root)
    ( cd "$tmp" && apt-get download "${apt_opts[@]}" "$pin" >&2 ) || die "apt-get download $pin failed"
    mkdir -p "$tmp/x"
    dpkg-deb -x "$tmp"/*.deb "$tmp/x" || die "unpacking $pin failed"
    rm -f "$tmp"/*.deb
    touch "$tmp/x/.complete"
    rm -rf "$ddir"
    mv "$tmp/x" "$ddir"
    rm -rf "$tmp"
  fi
  for f in "$ddir"/usr/bin/* "$ddir"/usr/sbin/* "$ddir"/bin/* "$ddir"/sbin/*; do
    if [ -f "$f" ] && [ -x "$f" ]; then binaries+=("$f"); found=1; fi
  done
  [ "$found" = 1 ] || die "package $pin has no executable in usr/bin or usr/sbin"
}

t_prepare=$(now)
prepare_kernel
prepare_initramfs
for deb in "${debs[@]}"; do prepare_deb "$deb"; done
flock -u 9
if [ "$mode" = prepare ]; then
  say "prepared in $(elapsed "$t_prepare") s: kernel $kernel_release, $base_initramfs"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# per-run initramfs
[ $# -ge 1 ] || { usage >&2; exit 2; }
script="$1"; shift
[ -f "$script" ] || die "no such script: $script"
if [ -n "$share" ]; then
  [ -d "$share" ] || die "share dir $share does not exist"
  share=$(cd "$share" && pwd)
fi

rundir=$(mktemp -d "${TMPDIR:-/tmp}/vmrun.XXXXXX")
cleanup() { rm -rf "$rundir"; }
trap cleanup EXIT

sq() { local s=${1//\'/\'\\\'\'}; printf "'%s'" "$s"; }

build_run_cpio() {
  local root="$rundir/root" a b lib dest line
  mkdir -p "$root/vmrun/files" "$root/usr/local/bin"
  cp "$script" "$root/vmrun/script"
  chmod 755 "$root/vmrun/script"
  {
    printf 'set --'
    for a in "$@"; do printf ' %s' "$(sq "$a")"; done
    printf '\n'
  } > "$root/vmrun/args"
  for a in "${files[@]}"; do
    [ -f "$a" ] || die "no such file: $a"
    cp "$a" "$root/vmrun/files/"
  done
  local -A in_base=()
  for lib in "${base_lib_paths[@]}"; do in_base[$lib]=1; done
  for b in "${binaries[@]}"; do
    if [ ! -f "$b" ] || [ ! -x "$b" ]; then die "not an executable file: $b"; fi
    cp "$(readlink -f "$b")" "$root/usr/local/bin/$(basename "$b")"
    # Libraries the binary needs beyond the base set, at their host paths (merged /usr).
    while read -r line; do
      lib=$(printf '%s\n' "$line" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) { print $i; exit } }')
      if [ -z "$lib" ] || [ ! -e "$lib" ]; then continue; fi
      [ -n "${in_base[$(readlink -f "$lib")]:-}" ] && continue
      dest="$root/$(guest_path "$lib")"
      mkdir -p "$(dirname "$dest")"
      cp -L "$lib" "$dest"
    done < <(ldd "$b" 2>/dev/null || true)
  done
  ( cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet ) \
    | gzip -1 > "$rundir/run.cpio.gz"
  cat "$base_initramfs" "$rundir/run.cpio.gz" > "$rundir/initrd.cpio.gz"
}
build_run_cpio "$@"

# ---------------------------------------------------------------------------------------------
# boot
accel=$(choose_accel)
qemu_args=(-nodefaults -no-user-config -machine q35 -m "$mem" -smp "$cpus"
           -display none -monitor none -chardev "stdio,id=con,signal=off" -serial chardev:con
           -no-reboot -kernel "$kernel_dir/vmlinux" -initrd "$rundir/initrd.cpio.gz")
if [ "$accel" = kvm ]; then
  qemu_args+=(-accel kvm -cpu host)
elif [ "$cpus" -gt 1 ]; then
  qemu_args+=(-accel "tcg,thread=single" -cpu max)   # MTTCG with 2+ vCPUs oopses now and then
else
  qemu_args+=(-accel tcg -cpu max)
fi
share_flag=0
if [ -n "$share" ]; then
  share_flag=1
  qemu_args+=(-fsdev "local,id=fs0,path=$share,security_model=none"
              -device "virtio-9p-pci,fsdev=fs0,mount_tag=host")
fi
cmdline="console=ttyS0 panic=-1 oops=panic mitigations=off cryptomgr.notests psi=1 quiet loglevel=3"
cmdline+=" vmrun.share=$share_flag vmrun.swap=$swap vmrun.timeout=$timeout_s $extra_cmdline"
qemu_args+=(-append "$cmdline")

if [ -z "$log" ]; then
  if [ -n "$share" ]; then log="$share/console.log"; else log="$rundir/console.log"; fi
fi
mkdir -p "$(dirname "$log")"

boot_once() {  # sets vm_rc (qemu/timeout status) and boot_wall
  local t0 status
  t0=$(now)
  set +e
  timeout -k 5 "$timeout_s" qemu-system-x86_64 "${qemu_args[@]}" </dev/null 2>&1 \
    | tr -d '\r' | tee "$log"
  status=("${PIPESTATUS[@]}")
  set -e
  vm_rc=${status[0]}
  boot_wall=$(elapsed "$t0")
}

attempt=1
while :; do
  say "boot $attempt: kernel $kernel_release, accel=$accel, -m $mem -c $cpus -s $swap, timeout $timeout_s s"
  boot_once
  start_line=$(grep -a -m1 '@@VMRUN-START' "$log" || true)
  exit_line=$(grep -a -m1 -o '@@VMRUN-EXIT=[0-9]*@@' "$log" || true)
  setup_line=$(grep -a -m1 -o '@@VMRUN-SETUP-FAILED:.*@@' "$log" || true)
  if [ -n "$exit_line" ]; then
    rc=${exit_line#@@VMRUN-EXIT=}; rc=${rc%@@}
    up=$(printf '%s\n' "$start_line" | sed -n 's/.*uptime=\([0-9.]*\).*/\1/p')
    say "exit $rc (wall ${boot_wall} s, guest uptime at script start ${up:-?} s, attempt $attempt)"
    if [ "$expect_panic" = 1 ] && [ "$rc" = 0 ]; then
      say "EXPECTED A PANIC: the script exited 0 and the kernel did not panic"
      exit 1
    fi
    exit "$rc"
  fi
  panic_line=$(grep -a -m1 -E 'Kernel panic|BUG:|Oops' "$log" || true)
  if [ "$expect_panic" = 1 ] && [ -n "$start_line" ] && [ -n "$panic_line" ] \
     && [ "$vm_rc" != 124 ] && [ "$vm_rc" != 137 ]; then
    say "the kernel panicked as expected: $panic_line (wall ${boot_wall} s, attempt $attempt)"
    exit 0
  fi
  if [ "$vm_rc" = 124 ] || [ "$vm_rc" = 137 ]; then why="timed out after $timeout_s s"
  elif [ -n "$panic_line" ]; then why="kernel died: $panic_line"
  else why="QEMU exited with status $vm_rc and no exit marker"; fi
  if [ -n "$setup_line" ]; then
    say "INFRASTRUCTURE FAILURE: guest setup failed: $setup_line (log $log)"
    exit "$INFRA_RC"
  fi
  if [ -z "$start_line" ] && [ "$retry" = 1 ] && [ "$attempt" = 1 ]; then
    say "guest died before the script started ($why); retrying once"
    cp "$log" "$log.attempt1"
    attempt=2
    continue
  fi
  if [ "$log" = "$rundir/console.log" ]; then   # keep the evidence past this script's cleanup
    kept=$(mktemp "${TMPDIR:-/tmp}/vmrun-failure.XXXXXX.log")
    cp "$log" "$kept"
    log=$kept
  fi
  if [ -z "$start_line" ]; then
    say "INFRASTRUCTURE FAILURE: the guest never started the script: $why (log $log)"
  else
    say "INFRASTRUCTURE FAILURE: no exit marker after the script started: $why (log $log)"
  fi
  exit "$INFRA_RC"
done
