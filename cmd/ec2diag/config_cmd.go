package main

import (
	"fmt"

	"github.com/ec2diag/ec2diag/internal/config"
	"github.com/spf13/cobra"
)

func newConfigCmd(g *globalFlags) *cobra.Command {
	c := &cobra.Command{Use: "config", Short: "Inspect configuration files"}
	c.AddCommand(&cobra.Command{
		Use:   "check FILE",
		Short: "Check a config file; print every error with file:line:column and key",
		Long: `Check a config file strictly: unknown keys, wrong types and bad values are reported
with file, line, column and key. Exit status 0 when valid, 2 otherwise.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := config.Load(args[0], true); err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), err)
				return &exitError{code: exitUsage}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", args[0])
			return nil
		},
	})
	return c
}

// loadConfig applies the file (if any) and the command-line overrides.
func loadConfig(g *globalFlags) (config.Config, error) {
	path, explicit := config.DefaultPath, false
	if g.configPath != "" {
		path, explicit = g.configPath, true
	}
	cfg, err := config.Load(path, explicit)
	if err != nil {
		return cfg, err
	}
	if g.stateDir != "" {
		cfg.StateDir = g.stateDir
	}
	if g.logLevel != "" {
		cfg.Log.Level = g.logLevel
	}
	if g.logFormat != "" {
		cfg.Log.Format = g.logFormat
	}
	return cfg, nil
}
