package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/spf13/cobra"
)

// healthcheckCommand is the containers' HEALTHCHECK: the image has no shell
// or curl, so the binary checks its own role's health endpoint.
func healthcheckCommand() *cobra.Command {
	var timeout time.Duration
	var insecure bool
	cmd := &cobra.Command{
		Use:   "healthcheck URL...",
		Short: "Exit 0 when one of the URLs answers 2xx (a container health check: /chorus/health of any role)",
		Long: `chorus healthcheck is the containers' health check (the image has no shell or
curl). It succeeds as soon as one URL answers 2xx: give http:// and https://
to check a proxy whatever its TLS mode.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			client := &http.Client{Transport: &http.Transport{
				// The proxy's self-signed certificate is checked by no one.
				TLSClientConfig: &tls.Config{InsecureSkipVerify: insecure}, //nolint:gosec // opt-in, for self-signed proxies
			}}
			var errs []error
			for _, u := range args {
				err := check(ctx, client, u)
				if err == nil {
					return nil
				}
				errs = append(errs, err)
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Second, "Time the endpoint has to answer.")
	cmd.Flags().BoolVar(&insecure, "insecure", false, "Accept any TLS certificate (the proxy's self-signed one).")
	return cmd
}

func check(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s answered %s: %s", url, resp.Status, body)
	}
	return nil
}
