package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/chorus-rtc/chorus/shared/config"
	"github.com/chorus-rtc/chorus/shared/store"
)

func eventsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Operate the cluster's event bus (CDR and webhook events)",
	}
	cmd.AddCommand(toolCommand("tail", "Print the cluster's events live, one JSON object a line, as they are emitted",
		func(ctx context.Context, cmd *cobra.Command, st *store.Store) error {
			w := cmd.OutOrStdout()
			for e := range st.SubscribeTail(ctx) {
				fmt.Fprintln(w, string(e.Body))
			}
			return nil
		}, nil))

	dl := &cobra.Command{Use: "dead-letter", Short: "Events the webhook did not accept before their deadline"}
	var limit int64
	dl.AddCommand(toolCommand("list", "List dead letters, oldest first, one JSON object a line",
		func(ctx context.Context, cmd *cobra.Command, st *store.Store) error {
			letters, err := st.DeadLetters(ctx, limit)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			for _, d := range letters {
				if err := enc.Encode(deadLetterJSON(d)); err != nil {
					return err
				}
			}
			return nil
		}, func(c *cobra.Command) { c.Flags().Int64Var(&limit, "limit", 1000, "Most dead letters listed") }))
	var ids []string
	var all bool
	dl.AddCommand(toolCommand("replay", "Put dead letters back on the bus: masters deliver them again (same eventId)",
		func(ctx context.Context, cmd *cobra.Command, st *store.Store) error {
			if !all && len(ids) == 0 {
				return errors.New("say which: --all, or --id <entry id or eventId> (repeatable)")
			}
			letters, err := st.DeadLetters(ctx, 1<<20)
			if err != nil {
				return err
			}
			wanted := map[string]bool{}
			for _, id := range ids {
				wanted[id] = true
			}
			n := 0
			for _, d := range letters {
				if !all && !wanted[d.StreamID] && !wanted[d.ID] {
					continue
				}
				if err := st.ReplayDeadLetter(ctx, d); err != nil {
					return err
				}
				n++
			}
			fmt.Fprintf(cmd.OutOrStdout(), "replayed %d event(s)\n", n)
			return nil
		}, func(c *cobra.Command) {
			c.Flags().StringSliceVar(&ids, "id", nil, "Dead letter to replay: its entry id or its eventId (repeatable)")
			c.Flags().BoolVar(&all, "all", false, "Replay every dead letter")
		}))
	cmd.AddCommand(dl)
	return cmd
}

type deadLetterOut struct {
	Entry    string          `json:"entry"`
	EventID  string          `json:"eventId"`
	Event    string          `json:"event"`
	Session  string          `json:"session"`
	Error    string          `json:"error"`
	FailedAt string          `json:"failedAt"`
	Body     json.RawMessage `json:"body"`
}

func deadLetterJSON(d store.DeadLetter) deadLetterOut {
	body := json.RawMessage(d.Body)
	if !json.Valid(body) {
		body, _ = json.Marshal(string(d.Body))
	}
	return deadLetterOut{Entry: d.StreamID, EventID: d.ID, Event: d.Name, Session: string(d.Session), Error: d.Error,
		FailedAt: time.UnixMilli(d.FailedAt).UTC().Format(time.RFC3339Nano), Body: body}
}

// toolCommand builds an operator command that needs only the cluster id and
// Redis.
func toolCommand(use, short string, run func(context.Context, *cobra.Command, *store.Store) error, flags func(*cobra.Command)) *cobra.Command {
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cmd.Flags(), config.RoleTool, os.Environ())
			if err != nil {
				return err
			}
			if err := cfg.Validate(config.RoleTool); err != nil {
				return err
			}
			rdb, err := store.NewClient(cfg.Redis)
			if err != nil {
				return err
			}
			defer rdb.Close()
			st := store.New(store.Config{Redis: rdb, ClusterID: cfg.ClusterID,
				EventsMaxLen: cfg.Events.MaxLen, DeadLetterMaxLen: cfg.Events.DeadLetterMaxLen})
			err = run(cmd.Context(), cmd, st)
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		},
	}
	config.RegisterFlags(cmd.Flags(), config.RoleTool)
	if flags != nil {
		flags(cmd)
	}
	return cmd
}
