package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/chorus-rtc/chorus/shared/config"
)

func configCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Configuration tools"}
	cmd.AddCommand(&cobra.Command{
		Use:   "reference",
		Short: "Print every configuration setting as a Markdown table (the README's reference)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := cmd.OutOrStdout()
			fmt.Fprintln(w, "| YAML key / flag | Environment | Default | Roles | Meaning |")
			fmt.Fprintln(w, "|---|---|---|---|---|")
			for _, k := range config.Keys() {
				roles := make([]string, len(k.Roles))
				for i, r := range k.Roles {
					roles[i] = string(r)
				}
				fmt.Fprintf(w, "| `%s` / `--%s` | %s | %s | %s | %s |\n",
					k.Name, k.Flag(), "`"+strings.Join(k.Env, "`, `")+"`", formatDefault(k.Default), strings.Join(roles, ", "), k.Usage)
			}
			return nil
		},
	})
	return cmd
}

func formatDefault(v any) string {
	switch d := v.(type) {
	case string:
		if d == "" {
			return "(empty)"
		}
		return "`" + d + "`"
	case []string:
		if len(d) == 0 {
			return "(empty)"
		}
		return "`" + strings.Join(d, ",") + "`"
	case time.Duration:
		return "`" + d.String() + "`"
	}
	return fmt.Sprintf("`%v`", v)
}
