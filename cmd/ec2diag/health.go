package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ec2diag/ec2diag/collectors/nethealth"
	"github.com/ec2diag/ec2diag/internal/hostfs"
	"github.com/spf13/cobra"
)

func newHealthCmd(g *globalFlags) *cobra.Command {
	var root, format string
	var interval time.Duration
	c := &cobra.Command{
		Use:   "health [--sysfs-root DIR] [--format json]",
		Short: "Check ENA interfaces and EFA devices; exit 1 if any is degraded, down or unknown",
		Long: `Check every ENA network interface (found by driver, not by name) and EFA device:
link and carrier state, carrier flaps, drops, device resets, and ENA's allowance
counters from the driver's ethtool statistics (bandwidth, packets per second,
connection tracking, link-local), and every EFA hw_counter. Counters are read twice,
--interval apart, so "rising" means rising now.

JSON (--format json): one object per device with name, kind (ena|efa), state
(ok|degraded|down), reasons, and the figures read (figures, deltas, counters).
Exit status 0 when all are ok or there are none, 1 when any is degraded, down or unknown (nothing could be read).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			stats, closeStats, err := nethealth.EthtoolStats()
			if err != nil {
				stats = nil
			}
			defer closeStats()
			if root == "" {
				root = g.hostRoot().Sys
			}
			if root != hostfs.Default().Sys {
				stats = nil // the fixture's interfaces are not this machine's
			}
			c := nethealth.NewChecker(root, stats)
			defer c.Close()
			c.Check()
			time.Sleep(interval)
			devs := c.Check()
			out := cmd.OutOrStdout()
			bad := false
			for _, d := range devs {
				bad = bad || d.State != nethealth.OK
			}
			if format == "json" {
				enc := json.NewEncoder(out)
				for i := range devs {
					if err := enc.Encode(&devs[i]); err != nil {
						return err
					}
				}
			} else if len(devs) == 0 {
				fmt.Fprintf(out, "no ENA interfaces or EFA devices under %s (not a Nitro instance, or not on EC2)\n", root)
			} else {
				for _, d := range devs {
					name := d.Name
					if d.Netdev != "" {
						name += " (" + d.Netdev + ")"
					}
					fmt.Fprintf(out, "%-4s %-20s %-9s %s\n", d.Kind, name, d.State, strings.Join(d.Reasons, "; "))
				}
			}
			if bad {
				return &exitError{code: exitFailure}
			}
			return nil
		},
	}
	c.Flags().StringVar(&root, "sysfs-root", "", "where sysfs is mounted (default /sys; a fixture tree in tests)")
	c.Flags().StringVar(&format, "format", "text", "output: text or json")
	c.Flags().DurationVar(&interval, "interval", 2*time.Second, "time between the two readings")
	return c
}
