package restapi

import (
	"context"
	"errors"
	"math"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/chorus-rtc/chorus/master/medianodes"
	"github.com/chorus-rtc/chorus/master/session"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

// The media-node API of OpenVidu Pro (REST API reference, "Media Nodes"):
// success bodies are JSON, errors are text/plain with OpenVidu's message.

// registerMediaNodes adds the /media-nodes routes.
func (a *API) registerMediaNodes(g *gin.RouterGroup) {
	g.GET("/media-nodes", a.listMediaNodes)
	g.GET("/media-nodes/:mediaNodeId", a.getMediaNode)
	g.POST("/media-nodes", a.launchMediaNode)
	g.PUT("/media-nodes", a.discoverMediaNodes)
	g.DELETE("/media-nodes/:mediaNodeId", a.dropMediaNode)
	g.PATCH("/media-nodes/:mediaNodeId", a.patchMediaNode)
}

// mediaNodeStatus maps a media-node failure to the status OpenVidu Pro's
// media-node API answers (REST-API.md, "The Media Node object").
func mediaNodeStatus(k medianodes.ErrorKind) int {
	switch k {
	case medianodes.NodeNotFound:
		return http.StatusNotFound
	case medianodes.CannotLaunch:
		return http.StatusNotImplemented
	case medianodes.BadRequest:
		return http.StatusBadRequest
	case medianodes.Conflict:
		return http.StatusConflict
	case medianodes.LaunchFailed:
		return http.StatusBadGateway
	case medianodes.StatusTimeout:
		return http.StatusGatewayTimeout
	default: // LaunchError
		return http.StatusInternalServerError
	}
}

// failText answers a media-node error as OpenVidu does: text/plain.
func (a *API) failText(c *gin.Context, err error) {
	var e *medianodes.Error
	if errors.As(err, &e) {
		c.String(mediaNodeStatus(e.Kind), e.Message)
		return
	}
	ans, se := restAnswer(err)
	if ans.status >= 500 {
		a.log.Warn("media node request failed", "method", c.Request.Method, "path", c.Request.URL.Path, "err", err)
	}
	c.String(ans.status, se.Message)
}

// mediaNodeQuery reads ?sessions=, ?recordings= and ?extra-info=.
func mediaNodeQuery(c *gin.Context) (sessions, recordings, ok bool) {
	sessions, ok1 := boolQuery(c, "sessions", false)
	recordings, ok2 := boolQuery(c, "recordings", false)
	_, ok3 := boolQuery(c, "extra-info", false)
	if !ok1 || !ok2 || !ok3 {
		c.String(http.StatusBadRequest, "Invalid boolean query parameter")
		return false, false, false
	}
	return sessions, recordings, true
}

// Connected reports whether the cluster reaches a node (OpenVidu's
// "connected"): adopted, not declared crashed and heartbeating.
func Connected(n store.MediaNodeInfo, now time.Time) bool {
	switch n.Status {
	case protocol.NodeRunning, protocol.NodeWaitingIdle, protocol.NodeTerminating:
		return !n.Crashed() && n.Fresh(now, store.NodeFreshness)
	}
	return false
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullableTime(ms int64) any {
	if ms == 0 {
		return nil
	}
	return ms
}

// renderMediaNode is OpenVidu's Media Node object. Chorus has no recordings
// or broadcasts (recordingIds and broadcasts are empty when asked for) and
// no Kurento (no kurentoInfo).
func renderMediaNode(n store.MediaNodeInfo, sessions []protocol.Session, withRecordings bool, now time.Time) protocol.Object {
	connected := Connected(n, now)
	o := protocol.Object{}.
		With("id", n.ID).
		With("object", "mediaNode").
		With("environmentId", nullable(n.EnvironmentID)).
		With("ip", nullable(n.IP)).
		With("uri", nullable(n.URI)).
		With("status", n.Status).
		With("launchingTime", n.LaunchingTime).
		With("connected", connected).
		With("connectionTime", nullableTime(n.ConnectedAt))
	if !connected {
		switch {
		case n.DisconnectedAt != 0:
			o = o.With("disconnectionTime", n.DisconnectedAt)
		case n.ConnectedAt != 0 && n.HeartbeatAt != 0:
			o = o.With("disconnectionTime", n.HeartbeatAt)
		}
	}
	o = o.With("load", math.Round(n.Load*100)/100).With("mediaServer", protocol.MediaServer)
	if sessions != nil {
		o = o.With("sessions", sessions)
	}
	if withRecordings {
		o = o.With("recordingIds", []string{}).With("broadcasts", []string{})
	}
	return o
}

// renderNodeWith renders a node, with its sessions if asked.
func (a *API) renderNodeWith(ctx context.Context, n store.MediaNodeInfo, withSessions, withRecordings bool) (protocol.Object, error) {
	var sessions []protocol.Session
	if withSessions {
		sids, err := a.svc.Store().NodeSessions(ctx, n.ID)
		if err != nil {
			return nil, err
		}
		sessions = []protocol.Session{}
		for _, sid := range sids {
			snap, err := a.svc.GetSession(ctx, sid)
			if err != nil {
				continue // closed meanwhile
			}
			sessions = append(sessions, session.RenderSession(snap, false))
		}
	}
	return renderMediaNode(n, sessions, withRecordings, time.Now()), nil
}

func (a *API) listMediaNodes(c *gin.Context) {
	withSessions, withRecordings, ok := mediaNodeQuery(c)
	if !ok {
		return
	}
	nodes, err := a.cfg.MediaNodes.List(c.Request.Context())
	if err != nil {
		a.failText(c, err)
		return
	}
	content := []protocol.Object{}
	for _, n := range nodes {
		o, err := a.renderNodeWith(c.Request.Context(), n, withSessions, withRecordings)
		if err != nil {
			a.failText(c, err)
			return
		}
		content = append(content, o)
	}
	writeJSON(c, http.StatusOK, protocol.Object{}.With("numberOfElements", len(content)).With("content", content))
}

func (a *API) getMediaNode(c *gin.Context) {
	withSessions, withRecordings, ok := mediaNodeQuery(c)
	if !ok {
		return
	}
	n, err := a.cfg.MediaNodes.Get(c.Request.Context(), protocol.NodeID(c.Param("mediaNodeId")))
	if err != nil {
		a.failText(c, err)
		return
	}
	o, err := a.renderNodeWith(c.Request.Context(), n, withSessions, withRecordings)
	if err != nil {
		a.failText(c, err)
		return
	}
	writeJSON(c, http.StatusOK, o)
}

// launchMediaNode is POST /media-nodes: with {"uri"} it registers a running
// node, else the provider launches one.
func (a *API) launchMediaNode(c *gin.Context) {
	wait, ok := boolQuery(c, "wait", false)
	if !ok {
		c.String(http.StatusBadRequest, `Invalid parameter "wait": not a boolean`)
		return
	}
	b, ok := mediaNodeBody(c)
	if !ok {
		return
	}
	uri, err := b.string("uri")
	if err != nil {
		c.String(http.StatusBadRequest, `Invalid parameter "uri". Must exist and be a string with a valid URI format`)
		return
	}
	envID, err := b.string("environmentId")
	if err != nil {
		c.String(http.StatusBadRequest, `Invalid parameter "environmentId". Must be a string`)
		return
	}
	ctx := c.Request.Context()
	var n store.MediaNodeInfo
	if uri != nil {
		e := ""
		if envID != nil {
			e = *envID
		}
		n, err = a.cfg.MediaNodes.Register(ctx, *uri, e)
	} else {
		// Launching may outlive the request timeout with wait.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.LaunchTimeout+10*time.Second)
		defer cancel()
		n, err = a.cfg.MediaNodes.Launch(lctx, wait, idempotencyKey(c))
	}
	if err != nil {
		a.failText(c, err)
		return
	}
	writeJSON(c, http.StatusOK, renderMediaNode(n, nil, false, time.Now()))
}

func (a *API) discoverMediaNodes(c *gin.Context) {
	nodes, err := a.cfg.MediaNodes.Discover(c.Request.Context())
	if err != nil {
		a.failText(c, err)
		return
	}
	content := []protocol.Object{}
	for _, n := range nodes {
		content = append(content, renderMediaNode(n, nil, false, time.Now()))
	}
	writeJSON(c, http.StatusOK, protocol.Object{}.With("numberOfElements", len(content)).With("content", content))
}

func (a *API) dropMediaNode(c *gin.Context) {
	wait, ok := boolQuery(c, "wait", false)
	if !ok {
		c.String(http.StatusBadRequest, `Invalid parameter "wait": not a boolean`)
		return
	}
	strategy := c.Query("deletion-strategy")
	ctx := c.Request.Context()
	if wait {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
	}
	n, res, err := a.cfg.MediaNodes.Drop(ctx, protocol.NodeID(c.Param("mediaNodeId")), strategy, wait)
	if err != nil {
		a.failText(c, err)
		return
	}
	switch res {
	case medianodes.Dropped:
		c.Status(http.StatusNoContent)
	case medianodes.Draining:
		writeJSON(c, http.StatusAccepted, renderMediaNode(n, nil, false, time.Now()))
	default:
		writeJSON(c, http.StatusOK, renderMediaNode(n, nil, false, time.Now()))
	}
}

func (a *API) patchMediaNode(c *gin.Context) {
	b, ok := mediaNodeBody(c)
	if !ok {
		return
	}
	status, err := b.string("status")
	if err != nil || (status != nil && !medianodes.Valid(*status)) {
		c.String(http.StatusBadRequest, `Invalid parameter "status". Must be a string with a valid Media Node status value`)
		return
	}
	if status == nil {
		c.Status(http.StatusNoContent)
		return
	}
	n, changed, err := a.cfg.MediaNodes.SetStatus(c.Request.Context(), protocol.NodeID(c.Param("mediaNodeId")), *status)
	if err != nil {
		a.failText(c, err)
		return
	}
	if !changed {
		c.Status(http.StatusNoContent)
		return
	}
	writeJSON(c, http.StatusOK, renderMediaNode(n, nil, false, time.Now()))
}

// mediaNodeBody reads and parses a media node call's JSON body (an empty one
// is an empty object); on error it answers 400 in text/plain, as OpenVidu
// Pro's media node endpoints do, and reports false.
func mediaNodeBody(c *gin.Context) (body, bool) {
	raw, err := readBody(c)
	if err != nil {
		c.String(http.StatusBadRequest, "Error reading the request body: "+err.Error())
		return nil, false
	}
	b, err := parseBody(raw, true)
	if err != nil {
		c.String(http.StatusBadRequest, err.Error())
		return nil, false
	}
	return b, true
}
