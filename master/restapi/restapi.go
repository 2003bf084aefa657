// Package restapi serves OpenVidu 2.x's REST API on a master (gin):
// /openvidu/api/..., Basic auth OPENVIDUAPP:<secret>, OpenVidu's bodies,
// objects and status codes, as openvidu-node-client and openvidu-java-client
// expect them.
package restapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/chorus-rtc/chorus/master/medianodes"
	"github.com/chorus-rtc/chorus/master/session"
	"github.com/chorus-rtc/chorus/shared/config"
	"github.com/chorus-rtc/chorus/shared/credential"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

// maxBodyBytes bounds a REST request body.
const maxBodyBytes = 1 << 20

// Config configures the API.
type Config struct {
	Sessions *session.Service
	Secret   string
	// PublicURL is the cluster's public ws(s):// URL (reported by /config).
	PublicURL        string
	ForcedVideoCodec string
	AllowTranscoding bool
	// VideoSimulcast is OPENVIDU_WEBRTC_SIMULCAST as /config reports it:
	// whether publishers are told to send simulcast (joinRoom's
	// videoSimulcast).
	VideoSimulcast   bool
	GarbageInterval  time.Duration
	GarbageThreshold time.Duration
	RequestTimeout   time.Duration
	Webhook          config.Webhook
	CDR              config.CDR
	Recording        RecordingConfig
	// MediaNodes serves the /media-nodes API.
	MediaNodes *medianodes.Manager
	// LaunchTimeout bounds POST /media-nodes?wait=true.
	LaunchTimeout time.Duration
	// Cluster is reported by GET /config (OpenVidu Pro's cluster properties).
	Cluster ClusterInfo
	// TURNURLs are the STUN/TURN URLs masters hand to participants
	// (turn.urls), reported by GET /config as OpenVidu reports its coturn.
	TURNURLs []string
	Logger   *slog.Logger
}

// ClusterInfo is what GET /config reports about the media node cluster.
type ClusterInfo struct {
	ID                  string
	Provider            string
	ReconnectionTimeout time.Duration // negative: forever
	Autoscaling         config.Autoscaling
}

// API is the REST API.
type API struct {
	cfg    Config
	secret credential.Secret // cfg.Secret
	svc    *session.Service
	log    *slog.Logger
}

// New returns the API.
func New(cfg Config) *API {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &API{cfg: cfg, secret: credential.New(cfg.Secret), svc: cfg.Sessions, log: cfg.Logger}
}

// Register adds the API's routes to r.
func (a *API) Register(r *gin.Engine) {
	r.GET("/openvidu/api/config/openvidu-publicurl", a.publicURL) // unauthenticated, as in OpenVidu
	g := r.Group("/openvidu/api", cors, a.authenticate, a.timeout)
	g.POST("/sessions", a.createSession)
	g.GET("/sessions", a.listSessions)
	g.GET("/sessions/:sessionId", a.getSession)
	g.DELETE("/sessions/:sessionId", a.closeSession)
	g.POST("/sessions/:sessionId/connection", a.createConnection)
	g.GET("/sessions/:sessionId/connection", a.listConnections)
	g.GET("/sessions/:sessionId/connection/:connectionId", a.getConnection)
	g.PATCH("/sessions/:sessionId/connection/:connectionId", a.updateConnection)
	g.DELETE("/sessions/:sessionId/connection/:connectionId", a.deleteConnection)
	g.DELETE("/sessions/:sessionId/stream/:streamId", a.forceUnpublish)
	g.POST("/signal", a.signal)
	g.POST("/tokens", a.createToken)
	g.GET("/config", a.config)
	g.GET("/health", a.health)
	a.registerMediaNodes(g)
	a.registerRecordings(g, r)
	for _, route := range []struct{ method, path string }{
		{http.MethodPost, "/broadcast/start"}, {http.MethodPost, "/broadcast/stop"},
	} {
		g.Handle(route.method, route.path, notImplemented)
	}
}

// CORSPreflight answers browsers' preflight requests to the API before
// routing (openvidu-server allows any origin, method and header).
func CORSPreflight(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions && strings.HasPrefix(r.URL.Path, "/openvidu/api/") {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", "*")
			h.Set("Access-Control-Allow-Methods", "GET, POST, PATCH, DELETE, OPTIONS")
			if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
				h.Set("Access-Control-Allow-Headers", req)
			} else {
				h.Set("Access-Control-Allow-Headers", "*")
			}
			w.WriteHeader(http.StatusOK)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// LegacyPaths rewrites OpenVidu's deprecated paths (/api/..., /config) to
// /openvidu/api/..., as openvidu-server does by default.
func LegacyPaths(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		switch {
		case strings.HasPrefix(p, "/api/"):
			r.URL.Path = "/openvidu" + p
		case p == "/config" || strings.HasPrefix(p, "/config/"):
			r.URL.Path = "/openvidu/api" + p
		}
		r.URL.RawPath = ""
		next.ServeHTTP(w, r)
	})
}

func cors(c *gin.Context) {
	c.Writer.Header().Set("Access-Control-Allow-Origin", "*")
}

// authenticate checks Basic OPENVIDUAPP:<secret> in constant time. The
// challenge header matters: openvidu-java-client only sends credentials
// after a 401 that carries it.
func (a *API) authenticate(c *gin.Context) {
	raw, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Basic ")
	if ok {
		if dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(raw)); err == nil {
			user, pass, _ := strings.Cut(string(dec), ":")
			userOK := subtle.ConstantTimeCompare([]byte(user), []byte("OPENVIDUAPP")) == 1
			if a.secret.Matches(pass) && userOK {
				return
			}
		}
	}
	c.Header("WWW-Authenticate", `Basic realm="Realm"`)
	c.AbortWithStatus(http.StatusUnauthorized)
}

// timeout bounds a request (Redis and media node calls included): a stuck
// dependency gives 503, never a hang.
func (a *API) timeout(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), a.cfg.RequestTimeout)
	defer cancel()
	c.Request = c.Request.WithContext(ctx)
	c.Next()
}

func notImplemented(c *gin.Context) {
	writeError(c, http.StatusNotImplemented, "Recording and broadcasting are not enabled in this cluster", c.Request.URL.Path)
}

// sessionIDParam is the route's :sessionId.
func sessionIDParam(c *gin.Context) protocol.SessionID {
	return protocol.SessionID(c.Param("sessionId"))
}

// connectionIDParam is the route's :connectionId.
func connectionIDParam(c *gin.Context) protocol.ConnectionID {
	return protocol.ConnectionID(c.Param("connectionId"))
}

// writeJSON writes v without HTML escaping (token URLs keep a literal &).
func writeJSON(c *gin.Context, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		c.Status(http.StatusInternalServerError)
		return
	}
	c.Data(status, "application/json", bytes.TrimRight(buf.Bytes(), "\n"))
}

// writeError writes OpenVidu's error JSON.
func writeError(c *gin.Context, status int, message, path string) {
	writeJSON(c, status, protocol.Error{
		Timestamp: store.NowMillis(), Status: status, Error: http.StatusText(status), Message: message, Path: path,
	})
}

// fail answers a service error: OpenVidu's status (restErrorOf, or the
// route's overrides) with its error JSON where openvidu-server sends one, an
// empty body otherwise.
func (a *API) fail(c *gin.Context, err error, path string, overrides ...errorOverride) {
	ans, e := restAnswer(err, overrides...)
	if ans.status >= 500 {
		a.log.Warn("REST request failed", "method", c.Request.Method, "path", c.Request.URL.Path, "err", err)
	}
	if ans.body || ans.status >= 500 {
		writeError(c, ans.status, e.Message, path)
		return
	}
	c.Status(ans.status)
}

// idempotencyKey reads the Idempotency-Key header (at most 128 characters,
// hashed into the key space) that makes a retried POST return what the first
// attempt created instead of creating again.
func idempotencyKey(c *gin.Context) string {
	k := c.GetHeader("Idempotency-Key")
	if k == "" || len(k) > 128 {
		return ""
	}
	sum := sha256.Sum256([]byte(k))
	return hex.EncodeToString(sum[:16])
}

func readBody(c *gin.Context) ([]byte, error) {
	return io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, maxBodyBytes))
}

// boolQuery reads a boolean query parameter as Spring converts it.
func boolQuery(c *gin.Context, name string, def bool) (bool, bool) {
	v, ok := c.GetQuery(name)
	if !ok || v == "" {
		return def, true
	}
	switch strings.ToLower(v) {
	case "true", "on", "yes", "1":
		return true, true
	case "false", "off", "no", "0":
		return false, true
	}
	return false, false
}

// listingQuery reads ?pendingConnections= (default def) and ?webRtcStats=
// (accepted, Chorus has no WebRTC statistics to add); a malformed value
// answers 400.
func listingQuery(c *gin.Context, def bool) (pending, ok bool) {
	pending, ok1 := boolQuery(c, "pendingConnections", def)
	_, ok2 := boolQuery(c, "webRtcStats", false)
	if !ok1 || !ok2 {
		c.Status(http.StatusBadRequest)
		return false, false
	}
	return pending, true
}

// jsonBody reads and parses a request body, answering 400 on failure.
func jsonBody(c *gin.Context, path string, optional bool) (body, bool) {
	raw, err := readBody(c)
	if err != nil {
		writeError(c, http.StatusBadRequest, "Error reading the request body: "+err.Error(), path)
		return nil, false
	}
	b, err := parseBody(raw, optional)
	if err != nil {
		writeError(c, http.StatusBadRequest, err.Error(), path)
		return nil, false
	}
	return b, true
}

func (a *API) createSession(c *gin.Context) {
	const path = "/openvidu/api/sessions"
	raw, err := readBody(c)
	if err != nil {
		writeError(c, http.StatusBadRequest, "Error reading the request body: "+err.Error(), path)
		return
	}
	props, err := SessionPropertiesFromBody(raw)
	if err != nil {
		writeError(c, http.StatusBadRequest, err.Error(), path)
		return
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		props.ForcedVideoCodec = "MEDIA_SERVER_PREFERRED" // openvidu-server's no-body quirk
	}
	snap, err := a.svc.CreateSession(c.Request.Context(), props, idempotencyKey(c))
	if err != nil {
		a.fail(c, err, path)
		return
	}
	writeJSON(c, http.StatusOK, session.RenderSession(snap, false))
}

func (a *API) listSessions(c *gin.Context) {
	pending, ok := listingQuery(c, false)
	if !ok {
		return
	}
	snaps, err := a.svc.ListSessions(c.Request.Context())
	if err != nil {
		a.fail(c, err, "/openvidu/api/sessions")
		return
	}
	out := protocol.SessionList{Content: []protocol.Session{}}
	for _, s := range snaps {
		out.Content = append(out.Content, session.RenderSession(s, pending))
	}
	out.NumberOfElements = len(out.Content)
	writeJSON(c, http.StatusOK, out)
}

func (a *API) getSession(c *gin.Context) {
	pending, ok := listingQuery(c, false)
	if !ok {
		return
	}
	snap, err := a.svc.GetSession(c.Request.Context(), sessionIDParam(c))
	if err != nil {
		a.fail(c, err, "/openvidu/api/sessions")
		return
	}
	writeJSON(c, http.StatusOK, session.RenderSession(snap, pending))
}

func (a *API) closeSession(c *gin.Context) {
	if err := a.svc.CloseSession(c.Request.Context(), sessionIDParam(c), protocol.ReasonSessionClosedByServer); err != nil {
		a.fail(c, err, "/openvidu/api/sessions")
		return
	}
	c.Status(http.StatusNoContent)
}

func (a *API) createConnection(c *gin.Context) {
	sid := sessionIDParam(c)
	path := "/openvidu/api/sessions/" + string(sid) + "/connection"
	if _, err := a.svc.GetSession(c.Request.Context(), sid); err != nil {
		a.fail(c, err, path)
		return
	}
	b, ok := jsonBody(c, path, true)
	if !ok {
		return
	}
	props, err := ConnectionPropertiesFromBody(b)
	var unsupported NotSupportedError
	if errors.As(err, &unsupported) {
		writeError(c, http.StatusNotImplemented, unsupported.Message, path)
		return
	}
	if err != nil {
		writeError(c, http.StatusBadRequest, err.Error(), path)
		return
	}
	snap, conn, err := a.svc.CreateConnection(c.Request.Context(), sid, props, idempotencyKey(c))
	if err != nil {
		a.fail(c, err, path)
		return
	}
	writeJSON(c, http.StatusOK, session.RenderConnection(snap, conn))
}

func (a *API) listConnections(c *gin.Context) {
	pending, ok := listingQuery(c, true)
	if !ok {
		return
	}
	snap, err := a.svc.GetSession(c.Request.Context(), sessionIDParam(c))
	if err != nil {
		a.fail(c, err, "/openvidu/api/sessions")
		return
	}
	writeJSON(c, http.StatusOK, session.RenderConnections(snap, pending))
}

func (a *API) getConnection(c *gin.Context) {
	snap, conn, err := a.svc.GetConnection(c.Request.Context(), sessionIDParam(c), connectionIDParam(c))
	if err != nil {
		a.fail(c, err, "/openvidu/api/sessions", sessionOfConnectionMissing)
		return
	}
	writeJSON(c, http.StatusOK, session.RenderConnection(snap, conn))
}

func (a *API) updateConnection(c *gin.Context) {
	sid, cid := sessionIDParam(c), connectionIDParam(c)
	path := "/openvidu/api/sessions/" + string(sid) + "/connection/" + string(cid)
	b, ok := jsonBody(c, path, true)
	if !ok {
		return
	}
	role, err := b.string("role")
	if err != nil {
		writeError(c, http.StatusBadRequest, "Type error in parameter 'role': "+err.Error(), path)
		return
	}
	if role != nil && !(*role == protocol.RoleSubscriber || *role == protocol.RolePublisher || *role == protocol.RoleModerator) {
		writeError(c, http.StatusBadRequest, "Parameter role "+*role+" is not defined", path)
		return
	}
	record, err := b.bool("record")
	if err != nil {
		writeError(c, http.StatusBadRequest, "Type error in parameter 'record': "+err.Error(), path)
		return
	}
	snap, conn, err := a.svc.UpdateConnection(c.Request.Context(), sid, cid, role, record)
	if err != nil {
		a.fail(c, err, path)
		return
	}
	writeJSON(c, http.StatusOK, session.RenderConnection(snap, conn))
}

func (a *API) deleteConnection(c *gin.Context) {
	if err := a.svc.DeleteConnection(c.Request.Context(), sessionIDParam(c), connectionIDParam(c)); err != nil {
		a.fail(c, err, "/openvidu/api/sessions", sessionOfConnectionMissing)
		return
	}
	c.Status(http.StatusNoContent)
}

func (a *API) forceUnpublish(c *gin.Context) {
	err := a.svc.ForceUnpublish(c.Request.Context(), sessionIDParam(c), protocol.StreamID(c.Param("streamId")), protocol.ReasonForceUnpublishByServer)
	if err != nil {
		a.fail(c, err, "/openvidu/api/sessions", sessionOfConnectionMissing)
		return
	}
	c.Status(http.StatusNoContent)
}

// SignalFromBody validates POST /openvidu/api/signal's body.
func SignalFromBody(raw []byte) (sid protocol.SessionID, to []string, typ, data *string, err error) {
	b, err := parseBody(raw, false)
	if err != nil {
		return "", nil, nil, nil, err
	}
	typeErr := errors.New("Type error in some parameter")
	s, err := b.string("session")
	if err != nil {
		return "", nil, nil, nil, typeErr
	}
	if typ, err = b.string("type"); err != nil {
		return "", nil, nil, nil, typeErr
	}
	if data, err = b.string("data"); err != nil {
		return "", nil, nil, nil, typeErr
	}
	if b.present("to") {
		var list []*string
		if json.Unmarshal(b["to"], &list) != nil {
			return "", nil, nil, nil, typeErr
		}
		for _, t := range list {
			if t == nil {
				to = append(to, "") // a null recipient: no connection has that id (406)
				continue
			}
			to = append(to, *t)
		}
	}
	if s == nil {
		return "", nil, nil, nil, errors.New(`"session" parameter is mandatory`)
	}
	return protocol.SessionID(*s), to, typ, data, nil
}

func (a *API) signal(c *gin.Context) {
	const path = "/openvidu/api/signal"
	raw, err := readBody(c)
	if err != nil {
		writeError(c, http.StatusBadRequest, "Error reading the request body: "+err.Error(), path)
		return
	}
	sid, to, typ, data, err := SignalFromBody(raw)
	if err != nil {
		writeError(c, http.StatusBadRequest, err.Error(), path)
		return
	}
	if err := a.svc.Signal(c.Request.Context(), sid, to, typ, data, ""); err != nil {
		a.fail(c, err, path)
		return
	}
	c.Status(http.StatusOK)
}

func (a *API) createToken(c *gin.Context) {
	const path = "/openvidu/api/tokens"
	b, ok := jsonBody(c, path, false)
	if !ok {
		return
	}
	sid, err := b.string("session")
	if err != nil {
		writeError(c, http.StatusBadRequest, "Type error in some parameter", path)
		return
	}
	if sid == nil {
		writeError(c, http.StatusBadRequest, `"session" parameter is mandatory`, path)
		return
	}
	if _, err := a.svc.GetSession(c.Request.Context(), protocol.SessionID(*sid)); err != nil {
		writeError(c, http.StatusNotFound, "Session "+*sid+" not found", path)
		return
	}
	delete(b, "record")
	props, err := ConnectionPropertiesFromBody(b)
	if err != nil {
		writeError(c, http.StatusBadRequest, err.Error(), "/openvidu/api/sessions/"+*sid+"/connection")
		return
	}
	_, conn, err := a.svc.CreateConnection(c.Request.Context(), protocol.SessionID(*sid), props, idempotencyKey(c))
	if err != nil {
		a.fail(c, err, path)
		return
	}
	writeJSON(c, http.StatusOK, protocol.Token{
		ID: conn.Token, Token: conn.Token, CreatedAt: conn.CreatedAt, ConnectionID: string(conn.ID),
		Session: string(conn.SessionID), Data: conn.ServerData, Role: conn.Role, KurentoOptions: conn.KurentoOptions,
	})
}

func (a *API) publicURL(c *gin.Context) {
	c.String(http.StatusOK, httpURL(a.cfg.PublicURL)+"/")
}

// httpURL turns the public ws(s):// URL into the http(s):// one.
func httpURL(ws string) string {
	switch {
	case strings.HasPrefix(ws, "wss://"):
		return "https://" + strings.TrimPrefix(ws, "wss://")
	case strings.HasPrefix(ws, "ws://"):
		return "http://" + strings.TrimPrefix(ws, "ws://")
	}
	return ws
}

func (a *API) config(c *gin.Context) {
	pub := httpURL(a.cfg.PublicURL)
	host := strings.TrimPrefix(strings.TrimPrefix(pub, "https://"), "http://")
	hostname, port := host, 443
	if h, p, ok := strings.Cut(host, ":"); ok {
		hostname = h
		if n, err := json.Number(p).Int64(); err == nil {
			port = int(n)
		}
	}
	fields := protocol.Object{}.
		With("VERSION", protocol.Version).
		With("DOMAIN_OR_PUBLIC_IP", hostname).
		With("HTTPS_PORT", port).
		With("OPENVIDU_PUBLICURL", pub).
		With("OPENVIDU_CDR", a.cfg.CDR.Enabled)
	if a.cfg.CDR.Enabled {
		fields = fields.With("OPENVIDU_CDR_PATH", strings.TrimRight(a.cfg.CDR.Path, "/")+"/")
	}
	fields = fields.
		With("OPENVIDU_STREAMS_FORCED_VIDEO_CODEC", a.cfg.ForcedVideoCodec).
		With("OPENVIDU_STREAMS_ALLOW_TRANSCODING", a.cfg.AllowTranscoding).
		With("OPENVIDU_WEBRTC_SIMULCAST", a.cfg.VideoSimulcast).
		With("OPENVIDU_SESSIONS_GARBAGE_INTERVAL", int(a.cfg.GarbageInterval.Seconds())).
		With("OPENVIDU_SESSIONS_GARBAGE_THRESHOLD", int(a.cfg.GarbageThreshold.Seconds())).
		With("OPENVIDU_RECORDING", a.cfg.Recording.Enabled).
		With("OPENVIDU_WEBHOOK", a.cfg.Webhook.Enabled)
	if a.cfg.Webhook.Enabled {
		fields = fields.With("OPENVIDU_WEBHOOK_ENDPOINT", a.cfg.Webhook.Endpoint).
			With("OPENVIDU_WEBHOOK_HEADERS", nonNil(a.cfg.Webhook.Headers)).
			With("OPENVIDU_WEBHOOK_EVENTS", nonNil(a.cfg.Webhook.Events))
	}
	fields = withTURN(fields, a.cfg.TURNURLs)
	cl := a.cfg.Cluster
	rt := -1
	if cl.ReconnectionTimeout >= 0 {
		rt = int(cl.ReconnectionTimeout.Seconds())
	}
	fields = fields.
		With("OPENVIDU_PRO_CLUSTER", true).
		With("OPENVIDU_PRO_CLUSTER_ID", cl.ID).
		With("OPENVIDU_PRO_CLUSTER_ENVIRONMENT", cl.Provider).
		With("OPENVIDU_PRO_CLUSTER_RECONNECTION_TIMEOUT", rt).
		With("OPENVIDU_PRO_CLUSTER_AUTOSCALING", cl.Autoscaling.Enabled).
		With("OPENVIDU_PRO_CLUSTER_AUTOSCALING_MAX_NODES", cl.Autoscaling.MaxNodes).
		With("OPENVIDU_PRO_CLUSTER_AUTOSCALING_MIN_NODES", cl.Autoscaling.MinNodes).
		With("OPENVIDU_PRO_CLUSTER_AUTOSCALING_MAX_LOAD", cl.Autoscaling.MaxLoad).
		With("OPENVIDU_PRO_CLUSTER_AUTOSCALING_MIN_LOAD", cl.Autoscaling.MinLoad)
	raw, _ := json.Marshal(fields)
	c.Data(http.StatusOK, "application/json", raw)
}

// withTURN adds to GET /config's fields the TURN servers handed to
// participants, with OpenVidu's names: COTURN_IP and COTURN_PORT (the host
// and port of the first turn: URL, else of the first turns: URL; OpenVidu's
// coturn settings, 3478 by default) and OPENVIDU_WEBRTC_ICE_SERVERS (every
// URL, in OpenVidu's "url=<url>" element syntax, as a JSON array; its
// credentials are minted per connection from turn.secret, which is not
// reported). Without TURN URLs none of them is present (OpenVidu omits
// OPENVIDU_WEBRTC_ICE_SERVERS when empty; Chorus has no coturn then).
func withTURN(fields protocol.Object, urls []string) protocol.Object {
	if len(urls) == 0 {
		return fields
	}
	host, port, ok := "", 0, false
	for _, scheme := range []string{"turn", "turns"} {
		for _, u := range urls {
			if host, port, ok = turnHostPort(scheme, u); ok {
				break
			}
		}
		if ok {
			break
		}
	}
	if ok {
		fields = fields.With("COTURN_IP", host).With("COTURN_PORT", port)
	}
	servers := make([]string, len(urls))
	for i, u := range urls {
		servers[i] = "url=" + u
	}
	return fields.With("OPENVIDU_WEBRTC_ICE_SERVERS", servers)
}

// turnHostPort parses a TURN URL of the scheme (RFC 7065:
// turn[s]:host[:port][?transport=udp|tcp]) into its host and port (3478 for
// turn:, 5349 for turns: when absent).
func turnHostPort(scheme, u string) (string, int, bool) {
	rest, ok := strings.CutPrefix(u, scheme+":")
	if !ok || rest == "" {
		return "", 0, false
	}
	rest, _, _ = strings.Cut(rest, "?")
	port := 3478
	if scheme == "turns" {
		port = 5349
	}
	if h, p, err := net.SplitHostPort(rest); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 || h == "" {
			return "", 0, false
		}
		return h, n, true
	}
	return strings.Trim(rest, "[]"), port, true
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// health answers OpenVidu Pro's GET /openvidu/api/health: UP (200) when every
// running media node is connected, UNSTABLE (409) when some are not, DOWN
// (503) when none is; plus OpenVidu Enterprise's view of the masters.
func (a *API) health(c *gin.Context) {
	ctx := c.Request.Context()
	st := a.svc.Store()
	nodes, err := st.MediaNodes(ctx)
	if err != nil {
		a.fail(c, err, "/openvidu/api/health")
		return
	}
	masters, _, err := st.Masters(ctx)
	if err != nil {
		a.fail(c, err, "/openvidu/api/health")
		return
	}
	now := time.Now()
	disconnected := []string{}
	serving := 0
	for _, n := range nodes {
		if n.Status != protocol.NodeRunning && n.Status != protocol.NodeWaitingIdle {
			continue
		}
		serving++
		if !Connected(n, now) {
			disconnected = append(disconnected, string(n.ID))
		}
	}
	status, code := protocol.HealthUp, http.StatusOK
	switch {
	case serving == 0 || len(disconnected) == serving:
		status, code = protocol.HealthDown, http.StatusServiceUnavailable
	case len(disconnected) > 0:
		status, code = protocol.HealthUnstable, http.StatusConflict
	}
	out := protocol.Health{Status: status, DisconnectedMediaNodes: disconnected, ClusterStatus: status, Nodes: map[string]protocol.NodeHealth{}}
	for _, m := range masters {
		ms := protocol.HealthUp
		if m.Draining {
			ms = "DRAINING"
		}
		out.Nodes[string(m.ID)] = protocol.NodeHealth{Status: ms, ID: string(m.ID), URI: m.InternalURL, DisconnectedMediaNodes: disconnected}
	}
	// Masters declared crashed in the last hour.
	crashed, err := st.CrashedMasters(ctx)
	if err != nil {
		a.fail(c, err, "/openvidu/api/health")
		return
	}
	for _, id := range crashed {
		out.Nodes[id] = protocol.NodeHealth{Status: protocol.HealthDown, ID: id, DisconnectedMediaNodes: []string{}}
	}
	writeJSON(c, code, out)
}
