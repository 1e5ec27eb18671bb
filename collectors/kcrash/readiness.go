package kcrash

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/ec2diag/ec2diag/internal/checks/result"
	"github.com/ec2diag/ec2diag/internal/hostfs"
	"golang.org/x/sys/unix"
)

// DropIn is where the package ships the opt-in sysctl drop-in that makes
// an NMI panic the kernel and a panic reboot it.
const DropIn = "/usr/share/ec2diag/sysctl/60-ec2diag-nmi-panic.conf"

// Readiness says whether this machine, hung, can be made to leave a record
// and come back: EC2's SendDiagnosticInterrupt sends it an NMI, which does
// something only with kernel.unknown_nmi_panic=1; the panic reboots it
// only with kernel.panic set; its messages survive only in pstore (and on
// the console, whose last 64 KB EC2 keeps); a vmcore needs a crash kernel
// loaded and room for it. Each is a warn when missing, never a fail: the
// operator chooses (a panic on NMI is a reboot on request).
func Readiness(root hostfs.Root) []result.Result {
	root = root.OrDefault()
	return []result.Result{nmiPanic(root), panicReboot(root), pstore(root), crashDump(root)}
}

func readInt(p string) (int64, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

func nmiPanic(root hostfs.Root) result.Result {
	r := result.Result{Name: "nmi-panic"}
	v, err := readInt(root.ProcPath("sys", "kernel", "unknown_nmi_panic"))
	switch {
	case os.IsNotExist(err):
		r.Status, r.Reason = result.Warn, "this kernel has no kernel.unknown_nmi_panic (not x86): check how it answers EC2's diagnostic interrupt"
	case err != nil:
		r.Status, r.Reason = result.Warn, "kernel.unknown_nmi_panic unreadable: "+err.Error()
	case v == 0:
		r.Status, r.Reason = result.Warn, "kernel.unknown_nmi_panic=0: EC2's diagnostic interrupt (aws ec2 send-diagnostic-interrupt) would be logged and ignored, the hung machine left hung; opt in with "+DropIn
	default:
		r.Status, r.Reason = result.Pass, "kernel.unknown_nmi_panic=1: EC2's diagnostic interrupt panics the kernel, which writes its last messages to the console and pstore"
	}
	return r
}

func panicReboot(root hostfs.Root) result.Result {
	r := result.Result{Name: "panic-reboot"}
	v, err := readInt(root.ProcPath("sys", "kernel", "panic"))
	switch {
	case err != nil:
		r.Status, r.Reason = result.Warn, "kernel.panic unreadable: "+err.Error()
	case v == 0:
		r.Status, r.Reason = result.Warn, "kernel.panic=0: a panicked machine stays down until the StatusCheckFailed alarm reboots it; set it (the drop-in sets 10 s)"
	case v < 0:
		r.Status, r.Reason = result.Pass, "kernel.panic<0: a panic reboots at once"
	default:
		r.Status, r.Reason = result.Pass, fmt.Sprintf("kernel.panic=%d: a panic reboots after %d s", v, v)
	}
	r.Details = map[string]string{"kernel.panic": strconv.FormatInt(v, 10)}
	return r
}

func pstore(root hostfs.Root) result.Result {
	r := result.Result{Name: "pstore"}
	b, err := os.ReadFile(root.SysPath("module", "pstore", "parameters", "backend"))
	backend := strings.TrimSpace(string(b))
	if err != nil || backend == "" || backend == "(null)" {
		r.Status, r.Reason = result.Warn, "no pstore backend: a panic's last messages survive only on the serial console (EC2 keeps its last 64 KB); UEFI boot gives efi_pstore"
		return r
	}
	r.Status, r.Reason = result.Pass, "pstore backend "+backend+": a panic's last messages survive the reboot and ec2diag records them at the next start"
	r.Details = map[string]string{"backend": backend}
	return r
}

func crashDump(root hostfs.Root) result.Result {
	r := result.Result{Name: "crash-dump"}
	loaded, err := readInt(root.SysPath("kernel", "kexec_crash_loaded"))
	if err != nil || loaded != 1 {
		r.Status, r.Reason = result.Warn, "no crash kernel loaded (kdump): a panic leaves its messages, not a vmcore; install kdump-tools and reserve crashkernel= memory for one"
		return r
	}
	size, _ := readInt(root.SysPath("kernel", "kexec_crash_size"))
	r.Details = map[string]string{"crashkernel_bytes": strconv.FormatInt(size, 10)}
	var mem int64
	if b, err := os.ReadFile(root.ProcPath("meminfo")); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				mem = kb << 10
			}
		}
	}
	var st unix.Statfs_t
	dir := root.Path("/var/crash")
	if err := unix.Statfs(dir, &st); err != nil {
		dir = root.Path("/var")
		if err := unix.Statfs(dir, &st); err != nil {
			r.Status, r.Reason = result.Warn, "crash kernel loaded; /var/crash unreadable: "+err.Error()
			return r
		}
	}
	free := int64(st.Bavail) * st.Bsize
	r.Details["free_bytes"], r.Details["mem_bytes"] = strconv.FormatInt(free, 10), strconv.FormatInt(mem, 10)
	// makedumpfile's filtered, compressed dump of a busy machine is most
	// often a fraction of RAM, but a memory hang's is the worst case: RAM
	// full of anonymous pages. Less room than RAM may not hold it.
	if mem > 0 && free < mem {
		r.Status, r.Reason = result.Warn, fmt.Sprintf("crash kernel loaded (%d MiB), but /var/crash has %d MiB free for a dump of %d MiB of RAM", size>>20, free>>20, mem>>20)
		return r
	}
	r.Status, r.Reason = result.Pass, fmt.Sprintf("crash kernel loaded (%d MiB reserved); %d MiB free under /var/crash", size>>20, free>>20)
	return r
}
