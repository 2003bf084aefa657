// Package worker is the control plane of a chorus recorder: it takes
// recording jobs from Redis under a lease (as master/eventdelivery takes
// event streams), joins the session as OpenVidu's hidden RECORDER
// participant with the Go participant SDK, captures every published stream
// into segments (recorder/capture), and once the recording is stopped
// renders its files (recorder/render) into <recording path>/<id>/ and marks
// it ready (shared/recordings). ARCHITECTURE.md "Recording" has the design.
package worker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/chorus-rtc/chorus/recorder/capture"
	"github.com/chorus-rtc/chorus/recorder/render"
	"github.com/chorus-rtc/chorus/sdk/participant"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/recordings"
	"github.com/chorus-rtc/chorus/shared/store"
)

// Store is what a worker needs of the cluster state.
type Store interface {
	recordings.Store
	Load(ctx context.Context, sid protocol.SessionID) (*store.Snapshot, error)
	LoadRecording(ctx context.Context, id string) (*store.Recording, error)
	RecordingJobs(ctx context.Context) ([]string, error)
	RecordingLeftover(ctx context.Context, id string) bool
	FinishRecordingJob(ctx context.Context, id string) error
	AcquireRecordingLease(ctx context.Context, id, holder string, ttl time.Duration) (bool, error)
	ReleaseRecordingLease(ctx context.Context, id, holder string) error
}

// Renderer turns a recording's segments into its files (render.Renderer).
type Renderer interface {
	Render(ctx context.Context, rec render.Recording, workDir, outDir string) (render.Result, error)
}

// Storage keeps a rendered recording's files (recstorage.Storage): local
// storage has nothing to do, S3 uploads them.
type Storage interface {
	Publish(ctx context.Context, id, dir string) error
}

// Config configures a worker.
type Config struct {
	Store    Store
	Renderer Renderer
	// Storage publishes each rendered recording before it is marked ready
	// (nil: the files stay in <Path>/<id>/, local storage).
	Storage Storage
	// ID is the holder name of the worker's leases (required, unique).
	ID string
	// Path is the recording path: outputs go to <Path>/<id>/.
	Path string
	// WorkDir holds the segments being captured, <WorkDir>/<id>/.
	WorkDir string
	// LeaseTTL is a job's lease, renewed every third of it (default 5 s).
	LeaseTTL time.Duration
	// MaxJobs bounds the recordings captured at once (default 4).
	MaxJobs int
	// Poll is how often the job set and each recording are read (default 250 ms).
	Poll time.Duration
	// LoopbackOnly restricts ICE to loopback (a cluster on one machine).
	LoopbackOnly bool
	// SignalingURL (ws(s)://host[:port]) is dialed instead of the recorder
	// token's public URL (participant.Config.ServerURL).
	SignalingURL string
	// TLSCAFile adds trusted certificates for wss://, read at each join.
	TLSCAFile string
	Logger    *slog.Logger
}

// Worker runs recording jobs.
type Worker struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	running map[string]bool
	wg      sync.WaitGroup
}

// New returns a worker.
func New(cfg Config) (*Worker, error) {
	if cfg.Store == nil || cfg.Renderer == nil || cfg.ID == "" || cfg.Path == "" || cfg.WorkDir == "" {
		return nil, errors.New("worker: Store, Renderer, ID, Path and WorkDir are required")
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 5 * time.Second
	}
	if cfg.MaxJobs <= 0 {
		cfg.MaxJobs = 4
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 250 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Worker{cfg: cfg, log: cfg.Logger, running: map[string]bool{}}, nil
}

// Run takes jobs until ctx ends, then waits for its jobs to stop (a job
// cut short keeps its segments; the lease expires and another worker, or
// this one restarted, goes on).
func (w *Worker) Run(ctx context.Context) error {
	tick := time.NewTicker(w.cfg.Poll)
	defer tick.Stop()
	for {
		w.scan(ctx)
		select {
		case <-ctx.Done():
			w.wg.Wait()
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func (w *Worker) scan(ctx context.Context) {
	ids, err := w.cfg.Store.RecordingJobs(ctx)
	if err != nil {
		if ctx.Err() == nil {
			w.log.Warn("list recording jobs", "err", err)
		}
		return
	}
	for _, id := range ids {
		w.mu.Lock()
		busy, full := w.running[id], len(w.running) >= w.cfg.MaxJobs
		w.mu.Unlock()
		if busy || full {
			continue
		}
		ok, err := w.cfg.Store.AcquireRecordingLease(ctx, id, w.cfg.ID, w.cfg.LeaseTTL)
		if err != nil || !ok {
			continue
		}
		w.mu.Lock()
		w.running[id] = true
		w.mu.Unlock()
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.job(ctx, id)
			w.mu.Lock()
			delete(w.running, id)
			w.mu.Unlock()
		}()
	}
}

// job works on one recording while holding its lease.
func (w *Worker) job(ctx context.Context, id string) {
	jctx, cancel := context.WithCancel(ctx)
	var lost atomic.Bool
	var keeper sync.WaitGroup
	keeper.Add(1)
	go func() {
		defer keeper.Done()
		w.keepLease(jctx, id, cancel, &lost)
	}()
	defer func() {
		cancel()
		keeper.Wait()
		if !lost.Load() {
			bg, stop := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = w.cfg.Store.ReleaseRecordingLease(bg, id, w.cfg.ID)
			stop()
		}
	}()
	if err := w.work(jctx, id); err != nil && jctx.Err() == nil {
		w.log.Warn("recording job", "recording", id, "err", err)
	}
}

// keepLease renews the lease every third of its TTL; when it is lost (or
// cannot be renewed before it expires) the job is cancelled.
func (w *Worker) keepLease(ctx context.Context, id string, cancel context.CancelFunc, lost *atomic.Bool) {
	tick := time.NewTicker(w.cfg.LeaseTTL / 3)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		ok, err := w.cfg.Store.AcquireRecordingLease(ctx, id, w.cfg.ID, w.cfg.LeaseTTL)
		if err == nil && ok {
			last = time.Now()
			continue
		}
		if (err == nil && !ok) || time.Since(last) > w.cfg.LeaseTTL {
			w.log.Warn("recording lease lost", "recording", id, "err", err)
			lost.Store(true)
			cancel()
			return
		}
	}
}

// work brings a recording as far as this worker can: capture while it is
// started, then render once stopped.
func (w *Worker) work(ctx context.Context, id string) error {
	rec, err := w.cfg.Store.LoadRecording(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		// The job is queued before the recording's transaction commits:
		// only an old job without a recording is a leftover (dropping a
		// young one lost a recording being started: it stayed starting).
		if !w.cfg.Store.RecordingLeftover(ctx, id) {
			return nil
		}
		return w.cfg.Store.FinishRecordingJob(ctx, id)
	}
	if err != nil {
		return err
	}
	switch rec.Status {
	case protocol.RecordingReady, protocol.RecordingFailed:
		return w.cfg.Store.FinishRecordingJob(ctx, id)
	case protocol.RecordingStarting, protocol.RecordingStarted:
		if rec, err = w.capture(ctx, rec); err != nil {
			if ctx.Err() != nil {
				return err // lease lost or shutting down: another worker goes on
			}
			_, ferr := recordings.Fail(context.WithoutCancel(ctx), w.cfg.Store, id, err.Error(), store.NowMillis())
			w.discard(id)
			return errors.Join(err, ferr)
		}
	}
	if rec.Status != protocol.RecordingStopped {
		return nil
	}
	return w.render(ctx, rec)
}

func (w *Worker) workDir(id string) string { return filepath.Join(w.cfg.WorkDir, id) }

// tlsConfig trusts the system's roots and TLSCAFile's certificates (nil
// without one, or while the file does not exist).
func (w *Worker) tlsConfig() (*tls.Config, error) {
	if w.cfg.TLSCAFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(w.cfg.TLSCAFile)
	if errors.Is(err, fs.ErrNotExist) {
		// Not there (yet): a proxy without TLS writes none.
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("recorder TLS CA file: %w", err)
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("recorder TLS CA file %s holds no PEM certificate", w.cfg.TLSCAFile)
	}
	return &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, nil
}

// discard removes what a failed recording left: its segments and any
// partial output (nothing renders a failed recording, and on a full disk
// they would keep every other recording from being written).
func (w *Worker) discard(id string) {
	for _, dir := range []string{w.workDir(id), filepath.Join(w.cfg.Path, id)} {
		if err := os.RemoveAll(dir); err != nil {
			w.log.Warn("remove a failed recording's files", "recording", id, "dir", dir, "err", err)
		}
	}
}

// render makes the stopped recording's files and marks it ready (or failed).
func (w *Worker) render(ctx context.Context, rec *store.Recording) error {
	out := filepath.Join(w.cfg.Path, rec.ID)
	var res render.Result
	err := os.MkdirAll(out, 0o755)
	if err == nil {
		res, err = w.cfg.Renderer.Render(ctx, render.Recording{
			ID: rec.ID, Name: rec.Name, SessionID: string(rec.SessionID), OutputMode: render.OutputMode(rec.OutputMode),
			HasAudio: rec.HasAudio, HasVideo: rec.HasVideo, RecordingLayout: rec.RecordingLayout,
			Resolution: rec.Resolution, FrameRate: rec.FrameRate,
			CreatedAt: time.UnixMilli(startOf(rec)), StoppedAt: time.UnixMilli(rec.StoppedAt),
		}, w.workDir(rec.ID), out)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	bg := context.WithoutCancel(ctx)
	if err != nil {
		_, ferr := recordings.Fail(bg, w.cfg.Store, rec.ID, "render: "+err.Error(), store.NowMillis())
		w.discard(rec.ID)
		return errors.Join(fmt.Errorf("render %s: %w", rec.ID, err), ferr, w.cfg.Store.FinishRecordingJob(bg, rec.ID))
	}
	if w.cfg.Storage != nil {
		// The recording stays stopped while it uploads, and is ready only
		// once stored (OpenVidu Pro's S3 storage); a storage that never
		// takes it fails it, its files left in the recording path.
		if err := w.cfg.Storage.Publish(ctx, rec.ID, out); err != nil {
			if ctx.Err() != nil {
				return ctx.Err() // lease lost or shutting down: another worker uploads
			}
			_, ferr := recordings.Fail(bg, w.cfg.Store, rec.ID, "upload: "+err.Error(), store.NowMillis())
			return errors.Join(fmt.Errorf("upload %s: %w", rec.ID, err), ferr, w.cfg.Store.FinishRecordingJob(bg, rec.ID))
		}
	}
	gaps := make([]protocol.RecordingGap, 0, len(res.Gaps))
	for _, g := range res.Gaps {
		gaps = append(gaps, protocol.RecordingGap{StreamID: g.StreamID, StartTimeOffset: g.Start.Milliseconds(), EndTimeOffset: g.End.Milliseconds()})
	}
	if _, err := recordings.Finish(bg, w.cfg.Store, rec.ID, recordings.Result{
		File: filepath.Base(res.File), Size: res.Size, Duration: res.Duration.Seconds(), Gaps: gaps,
	}, store.NowMillis()); err != nil {
		return err
	}
	w.log.Info("recording ready", "recording", rec.ID, "file", res.File, "size", res.Size,
		"duration", res.Duration, "ffmpegCPU", res.CPU)
	if err := os.RemoveAll(w.workDir(rec.ID)); err != nil {
		w.log.Warn("remove recording work directory", "recording", rec.ID, "err", err)
	}
	return w.cfg.Store.FinishRecordingJob(bg, rec.ID)
}

// startOf is the output's time zero: when a recorder started capturing.
func startOf(rec *store.Recording) int64 {
	if rec.StartedAt != 0 {
		return rec.StartedAt
	}
	return rec.CreatedAt
}

// capture joins the session as the recording's hidden participant and
// records every published stream (but those of connections with record
// false) until the recording is no longer started; it returns the
// recording as it then is.
func (w *Worker) capture(ctx context.Context, rec *store.Recording) (*store.Recording, error) {
	snap, err := w.cfg.Store.Load(ctx, rec.SessionID)
	if err != nil {
		return nil, fmt.Errorf("load session %s: %w", rec.SessionID, err)
	}
	codec := capture.CodecVP8
	if snap.Session.Properties.ForcedVideoCodecResolved == "H264" {
		codec = capture.CodecH264
	}
	// A takeover: the previous worker used the recorder token.
	prepared, err := recordings.PrepareRecorder(ctx, w.cfg.Store, rec.ID, store.NowMillis())
	if errors.Is(err, recordings.ErrNotStarted) {
		return w.cfg.Store.LoadRecording(ctx, rec.ID) // stopped meanwhile: render it
	}
	if err != nil {
		return nil, err
	}
	rec = prepared
	tlsConfig, err := w.tlsConfig()
	if err != nil {
		return nil, err
	}
	joinCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	p, err := participant.Join(joinCtx, participant.Config{
		Token: rec.RecorderToken, ServerURL: w.cfg.SignalingURL, TLSConfig: tlsConfig,
		LoopbackOnly: w.cfg.LoopbackOnly, Logger: w.log,
	})
	cancel()
	if err != nil {
		return nil, fmt.Errorf("join session %s as its recorder: %w", rec.SessionID, err)
	}
	defer func() {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_ = p.Leave(lctx)
		cancel()
	}()
	if rec.Status == protocol.RecordingStarting {
		if rec, err = recordings.MarkStarted(ctx, w.cfg.Store, rec.ID, store.NowMillis()); err != nil {
			return nil, err
		}
	}
	sess := &session{w: w, rec: rec, p: p, codec: codec, streams: map[string]*stream{}, failed: make(chan error, 1), takes: map[string]int{}}
	defer sess.closeAll()
	tick := time.NewTicker(w.cfg.Poll)
	defer tick.Stop()
	for {
		cur, err := w.cfg.Store.LoadRecording(ctx, rec.ID)
		if err != nil {
			return nil, err
		}
		if cur.Status != protocol.RecordingStarted {
			return cur, nil
		}
		snap, err := w.cfg.Store.Load(ctx, rec.SessionID)
		if errors.Is(err, store.ErrNotFound) {
			// The session closed: the recording stops with it, unless
			// what closed it stopped it first (the automatic stop of an
			// empty session stops the recording, then closes the session,
			// maybe between the two reads above): render it as it is.
			stopped, err := recordings.Stop(ctx, w.cfg.Store, rec.ID, sess.endReason(), store.NowMillis())
			if errors.Is(err, recordings.ErrNotStarted) {
				return w.cfg.Store.LoadRecording(ctx, rec.ID)
			}
			return stopped, err
		}
		if err != nil {
			return nil, err
		}
		sess.sync(ctx, snap)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case err := <-sess.failed:
			return nil, err
		case <-tick.C:
		}
	}
}

// session is a recording's capture in one session.
type session struct {
	w       *Worker
	rec     *store.Recording
	p       *participant.Participant
	codec   capture.Codec
	streams map[string]*stream // by stream id
	// failed carries the first storage failure of any stream.
	failed chan error
	// takes is the take each stream was last recorded in by this capture.
	takes map[string]int
}

// fail records a stream's storage failure (the first one counts).
func (s *session) fail(err error) {
	select {
	case s.failed <- err:
	default:
	}
}

// endReason is why the session ended, as the recorder was told
// (participantEvicted), sessionClosedByServer otherwise.
func (s *session) endReason() string {
	for _, e := range s.p.Events() {
		if e.Method == protocol.NotifyParticipantEvicted {
			var cr protocol.ConnectionReason
			if json.Unmarshal(e.Params, &cr) == nil && cr.ConnectionID == s.p.ConnectionID() && cr.Reason != "" {
				return cr.Reason
			}
		}
	}
	return protocol.ReasonSessionClosedByServer
}

// sync subscribes to the streams published now and closes the segments of
// those that are gone.
func (s *session) sync(ctx context.Context, snap *store.Snapshot) {
	live := map[string]*store.Connection{}
	for _, c := range snap.Conns {
		if c.Recorder || !c.Active() || !c.Record || c.Publisher == nil || !c.Publisher.Live() {
			continue
		}
		live[string(c.Publisher.StreamID)] = c
	}
	for id, st := range s.streams {
		if live[id] == nil {
			// Unpublished, or its connection's record turned off
			// (updateConnection): its take ends; if it is recorded again,
			// that is its next take (INDIVIDUAL: another file, as
			// OpenVidu's).
			st.close(time.Now())
			delete(s.streams, id)
			if err := capture.EndTake(st.cfg.WorkDir, id, st.cfg.Take); err != nil {
				s.w.log.Warn("end a take", "recording", s.rec.ID, "stream", id, "err", err)
			}
			if sub := st.sub.Load(); sub != nil {
				uctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_ = s.p.Unsubscribe(uctx, sub) // a stream already gone is no loss
				cancel()
			}
		}
	}
	for id, c := range live {
		if s.streams[id] != nil {
			continue
		}
		st := &stream{cfg: capture.Config{
			WorkDir: s.w.workDir(s.rec.ID), RecordingID: s.rec.ID,
			Stream: capture.Stream{StreamID: id, ConnectionID: string(c.ID), ClientData: c.ClientData, ServerData: c.ServerData,
				HasAudio: c.Publisher.MediaOptions.HasAudio, HasVideo: c.Publisher.MediaOptions.HasVideo,
				TypeOfVideo: c.Publisher.MediaOptions.TypeOfVideo},
		}, log: s.w.log, fail: s.fail}
		if st.cfg.Stream.HasVideo {
			st.cfg.Stream.VideoCodec = s.codec
		} else {
			st.cfg.Stream.TypeOfVideo = ""
		}
		st.cfg.RequestKeyframe = st.requestKeyframe
		st.cfg.Take = s.nextTake(id)
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		sub, err := s.p.SubscribeWith(sctx, id, participant.SubscribeOptions{OnPacket: st.write})
		cancel()
		if err != nil {
			s.w.log.Warn("recorder subscribe", "recording", s.rec.ID, "stream", id, "err", err)
			continue // tried again at the next poll
		}
		st.sub.Store(sub)
		s.streams[id] = st
		s.takes[id] = st.cfg.Take
	}
}

// nextTake is the take a stream starts being recorded in: the one after its
// last in this capture; for a stream this capture has not recorded yet, the
// take a previous worker left on disk (a takeover goes on in it) unless that
// take was ended on purpose, else 0.
func (s *session) nextTake(id string) int {
	if last, ok := s.takes[id]; ok {
		return last + 1
	}
	last, ended := capture.LastTake(s.w.workDir(s.rec.ID), id)
	switch {
	case last < 0:
		return 0
	case ended:
		return last + 1
	default:
		return last
	}
}

func (s *session) closeAll() {
	now := time.Now()
	for id, st := range s.streams {
		st.close(now)
		delete(s.streams, id)
	}
}

// stream captures one published stream into the segments of one take.
type stream struct {
	cfg capture.Config
	log *slog.Logger
	sub atomic.Pointer[participant.Subscription]
	// fail reports a failure of the recording's storage (a full disk):
	// the whole recording fails, since what it would render has holes.
	fail func(error)

	mu     sync.Mutex
	seg    *capture.Segment
	closed bool
}

func (st *stream) requestKeyframe() {
	if sub := st.sub.Load(); sub != nil {
		go func() { _ = sub.RequestKeyframe() }() // WriteRTCP off the segment's call
	}
}

// write is the subscription's packet handler.
func (st *stream) write(kind webrtc.RTPCodecType, pkt *rtp.Packet, at time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return
	}
	for attempt := 0; attempt < 2; attempt++ {
		if st.seg == nil {
			seg, err := capture.Open(st.cfg, at)
			if err != nil {
				st.log.Warn("open segment", "stream", st.cfg.Stream.StreamID, "err", err)
				st.closed = true
				if storageFailure(err) {
					st.fail(fmt.Errorf("open a segment of %s: %w", st.cfg.Stream.StreamID, err))
				}
				return
			}
			st.seg = seg
		}
		var err error
		if kind == webrtc.RTPCodecTypeVideo {
			err = st.seg.WriteVideo(pkt, at)
		} else {
			err = st.seg.WriteAudio(pkt, at)
		}
		if errors.Is(err, capture.ErrDiscontinuity) {
			_ = st.seg.Close(at) // the next segment of the take starts with this packet
			st.seg = nil
			continue
		}
		if storageFailure(err) {
			st.log.Warn("capture", "stream", st.cfg.Stream.StreamID, "err", err)
			st.closed = true
			st.fail(fmt.Errorf("capture %s: %w", st.cfg.Stream.StreamID, err))
		} else if err != nil && !errors.Is(err, capture.ErrNoTrack) {
			st.log.Debug("capture", "stream", st.cfg.Stream.StreamID, "err", err)
		}
		return
	}
}

// storageFailure reports whether a capture error is the file system's (no
// space left, quota, I/O): a malformed packet is not.
func storageFailure(err error) bool {
	var pe *fs.PathError
	var le *os.LinkError
	return errors.As(err, &pe) || errors.As(err, &le) ||
		errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EROFS)
}

func (st *stream) close(at time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.closed = true
	if st.seg != nil {
		if err := st.seg.Close(at); err != nil {
			st.log.Warn("close segment", "stream", st.cfg.Stream.StreamID, "err", err)
		}
		st.seg = nil
	}
}
