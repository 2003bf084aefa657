package restapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/chorus-rtc/chorus/master/session"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/recstorage"
	"github.com/chorus-rtc/chorus/shared/store"
)

// RecordingConfig is the recording part of the API's configuration
// (OPENVIDU_RECORDING, OPENVIDU_RECORDING_PATH,
// OPENVIDU_RECORDING_PUBLIC_ACCESS).
type RecordingConfig struct {
	// Enabled serves the recording API; otherwise every call answers 501.
	Enabled bool
	// Storage keeps the finished recordings' files (recording.storage):
	// masters serve and delete them there. Nil: none (files answer 404).
	Storage recstorage.Storage
	// PublicAccess serves the files without Basic auth.
	PublicAccess bool
	// StartWait bounds how long POST /recordings/start waits for a recorder
	// to report the recording started (default 8 s).
	StartWait time.Duration
}

// recordingNamePattern is what a recording's name may be: it names the
// output file, so no path separators, no leading dot.
var recordingNamePattern = regexp.MustCompile(`^[a-zA-Z0-9_-][a-zA-Z0-9_.-]{0,199}$`)

// ErrUnprocessable marks a recording property out of OpenVidu's ranges (422).
var ErrUnprocessable = errors.New("unprocessable")

// RecordingDefaults resolves a session's defaultRecordingProperties alone:
// the properties of the recording an ALWAYS session starts by itself
// (session.Config.RecordingDefaults).
func RecordingDefaults(defaults json.RawMessage) (session.RecordingProperties, error) {
	return recordingProps(body{}, defaults)
}

// recordingProps resolves the properties of a start request once the
// session's defaults are known.
func recordingProps(b body, defaults json.RawMessage) (session.RecordingProperties, error) {
	var p session.RecordingProperties
	if len(defaults) > 0 {
		var d body
		if json.Unmarshal(defaults, &d) == nil {
			for k, v := range d {
				if !b.present(k) {
					b[k] = v
				}
			}
		}
	}
	name, err := b.string("name")
	if err != nil {
		return p, err
	}
	if name != nil && *name != "" {
		if !recordingNamePattern.MatchString(*name) || strings.Contains(*name, "..") {
			return p, fmt.Errorf("parameter 'name' %q is not a valid file name: letters, digits, '_', '-' and '.' only", *name)
		}
		p.Name = *name
	}
	outputMode, err := b.string("outputMode")
	if err != nil {
		return p, err
	}
	var ok bool
	if p.OutputMode, ok = enum(outputMode, protocol.OutputComposed, protocol.OutputComposed, protocol.OutputComposedQuickStart, protocol.OutputIndividual); !ok {
		return p, fmt.Errorf("parameter 'outputMode' %q is not defined: COMPOSED, COMPOSED_QUICK_START or INDIVIDUAL", *outputMode)
	}
	hasAudio, err := b.bool("hasAudio")
	if err != nil {
		return p, err
	}
	hasVideo, err := b.bool("hasVideo")
	if err != nil {
		return p, err
	}
	p.HasAudio, p.HasVideo = hasAudio == nil || *hasAudio, hasVideo == nil || *hasVideo
	if !p.HasAudio && !p.HasVideo {
		return p, fmt.Errorf("%w: Cannot start a recording with both \"hasAudio\" and \"hasVideo\" set to false", ErrUnprocessable)
	}
	ignore, err := b.bool("ignoreFailedStreams")
	if err != nil {
		return p, err
	}
	p.IgnoreFailedStreams = ignore != nil && *ignore
	layout, err := b.string("recordingLayout")
	if err != nil {
		return p, err
	}
	resolution, err := b.string("resolution")
	if err != nil {
		return p, err
	}
	frameRate, err := b.number("frameRate")
	if err != nil {
		return p, err
	}
	if p.OutputMode == protocol.OutputIndividual || !p.HasVideo {
		return p, nil // layout, resolution and frame rate do not apply
	}
	if p.RecordingLayout, ok = enum(layout, protocol.LayoutBestFit, protocol.LayoutBestFit); !ok {
		return p, fmt.Errorf("%w: recordingLayout %q is not supported by Chorus (BEST_FIT only)", ErrUnprocessable, *layout)
	}
	p.Resolution = "1280x720"
	if resolution != nil {
		w, h, ok := parseResolution(*resolution)
		if !ok {
			return p, fmt.Errorf("%w: Wrong \"resolution\" parameter %q. Acceptable values from 100 to 1999 for both width and height", ErrUnprocessable, *resolution)
		}
		p.Resolution = strconv.Itoa(w) + "x" + strconv.Itoa(h)
	}
	p.FrameRate = 25
	if frameRate != nil {
		if *frameRate != float64(int(*frameRate)) || *frameRate < 1 || *frameRate > 120 {
			return p, fmt.Errorf("%w: Wrong \"frameRate\" parameter %v. Acceptable values from 1 to 120", ErrUnprocessable, *frameRate)
		}
		p.FrameRate = int(*frameRate)
	}
	return p, nil
}

// parseResolution reads "<width>x<height>", each 100 to 1999 (OpenVidu's range).
func parseResolution(s string) (int, int, bool) {
	ws, hs, ok := strings.Cut(s, "x")
	if !ok {
		return 0, 0, false
	}
	w, err1 := strconv.Atoi(ws)
	h, err2 := strconv.Atoi(hs)
	if err1 != nil || err2 != nil || w < 100 || w > 1999 || h < 100 || h > 1999 {
		return 0, 0, false
	}
	return w, h, true
}

func (a *API) registerRecordings(g *gin.RouterGroup, r *gin.Engine) {
	if !a.cfg.Recording.Enabled {
		for _, route := range []struct{ method, path string }{
			{http.MethodPost, "/recordings/start"}, {http.MethodPost, "/recordings/stop/:recordingId"},
			{http.MethodGet, "/recordings"}, {http.MethodGet, "/recordings/:recordingId"},
			{http.MethodDelete, "/recordings/:recordingId"},
		} {
			g.Handle(route.method, route.path, notImplemented)
		}
		return
	}
	g.POST("/recordings/start", a.startRecording)
	g.POST("/recordings/stop/:recordingId", a.stopRecording)
	g.GET("/recordings", a.listRecordings)
	g.GET("/recordings/:recordingId", a.getRecording)
	g.DELETE("/recordings/:recordingId", a.deleteRecording)
	files := r.Group("/openvidu/recordings", cors)
	if !a.cfg.Recording.PublicAccess {
		files.Use(a.authenticate)
	}
	files.GET("/:recordingId/:file", a.recordingFile)
	files.HEAD("/:recordingId/:file", a.recordingFile)
}

// renderRecording builds OpenVidu's Recording object.
func (a *API) renderRecording(r *store.Recording) protocol.Recording {
	out := protocol.Recording{
		ID: r.ID, Object: "recording", Name: r.Name, OutputMode: r.OutputMode, HasAudio: r.HasAudio, HasVideo: r.HasVideo,
		RecordingLayout: r.RecordingLayout, Resolution: r.Resolution, FrameRate: r.FrameRate,
		SessionID: string(r.SessionID), CreatedAt: r.CreatedAt, Size: r.Size, Duration: r.Duration, Status: r.Status,
		Gaps: r.Gaps,
	}
	if r.Status == protocol.RecordingReady && r.File != "" {
		u := httpURL(a.cfg.PublicURL) + "/openvidu/recordings/" + r.ID + "/" + r.File
		out.URL = &u
	}
	return out
}

func (a *API) startRecording(c *gin.Context) {
	const path = "/openvidu/api/recordings/start"
	raw, err := readBody(c)
	if err != nil {
		writeError(c, http.StatusBadRequest, "Error reading the request body: "+err.Error(), path)
		return
	}
	b, err := parseBody(raw, false)
	if err != nil {
		writeError(c, http.StatusBadRequest, err.Error(), path)
		return
	}
	sidp, err := b.string("session")
	if err != nil {
		writeError(c, http.StatusBadRequest, err.Error(), path)
		return
	}
	if sidp == nil || *sidp == "" {
		writeError(c, http.StatusBadRequest, `"session" parameter is mandatory`, path)
		return
	}
	sid := protocol.SessionID(*sidp)
	snap, err := a.svc.GetSession(c.Request.Context(), sid)
	if err != nil {
		a.fail(c, err, path)
		return
	}
	props, err := recordingProps(b, snap.Session.Properties.DefaultRecordingProperties)
	if errors.Is(err, ErrUnprocessable) {
		writeError(c, http.StatusUnprocessableEntity, strings.TrimPrefix(err.Error(), ErrUnprocessable.Error()+": "), path)
		return
	}
	if err != nil {
		writeError(c, http.StatusBadRequest, err.Error(), path)
		return
	}
	wait := a.cfg.Recording.StartWait
	if wait <= 0 {
		wait = 8 * time.Second
	}
	rec, err := a.svc.StartRecording(c.Request.Context(), sid, props, wait)
	if err != nil {
		a.fail(c, err, path)
		return
	}
	writeJSON(c, http.StatusOK, a.renderRecording(rec))
}

func (a *API) stopRecording(c *gin.Context) {
	id := c.Param("recordingId")
	rec, err := a.svc.StopRecording(c.Request.Context(), id)
	if err != nil {
		a.fail(c, err, "/openvidu/api/recordings/stop/"+id)
		return
	}
	writeJSON(c, http.StatusOK, a.renderRecording(rec))
}

func (a *API) getRecording(c *gin.Context) {
	id := c.Param("recordingId")
	rec, err := a.svc.GetRecording(c.Request.Context(), id)
	if err != nil {
		a.fail(c, err, "/openvidu/api/recordings/"+id)
		return
	}
	writeJSON(c, http.StatusOK, a.renderRecording(rec))
}

func (a *API) listRecordings(c *gin.Context) {
	recs, err := a.svc.ListRecordings(c.Request.Context())
	if err != nil {
		a.fail(c, err, "/openvidu/api/recordings")
		return
	}
	out := protocol.RecordingList{Items: []protocol.Recording{}}
	for _, r := range recs {
		out.Items = append(out.Items, a.renderRecording(r))
	}
	out.Count = len(out.Items)
	writeJSON(c, http.StatusOK, out)
}

func (a *API) deleteRecording(c *gin.Context) {
	id := c.Param("recordingId")
	rec, err := a.svc.DeleteRecording(c.Request.Context(), id)
	if err != nil {
		a.fail(c, err, "/openvidu/api/recordings/"+id)
		return
	}
	if st := a.cfg.Recording.Storage; st != nil && validRecordingID(rec.ID) {
		// The recording is gone whatever happens to its files: a file left
		// behind is logged, not reported (OpenVidu answers 204 too).
		if err := st.Delete(c.Request.Context(), rec.ID); err != nil {
			a.log.Warn("delete recording files", "recording", rec.ID, "err", err)
		}
	}
	c.Status(http.StatusNoContent)
}

// validRecordingID reports whether id is a recording id (a session id,
// maybe ~n): never a path outside the recording's own directory or folder.
func validRecordingID(id string) bool {
	sid, n, hasN := strings.Cut(id, "~")
	if !protocol.ValidID(sid) {
		return false
	}
	if hasN {
		if _, err := strconv.Atoi(n); err != nil {
			return false
		}
	}
	return true
}

// recordingFile serves /openvidu/recordings/<id>/<file> from the recording
// storage (Basic auth unless public access, as openvidu-server); a storage
// that fails (the S3 service) answers 502.
func (a *API) recordingFile(c *gin.Context) {
	id, file := c.Param("recordingId"), c.Param("file")
	st := a.cfg.Recording.Storage
	if st == nil || !validRecordingID(id) || file != filepath.Base(file) || strings.HasPrefix(file, ".") {
		c.Status(http.StatusNotFound)
		return
	}
	err := st.Serve(c.Writer, c.Request, id, file)
	switch {
	case errors.Is(err, recstorage.ErrNotFound):
		c.Status(http.StatusNotFound)
	case err != nil:
		a.log.Warn("serve recording file", "recording", id, "file", file, "err", err)
		c.Status(http.StatusBadGateway)
	}
}
