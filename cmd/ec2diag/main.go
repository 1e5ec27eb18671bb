// Command ec2diag is the in-instance diagnostics agent for EC2 Linux
// instances: `ec2diag run` is the daemon, the other subcommands inspect its
// state and the instance.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/ec2diag/ec2diag/internal/clock"

	"github.com/ec2diag/ec2diag/internal/hostfs"
	"github.com/spf13/cobra"
)

// version is set at build time: -ldflags "-X main.version=1.2.3".
var version = "dev"

// exitError carries a process exit status through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// failed marks a failure at run time (AWS refused or could not be
// reached): exit status 1, not 2, which is for bad usage.
func failed(err error) error {
	var ee *exitError
	if err == nil || errors.As(err, &ee) {
		return err
	}
	return &exitError{code: exitFailure, err: err}
}

// Exit statuses users script against: 0 ok, 1 failure at run time, 2 bad
// usage or configuration.
const (
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	root := newRoot()
	err := root.Execute()
	if err == nil {
		return
	}
	code := exitUsage
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
		if ee.err != nil {
			fmt.Fprintln(os.Stderr, "ec2diag:", ee.err)
		}
	} else {
		fmt.Fprintln(os.Stderr, "ec2diag:", err)
	}
	os.Exit(code)
}

// globalFlags are accepted by every subcommand that reads config or state,
// so several agents can run side by side (tests do).
type globalFlags struct {
	configPath string
	stateDir   string
	logLevel   string
	logFormat  string
	// root is where the host's /proc, /sys and files are: the running
	// host, or a fixture tree (--host-root, for tests and containers).
	root string
}

// clock is the time the subcommands read.
func (g *globalFlags) clock() clock.Clock { return clock.Real{} }

// hostRoot is the host the subcommands look at.
func (g *globalFlags) hostRoot() hostfs.Root {
	if g.root == "" {
		return hostfs.Default()
	}
	return hostfs.At(g.root)
}

func newRoot() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:   "ec2diag",
		Short: "In-instance diagnostics agent for EC2 Linux instances",
		Long: `ec2diag watches an EC2 Linux instance from the inside: it tails syslog, recognises
cron and timer job runs, samples CPU and memory per process, and when the machine
spikes it records which job and which processes were responsible, on disk and on
the serial console, before the machine can hang.

Run "ec2diag run" as the daemon (the .deb installs a systemd unit for it).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.configPath, "config", "", "config file (default /etc/ec2diag/config.yaml; defaults apply if it does not exist)")
	pf.StringVar(&g.stateDir, "state-dir", "", "state directory (overrides state_dir in the config)")
	pf.StringVar(&g.logLevel, "log-level", "", "log level: debug, info, warn, error (overrides log.level)")
	pf.StringVar(&g.logFormat, "log-format", "", "log output: auto, journal, console, json (overrides log.format)")
	pf.StringVar(&g.root, "host-root", "", "a directory holding the host's proc/, sys/ and files, read instead of the running host's (fixture trees, containers)")
	pf.MarkHidden("host-root")
	root.AddCommand(newRunCmd(g), newVersionCmd(), newConfigCmd(g), newTailCmd(g), newAnalyzeCmd(g), newIncidentsCmd(g), newHealthCmd(g), newAlarmCmd(g), newDashboardCmd(g), newCheckCmd(g), newFleetCmd(g), newCopyCrashDumpsCmd(g))
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "ec2diag %s\n", version)
			return nil
		},
	}
}
