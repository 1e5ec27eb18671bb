package main

import (
	"fmt"
	"os"
	"syscall"

	"github.com/ec2diag/ec2diag/collectors/kcrash"
	"github.com/spf13/cobra"
)

func newCopyCrashDumpsCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "copy-crash-dumps",
		Short: "Copy the kernel's crash dumps where the agent can read them (the unit runs it as root)",
		Long: `Copy the dmesg files a kernel crash left (pstore under /sys/fs/pstore, systemd-pstore's
archive under /var/lib/systemd/pstore, kdump's under /var/crash; the last MiB of each)
into STATE_DIR/kcrash, owned by the state directory's owner. They are root's alone, and
the agent is not root: the unit runs this before it (ExecStartPre=+, failures ignored).
The agent records each once, as a kernel_crash incident of the boot that crashed
("ec2diag incidents --boot -1"), and removes the copy. Exit status 1 when a dump could
not be read or copied.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(g)
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			st, err := os.Stat(cfg.StateDir)
			if err != nil {
				return &exitError{code: exitFailure, err: err}
			}
			uid, gid := os.Getuid(), os.Getgid()
			if s, ok := st.Sys().(*syscall.Stat_t); ok {
				uid, gid = int(s.Uid), int(s.Gid)
			}
			n, err := kcrash.Copy(g.hostRoot(), cfg.StateDir, uid, gid)
			if n > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "copied %d crash dump(s) to %s/%s\n", n, cfg.StateDir, kcrash.CopyDir)
			}
			if err != nil {
				return &exitError{code: exitFailure, err: err}
			}
			return nil
		},
	}
}
