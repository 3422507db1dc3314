#!/usr/bin/python3
"""bgsync-vm: run commands against a real bluetoothd in a throwaway qemu VM.

Boot Debian's kernel under qemu (TCG) with a busybox initramfs built here,
mount the host root read-only over virtio-9p, start dbus-daemon, btvirt -l2
and bluetoothd -E, power hci0 and hci1, run one command inside, collect its
results, logs and an HCI trace through a writable 9p share, power off.

    bgsync-vm.py --src SRC --build BUILD suite [--groups a,b]   # meson test 'vm'
    bgsync-vm.py --src SRC --build BUILD run GROUP               # one group
    bgsync-vm.py --src SRC --build BUILD exec [--timeout S] -- CMD...
    bgsync-vm.py --src SRC --build BUILD list

A fresh VM per group, every wait bounded, one retry of a failed group, the
flake rate printed. Exit 77 (meson's skip) only when qemu or the kernel cannot
run here. See doc/testing-vm.md.
"""
import argparse
import fcntl
import glob
import gzip
import json
import lzma
import os
import re
import resource
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time

SKIP = 77
QEMU = "qemu-system-x86_64"
STAGE1_MODULES = ["virtio_pci", "9pnet_virtio", "9p"]
GUEST_TOOLS = ["/usr/libexec/bluetooth/bluetoothd", "/usr/bin/btvirt",
               "/usr/bin/btmon", "/usr/bin/btmgmt", "/usr/bin/dbus-daemon",
               "/usr/bin/python3"]
LOCK = "/tmp/bgsync-vm.lock"

_current = {"proc": None}


def log(msg):
    print(f"bgsync-vm: {msg}", flush=True)


class Skip(Exception):
    pass


class Broken(Exception):
    pass


# ---------------------------------------------------------------- preflight

def _elf_is_static(path):
    """True if the ELF file has no PT_INTERP (statically linked)."""
    with open(path, "rb") as f:
        h = f.read(64)
        if h[:4] != b"\x7fELF" or h[4] != 2:
            return False
        phoff, = struct.unpack_from("<Q", h, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", h, 0x36)
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            if struct.unpack("<I", f.read(4))[0] == 3:
                return False
    return True


def _version_key(v):
    return [int(x) if x.isdigit() else x for x in re.split(r"[.-]", v)]


def find_kernel():
    """(vmlinuz, version) of a Debian kernel whose modules are installed."""
    want = os.environ.get("BGSYNC_VM_KERNEL")
    cands = [want] if want else glob.glob("/boot/vmlinuz-*")
    found = []
    for k in cands:
        ver = os.path.basename(k)[len("vmlinuz-"):]
        if os.path.exists(f"/lib/modules/{ver}/modules.dep") and os.access(k, os.R_OK):
            found.append((ver, k))
    if not found:
        raise Skip("no bootable kernel: need /boot/vmlinuz-<v> with /lib/modules/<v> "
                   "(Debian package linux-image-amd64; scripts/install-deps.sh --vm)")
    found.sort(key=lambda t: _version_key(t[0]))
    ver, k = found[-1]
    return k, ver


def preflight():
    qemu = shutil.which(QEMU)
    if not qemu:
        raise Skip(f"{QEMU} not installed (qemu-system-x86; scripts/install-deps.sh --vm)")
    try:
        r = subprocess.run([qemu, "-accel", "help"], capture_output=True,
                           text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Skip(f"{QEMU} cannot run: {e}")
    if r.returncode != 0 or "tcg" not in r.stdout:
        raise Skip(f"{QEMU} cannot run TCG: {r.stdout}{r.stderr}")
    kernel, kver = find_kernel()
    bb = "/bin/busybox"
    if not os.path.exists(bb) or not _elf_is_static(bb):
        raise Skip("no static /bin/busybox for the initramfs (busybox-static)")
    missing = [t for t in GUEST_TOOLS if not os.access(t, os.X_OK)]
    if missing:
        # not a skip: the test command installs these, a missing one is a bug
        raise Broken("missing in the host root (the VM's root): " + " ".join(missing)
                     + " -- run scripts/install-deps.sh --vm")
    return qemu, kernel, kver


# ---------------------------------------------------------------- initramfs

class Cpio:
    """Minimal writer of the newc cpio format the kernel unpacks."""

    def __init__(self):
        self.out = bytearray()
        self.ino = 1

    def _add(self, name, mode, data=b"", rdev=(0, 0), nlink=1):
        name_b = name.encode() + b"\0"
        hdr = "070701" + "".join(f"{x:08x}" for x in (
            self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0,
            rdev[0], rdev[1], len(name_b), 0))
        self.ino += 1
        self.out += hdr.encode() + name_b
        self.out += b"\0" * ((4 - len(self.out) % 4) % 4)
        self.out += data
        self.out += b"\0" * ((4 - len(self.out) % 4) % 4)

    def dir(self, name):
        self._add(name, 0o040755, nlink=2)

    def file(self, name, data, mode=0o644):
        self._add(name, 0o100000 | mode, data)

    def chardev(self, name, major, minor):
        self._add(name, 0o020600, rdev=(major, minor))

    def finish(self):
        self._add("TRAILER!!!", 0)
        return bytes(self.out)


def _read_module(path):
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".xz"):
        return lzma.decompress(data)
    if path.endswith(".gz"):
        return gzip.decompress(data)
    if path.endswith(".zst"):
        return subprocess.run(["zstd", "-dc", path], check=True,
                              capture_output=True).stdout
    return data


def stage1_modules(kver):
    """Module files for the initramfs in `modprobe --show-depends` order."""
    order = []
    for m in STAGE1_MODULES:
        r = subprocess.run(["modprobe", "-S", kver, "--show-depends", m],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise Skip(f"kernel {kver} has no module {m}: {r.stderr.strip()}")
        for line in r.stdout.splitlines():
            parts = line.split()
            if parts and parts[0] == "insmod" and parts[1] not in order:
                order.append(parts[1])
    return order


def build_initramfs(src, outdir, kver):
    mods = stage1_modules(kver)
    c = Cpio()
    for d in ("bin", "dev", "proc", "sys", "newroot", "modules"):
        c.dir(d)
    # the kernel opens /dev/console for init's stdio before devtmpfs exists
    c.chardev("dev/console", 5, 1)
    with open("/bin/busybox", "rb") as f:
        c.file("bin/busybox", f.read(), 0o755)
    with open(os.path.join(src, "tests/vm/stage1-init.sh"), "rb") as f:
        c.file("init", f.read(), 0o755)
    names = []
    for p in mods:
        n = re.sub(r"\.(xz|gz|zst)$", "", os.path.basename(p))
        c.file("modules/" + n, _read_module(p))
        names.append(n)
    c.file("modules.order", ("\n".join(names) + "\n").encode())
    data = c.finish()
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, f"initramfs-{kver}.cpio")
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    log(f"initramfs {path} ({len(data) // 1024} KiB, modules: {' '.join(names)})")
    return path


# ---------------------------------------------------------------- one VM

class Env:
    def __init__(self, args):
        self.src = os.path.realpath(args.src)
        self.build = os.path.realpath(args.build)
        self.work = os.path.join(self.build, "tests", "vm")
        self.results = os.path.join(self.work, "results")
        self.qemu, self.kernel, self.kver = preflight()
        self.initrd = build_initramfs(self.src, self.work, self.kver)
        self.kvm = os.environ.get("BGSYNC_VM_KVM", "") in ("1", "yes", "true")
        self.mem = int(os.environ.get("BGSYNC_VM_MEM", "1024"))
        self.smp = int(os.environ.get("BGSYNC_VM_SMP", "2"))
        self.ready_timeout = int(os.environ.get("BGSYNC_VM_READY_TIMEOUT", "90"))
        # boot + stack + shutdown on top of a job's own timeout
        self.boot_slack = int(os.environ.get("BGSYNC_VM_BOOT_SLACK", "120"))


def read_status(d):
    st = {}
    try:
        with open(os.path.join(d, "status")) as f:
            for line in f:
                k, _, v = line.strip().partition("=")
                st[k] = v
    except OSError:
        pass
    return st


def run_vm(env, name, command, outdir, job_timeout, deadline=None):
    """Boot one VM, run `command` (a shell string) inside. Returns a dict."""
    if os.path.isdir(outdir):
        shutil.rmtree(outdir)
    os.makedirs(outdir)
    with open(os.path.join(outdir, "job.sh"), "w") as f:
        f.write("# run by guest-init.sh inside the VM, cwd $BGSYNC_VM_RESULTS/artifacts\n")
        f.write(command + "\n")
    with open(os.path.join(outdir, "job.env"), "w") as f:
        for k, v in (("BGSVM_GROUP", name), ("BGSVM_SRC", env.src),
                     ("BGSVM_BUILD", env.build),
                     ("BGSVM_JOB_TIMEOUT", str(job_timeout)),
                     ("BGSVM_READY_TIMEOUT", str(env.ready_timeout))):
            f.write(f"{k}={shlex.quote(v)}\n")
    accel = ["-accel", "kvm", "-cpu", "host"] if env.kvm else \
        ["-accel", "tcg,thread=multi", "-cpu", "max"]
    append = ("console=ttyS0 panic=-1 loglevel=4 mitigations=off "
              f"bgsvm.init={env.src}/tests/vm/guest-init.sh "
              f"bgsvm.src={env.src} bgsvm.build={env.build}")
    cmd = [env.qemu, *accel, "-m", str(env.mem), "-smp", str(env.smp),
           "-nographic", "-no-reboot", "-nic", "none",
           "-kernel", env.kernel, "-initrd", env.initrd, "-append", append,
           "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,"
                      "readonly=on,multidevs=remap",
           "-virtfs", f"local,path={outdir},mount_tag=results,security_model=none,"
                      "multidevs=remap",
           # the trees again on their own, for paths the guest covers with tmpfs
           "-virtfs", f"local,path={env.src},mount_tag=src,security_model=none,"
                      "readonly=on,multidevs=remap",
           "-virtfs", f"local,path={env.build},mount_tag=build,security_model=none,"
                      "readonly=on,multidevs=remap"]
    with open(os.path.join(outdir, "qemu-cmdline"), "w") as f:
        f.write(shlex.join(cmd) + "\n")
    vm_timeout = job_timeout + env.ready_timeout + env.boot_slack
    if deadline is not None:
        vm_timeout = max(1, min(vm_timeout, int(deadline - time.monotonic())))
    t0 = time.monotonic()
    console = open(os.path.join(outdir, "console.log"), "wb")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=console,
                            stderr=subprocess.STDOUT, start_new_session=True)
    _current["proc"] = proc
    timed_out = threading.Event()

    def expire():
        timed_out.set()
        proc.kill()

    timer = threading.Timer(vm_timeout, expire)
    timer.daemon = True  # a SIGTERM'd runner must not wait for it
    timer.start()
    _pid, wstatus, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(wstatus)
    timer.cancel()
    _current["proc"] = None
    console.close()
    wall = time.monotonic() - t0
    st = read_status(outdir)
    with open(os.path.join(outdir, "console.log"), "rb") as f:
        booted = b"bgsync-vm stage1: up" in f.read()
    res = {"wall": wall, "maxrss_mb": ru.ru_maxrss // 1024, "status": st,
           "qemu_rc": proc.returncode, "dir": outdir, "booted": booted}
    for k in ("ready", "boot", "job_end"):
        try:
            res[k] = float(st[k])
        except (KeyError, ValueError):
            res[k] = None
    if timed_out.is_set():
        res["result"], res["why"] = "fail", f"VM killed after {vm_timeout}s"
    elif "stack" in st:
        res["result"], res["why"] = "fail", "stack " + st["stack"]
    elif "job_exit" not in st:
        res["result"], res["why"] = "fail", \
            f"VM ended before the job finished (qemu rc {proc.returncode}; see console.log)"
    elif st["job_exit"] == "0":
        res["result"], res["why"] = "pass", ""
        if not st.get("bluetoothd", "").startswith("alive"):
            res["result"], res["why"] = "fail", "bluetoothd died during the job"
    elif st["job_exit"] == str(SKIP):
        res["result"], res["why"] = "skip", "job skipped (exit 77)"
    elif st["job_exit"] in ("124", "137"):
        res["result"], res["why"] = "fail", f"job timed out after {job_timeout}s"
    else:
        res["result"], res["why"] = "fail", f"job exited {st['job_exit']}"
        if st.get("bluetoothd", "").startswith("dead"):
            res["why"] += " (bluetoothd died: " + st["bluetoothd"] + ")"
    return res


def tail(path, n=40):
    try:
        with open(path, errors="replace") as f:
            lines = f.readlines()
    except OSError:
        return f"    ({os.path.basename(path)} missing)\n"
    return "".join("    | " + l for l in lines[-n:])


def keep_failure(env, name, attempt, d):
    """Move a failed attempt to results/failures/ (the last 10 are kept) so a
    later run of the group does not wipe the evidence of a flake."""
    root = os.path.join(env.results, "failures")
    os.makedirs(root, exist_ok=True)
    dest = os.path.join(root, f"{time.strftime('%Y%m%d-%H%M%S')}-{name}-attempt-{attempt}")
    shutil.move(d, dest)
    for old in sorted(os.listdir(root))[:-10]:
        shutil.rmtree(os.path.join(root, old), ignore_errors=True)
    return dest


def show_failure(res):
    d = res["dir"]
    log(f"  logs kept in {d}")
    log(f"    job.log bluetoothd.log btvirt.log stack.log console.log status; "
        f"HCI trace: btmon -r {d}/hci.btsnoop")
    for name, n in (("status", 20), ("job.log", 60), ("stack.log", 20),
                    ("console.log", 25), ("bluetoothd.log", 25)):
        p = os.path.join(d, name)
        if os.path.exists(p) or name in ("job.log", "status"):
            print(f"  --- {name} (last {n} lines)\n{tail(p, n)}", end="", flush=True)


def fmt(x):
    return "-" if x is None else f"{x:.1f}"


# ---------------------------------------------------------------- groups

SCENARIO_RUN = "tests/scenarios/run.py"


_LIST_SCENARIOS = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import backends, scenarios
vm = backends.BACKENDS["vm"]
out = []
for name, needs, _fn in scenarios.SCENARIOS:
    why = None
    for n in needs:
        if n not in vm.capabilities:
            why = vm.SKIP_REASONS.get(n, "vm backend cannot do " + n)
            break
    out.append([name, why])
print(json.dumps(out))
"""


def list_scenarios(env):
    """[(name, why-not-on-vm or None)] of the scenario suite, None if absent.
    Scenarios the vm backend cannot run are not worth a VM boot."""
    d = os.path.join(env.src, os.path.dirname(SCENARIO_RUN))
    if not os.path.exists(os.path.join(env.src, SCENARIO_RUN)):
        return None
    r = subprocess.run(["/usr/bin/python3", "-c", _LIST_SCENARIOS, d],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise Broken(f"cannot list {d}'s scenarios: {r.stdout}{r.stderr}")
    return [tuple(x) for x in json.loads(r.stdout)]


def scenario_command(env, names):
    # BGSYNC_WEARABLE: the C wearable as a pluggable peer, as tests/sim passes it
    return (f"BGSYNC_WEARABLE={env.build}/wearable/bgsync-wearable "
            f"/usr/bin/python3 {env.src}/{SCENARIO_RUN} --backend vm "
            f"--logdir \"$BGSYNC_VM_RESULTS/scenarios\" --only {','.join(names)}")


def load_groups(env, path, quiet=False):
    """[(name, timeout, command)] from groups.conf. Lines are either
    `name timeout command` or `scenarios name timeout NAMES|*`: a group of the
    scenario suite (backend vm); `*` takes every scenario no other line names,
    so new scenarios run without an edit here."""
    groups, scen = [], []
    with open(path) as f:
        for ln, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 2)
            if parts[0] == "scenarios":
                sp = line.split()
                if len(sp) != 4:
                    raise Broken(f"{path}:{ln}: want 'scenarios name timeout NAMES|*'")
                scen.append((len(groups), sp[1], int(sp[2]), sp[3]))
                groups.append(None)
                continue
            if len(parts) != 3:
                raise Broken(f"{path}:{ln}: want 'name timeout command'")
            name, timeout, command = parts
            command = command.replace("@SRC@", env.src).replace("@BUILD@", env.build)
            groups.append((name, int(timeout), command, None))
    if scen:
        listed = list_scenarios(env)
        if listed is None:
            log(f"no {SCENARIO_RUN}: scenario groups left out")
            listed = []
        known = [n for n, _why in listed]
        cannot = {n: why for n, why in listed if why}
        named = set()
        for _i, _n, _t, names in scen:
            if names != "*":
                named.update(names.split(","))
        for missing in sorted(named - set(known)):
            if known:
                log(f"groups.conf names scenario {missing}, which the suite no longer has")
        for i, name, timeout, names in scen:
            if names == "*":
                want = [n for n in known if n not in named]
            else:
                want = [n for n in names.split(",") if n in known]
            for n in want:
                if n in cannot and not quiet:
                    log(f"[{name}] scenario {n} skipped on vm: {cannot[n]}")
            want = [n for n in want if n not in cannot]
            if want:
                groups[i] = (name, timeout, scenario_command(env, want), want)
    return [g for g in groups if g is not None]


def record_history(env, name, attempt, res):
    with open(os.path.join(env.work, "flake-history.tsv"), "a") as f:
        f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')}\t{name}\t{attempt}\t"
                f"{res['result']}\t{res['wall']:.1f}\t{res['why']}\n")


def history_rate(env):
    """(groups that needed a retry and then passed, groups run) over all runs."""
    try:
        with open(os.path.join(env.work, "flake-history.tsv")) as f:
            rows = [l.rstrip("\n").split("\t") for l in f]
    except OSError:
        return 0, 0, 0
    first = [r for r in rows if len(r) >= 4 and r[2] == "1" and r[3] != "skip"]
    firstfail = [r for r in first if r[3] == "fail"]
    retry_pass = [r for r in rows if len(r) >= 4 and r[2] == "2" and r[3] == "pass"]
    return len(firstfail), len(retry_pass), len(first)


def load_known_drift(path):
    """{scenario: why} of tests/vm/known-drift.conf: scenarios known to fail
    on the real bluetoothd until the simulator or the scenario is fixed."""
    known = {}
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    name, _, why = line.partition(" ")
                    known[name] = why.strip()
    except OSError:
        pass
    return known


SCENARIO_LINE = re.compile(r"^(PASS|FAIL|SKIP)\s+(\S+)\s*(.*)$")


def scenario_results(outdir):
    """{scenario: (status, detail)} from run.py's output in job.log."""
    res = {}
    try:
        with open(os.path.join(outdir, "job.log"), errors="replace") as f:
            for line in f:
                m = SCENARIO_LINE.match(line.rstrip("\n"))
                if m:
                    res[m.group(2)] = (m.group(1).lower(), m.group(3).strip())
    except OSError:
        pass
    return res


def judge_scenarios(name, res, todo, known, outcome):
    """Turn one attempt of a scenario group into pass/fail by scenario.
    Returns the scenarios to retry (failed, or never reported, and not known
    drift). A group whose only failures are known drift passes."""
    got = scenario_results(res["dir"])
    retry = []
    for n in todo:
        st, detail = got.get(n, ("fail", "no result (job: " + (res["why"] or "ok") + ")"))
        if st == "fail" and n in known:
            st = "xfail"
            log(f"[{name}] XFAIL {n}: {detail} -- known drift: {known[n]}")
        elif st == "pass" and n in known:
            log(f"[{name}] XPASS {n}: passes now; drop it from known-drift.conf")
        elif st == "fail":
            retry.append(n)
        outcome[n] = (st, detail)
    bluetoothd_dead = res["status"].get("bluetoothd", "").startswith("dead")
    if res["result"] == "fail" and not retry and not bluetoothd_dead and \
            res["status"].get("job_exit") not in (None, "124", "137"):
        res["result"], res["why"] = "pass", "only known drift failed"
    elif res["result"] == "pass" and retry:
        res["result"], res["why"] = "fail", "scenarios failed: " + " ".join(retry)
    elif res["result"] == "fail" and not retry:
        # bluetoothd died or the job was cut short: run them all again
        retry = [n for n in todo if n not in known]
    return retry


def run_group(env, name, timeout, command, retries=1, deadline=None, scen=None,
              known=None, outcome=None):
    """Run a group in fresh VMs, retrying once. For a scenario group the
    retry runs only the scenarios that failed; `outcome` gets each one's
    final (status, detail)."""
    attempts = []
    todo = list(scen or [])
    known = known or {}
    outcome = {} if outcome is None else outcome
    for attempt in range(1, retries + 2):
        if deadline is not None and attempt > 1 and time.monotonic() + 60 > deadline:
            log(f"[{name}] no retry: the tier budget is spent")
            break
        if scen:
            command = scenario_command(env, todo)
        outdir = os.path.join(env.results, name, f"attempt-{attempt}")
        what = f" ({len(todo)} scenarios)" if scen else ""
        log(f"[{name}] attempt {attempt}{what}: booting ({'kvm' if env.kvm else 'tcg'}, "
            f"{env.mem} MiB, {env.smp} vcpu, job timeout {timeout}s)")
        res = run_vm(env, name, command, outdir, timeout, deadline)
        attempts.append(res)
        if scen:
            todo = judge_scenarios(name, res, todo, known, outcome)
        record_history(env, name, attempt, res)
        ready = res["ready"]
        job = (res["job_end"] - ready) if res["job_end"] and ready else None
        log(f"[{name}] attempt {attempt}: {res['result'].upper()} {res['why']} "
            f"(wall {res['wall']:.1f}s, ready at {fmt(ready)}s after boot, job {fmt(job)}s, "
            f"qemu max RSS {res['maxrss_mb']} MiB)")
        if res["result"] in ("pass", "skip"):
            if attempt > 1:
                log(f"[{name}] FLAKY: failed, then passed on retry; "
                    f"first failure kept in {attempts[0]['dir']}")
            break
        res["dir"] = keep_failure(env, name, attempt, res["dir"])
        show_failure(res)
        if scen and not todo:
            break
    return attempts


def cmd_suite(env, args):
    groups = load_groups(env, args.groups_file)
    want = args.groups or os.environ.get("BGSYNC_VM_GROUPS", "")
    if want:
        names = [g for g in want.split(",") if g]
        unknown = set(names) - {g[0] for g in groups}
        if unknown:
            raise Broken(f"unknown group(s): {' '.join(sorted(unknown))}")
        groups = [g for g in groups if g[0] in names]
    budget = float(os.environ.get("BGSYNC_VM_BUDGET", str(args.budget)))
    t0 = time.monotonic()
    summary = []
    known = load_known_drift(os.path.join(os.path.dirname(args.groups_file),
                                          "known-drift.conf"))
    if os.environ.get("BGSYNC_VM_STRICT", "") in ("1", "yes", "true"):
        known = {}
    outcome = {}
    for name, timeout, command, scen in groups:
        spent = time.monotonic() - t0
        if spent + 60 > budget:
            log(f"[{name}] NOT RUN: tier budget {budget:.0f}s would be exceeded "
                f"({spent:.0f}s spent)")
            summary.append((name, "not run", []))
            continue
        attempts = run_group(env, name, timeout, command, deadline=t0 + budget,
                             scen=scen, known=known, outcome=outcome)
        if not summary and not any(a["booted"] for a in attempts):
            # not one attempt reached our /init: the kernel cannot run here
            print(f"SKIP: bgsync VM tier cannot run here: {env.kernel} never reached "
                  f"the initramfs under qemu (console: {attempts[-1]['dir']}/console.log)",
                  flush=True)
            return SKIP
        summary.append((name, attempts[-1]["result"], attempts))
    total = time.monotonic() - t0

    log("summary:")
    for name, result, attempts in summary:
        walls = "+".join(f"{a['wall']:.0f}s" for a in attempts)
        readies = ",".join(fmt(a["ready"]) for a in attempts)
        log(f"  {name:24s} {result:8s} attempts {len(attempts)} wall {walls or '-'} "
            f"ready {readies or '-'}s")
    if outcome:
        by = {}
        for n, (st, _d) in outcome.items():
            by.setdefault(st, []).append(n)
        log("scenarios on the real bluetoothd: " + ", ".join(
            f"{len(v)} {k}" for k, v in sorted(by.items())))
        for st in ("fail", "xfail"):
            for n in sorted(by.get(st, [])):
                log(f"  {st.upper():5s} {n}: {outcome[n][1]}")
    ran = [s for s in summary if s[2] and s[1] != "skip"]
    flaky = [s for s in ran if len(s[2]) > 1 and s[1] == "pass"]
    failed = [s for s in summary if s[1] not in ("pass", "skip")]
    ff, rp, n = history_rate(env)
    log(f"flake rate this run: {len(flaky)}/{len(ran)} groups passed only on retry; "
        f"{len(failed)} failed; tier wall {total:.0f}s")
    if n:
        log(f"flake rate in {env.work}/flake-history.tsv: first attempts failed "
            f"{ff}/{n} ({100.0 * ff / n:.0f}%), of which {rp} passed on retry")
    if failed:
        log("FAILED: " + " ".join(s[0] for s in failed))
        return 1
    if summary and all(s[1] == "skip" for s in summary):
        return SKIP
    return 0


def cmd_run(env, args):
    args.groups = ",".join(args.group)
    return cmd_suite(env, args)


def cmd_exec(env, args):
    command = shlex.join(args.command) if len(args.command) > 1 else args.command[0]
    attempts = run_group(env, args.name, args.timeout, command, retries=args.retries)
    res = attempts[-1]
    log(f"results in {res['dir']}")
    if res["result"] == "skip":
        return SKIP
    return 0 if res["result"] == "pass" else 1


def main():
    here = os.path.dirname(os.path.realpath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", default=os.path.dirname(os.path.dirname(here)))
    ap.add_argument("--build", default=os.environ.get("MESON_BUILD_ROOT", "build-vm"))
    ap.add_argument("--groups-file", default=os.path.join(here, "groups.conf"))
    ap.add_argument("--budget", type=float, default=1800,
                    help="seconds for the whole suite (env BGSYNC_VM_BUDGET)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("suite", help="run the groups of groups.conf")
    s.add_argument("--groups", default="")
    r = sub.add_parser("run", help="run the named group(s)")
    r.add_argument("group", nargs="+")
    e = sub.add_parser("exec", help="run a command in a fresh VM")
    e.add_argument("--name", default="exec")
    e.add_argument("--timeout", type=int, default=300)
    e.add_argument("--retries", type=int, default=0)
    e.add_argument("command", nargs="+")
    sub.add_parser("list", help="list the groups")
    args = ap.parse_args()

    def on_term(signum, _frame):
        p = _current["proc"]
        if p:
            p.kill()
        log(f"killed by signal {signum}")
        sys.exit(1)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        if args.cmd == "list":
            paths = argparse.Namespace(src=os.path.realpath(args.src),
                                       build=os.path.realpath(args.build))
            for name, timeout, command, _scen in load_groups(paths, args.groups_file,
                                                            quiet=True):
                print(f"{name}\t{timeout}s\t{command}")
            return 0
        env = Env(args)
        # one VM at a time on this machine: wait for another run's VM to end
        lock = open(LOCK, "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            wait = int(os.environ.get("BGSYNC_VM_LOCK_TIMEOUT", "900"))
            log(f"another bgsync-vm run holds {LOCK}; waiting up to {wait}s")

            def give_up(*_a):
                raise Broken(f"{LOCK} still held after {wait}s")
            signal.signal(signal.SIGALRM, give_up)
            signal.alarm(wait)
            fcntl.flock(lock, fcntl.LOCK_EX)
            signal.alarm(0)
        return {"suite": cmd_suite, "run": cmd_run, "exec": cmd_exec}[args.cmd](env, args)
    except Skip as e:
        print(f"SKIP: bgsync VM tier cannot run here: {e}", flush=True)
        return SKIP
    except Broken as e:
        print(f"bgsync-vm: ERROR: {e}", flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
