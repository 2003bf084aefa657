package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/chorus-rtc/chorus/master/medianodes"
)

func autoscaleCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "autoscale", Short: "Media node autoscaling tools"}
	clusterID := firstEnv("chorus", "CHORUS_CLUSTER_ID", "OPENVIDU_PRO_CLUSTER_ID")
	plan := &cobra.Command{
		Use:   "plan",
		Short: "Print the autoscaling event the algorithm would emit for a cluster described on stdin",
		Long: `chorus autoscale plan reads {"config": {...}, "status": {...}} on stdin: the
"system" object of an autoscaling event (config: maxNodes, minNodes, maxAvgLoad,
minAvgLoad; status: runningNodes, launchingNodes, waitingIdleToTerminateNodes and
canceledNodes, each a list of {"id", "environmentId", "ip", "load", "status"}).
It prints the autoscaling event (as a CDR line, indented) that the cluster's
autoscaler would emit, or says that it would do nothing. numNodes, totalLoad and
avgLoad are computed from the lists.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in, err := io.ReadAll(cmd.InOrStdin())
			if err != nil {
				return err
			}
			out, err := medianodes.PlanEvent(in, clusterID, time.Now().UnixMilli())
			if err != nil {
				return err
			}
			if out == nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "Autoscaling doing nothing")
				return nil
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), string(out))
			return err
		},
	}
	plan.Flags().StringVar(&clusterID, "cluster-id", clusterID, "clusterId of the event (env CHORUS_CLUSTER_ID, OPENVIDU_PRO_CLUSTER_ID)")
	cmd.AddCommand(plan)
	return cmd
}

// firstEnv returns the first set environment variable among names, or def.
func firstEnv(def string, names ...string) string {
	for _, n := range names {
		if v, ok := os.LookupEnv(n); ok && v != "" {
			return v
		}
	}
	return def
}
