package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/redis/go-redis/v9"

	"github.com/chorus-rtc/chorus/recorder/render"
	"github.com/chorus-rtc/chorus/recorder/worker"
	"github.com/chorus-rtc/chorus/shared/config"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/recstorage"
	"github.com/chorus-rtc/chorus/shared/store"
)

// runRecorder runs chorus recorder: its workers take recording jobs until ctx ends.
func runRecorder(ctx context.Context, cfg *config.Config, rdb redis.UniversalClient, log *slog.Logger) error {
	rc := cfg.Recorder
	if rc.ID == "" {
		rc.ID = "recorder_" + protocol.NewEventID()[:10]
	}
	if rc.WorkDir == "" {
		rc.WorkDir = filepath.Join(cfg.Recording.Path, ".work")
	}
	r, err := render.New(render.Config{})
	if err != nil {
		return fmt.Errorf("recorder: %w", err)
	}
	storage, err := recstorage.New(ctx, cfg.Recording, log)
	if err != nil {
		return fmt.Errorf("recorder: recording storage: %w", err)
	}
	st := store.New(store.Config{Redis: rdb, ClusterID: cfg.ClusterID, EventsMaxLen: cfg.Events.MaxLen})
	w, err := worker.New(worker.Config{
		Store: st, Renderer: r, Storage: storage, ID: rc.ID, Path: cfg.Recording.Path, WorkDir: rc.WorkDir,
		LeaseTTL: rc.LeaseTTL, MaxJobs: rc.MaxJobs, LoopbackOnly: rc.LoopbackOnly,
		SignalingURL: rc.SignalingURL, TLSCAFile: rc.TLSCAFile, Logger: log.With("recorder", rc.ID),
	})
	if err != nil {
		return err
	}
	log.Info("recorder started", "id", rc.ID, "path", cfg.Recording.Path, "workDir", rc.WorkDir, "storage", cfg.Recording.Storage)
	return w.Run(ctx)
}
