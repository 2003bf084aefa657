// Package openvidu is a Go backend client of the OpenVidu 2.x REST API, in
// the shape of openvidu-java-client and openvidu-node-client, made for a
// highly available cluster: it retries connection errors and 502/503/504
// with jittered exponential backoff (go-retryablehttp) within the caller's
// context, as OpenVidu's HA documentation asks of applications, and makes
// those retries safe:
//
//   - CreateSession with a CustomSessionID treats a 409 as success (an
//     earlier attempt created it) and returns the session;
//   - CreateSession and CreateConnection send an Idempotency-Key: Chorus
//     masters return what the first attempt created instead of creating a
//     second session or a duplicate pending connection.
//
// Example:
//
//	ov, err := openvidu.New(openvidu.Config{URL: "https://video.example.org", Secret: "MY_SECRET"})
//	if err != nil { ... }
//	s, err := ov.CreateSession(ctx, openvidu.SessionProperties{CustomSessionID: "daily-standup"})
//	conn, err := ov.CreateConnection(ctx, s.ID, openvidu.ConnectionProperties{Role: "PUBLISHER", Data: `{"user":"ada"}`})
//	// hand conn.Token to the browser: session.connect(token)
//	err = ov.Signal(ctx, openvidu.Signal{Session: s.ID, Type: "chat", Data: "hello"})
//	err = ov.CloseSession(ctx, s.ID)
package openvidu

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/chorus-rtc/chorus/shared/protocol"
)

// Config configures a Client.
type Config struct {
	// URL is the cluster's public URL (the proxy's), http(s)://host[:port].
	URL    string
	Secret string
	// RetryWaitMin and RetryWaitMax bound the wait between attempts
	// (defaults 100 ms and 2 s); RetryMax bounds the attempts of one call
	// (default 30). The caller's context bounds them all.
	RetryWaitMin time.Duration
	RetryWaitMax time.Duration
	RetryMax     int
	// AttemptTimeout bounds one attempt (default 10 s).
	AttemptTimeout time.Duration
}

// Client calls one cluster's REST API. It is safe for concurrent use.
type Client struct {
	base  string
	auth  string
	http  *retryablehttp.Client
	calls atomic.Int64
	retry atomic.Int64
}

// Error is a REST call that failed with an HTTP status; Body is OpenVidu's
// error JSON when the server sent one, Text its plain-text message otherwise
// (the media-node API answers errors as text).
type Error struct {
	Method string
	Path   string
	Status int
	Body   *protocol.Error
	Text   string
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("openvidu: %s %s: %d %s", e.Method, e.Path, e.Status, http.StatusText(e.Status))
	switch {
	case e.Body != nil && e.Body.Message != "":
		msg += ": " + e.Body.Message
	case e.Text != "":
		msg += ": " + e.Text
	}
	return msg
}

// StatusOf returns the HTTP status of an *Error, or 0.
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// New returns a client.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("openvidu: URL %q is not http(s)://host[:port]", cfg.URL)
	}
	if cfg.RetryWaitMin == 0 {
		cfg.RetryWaitMin = 100 * time.Millisecond
	}
	if cfg.RetryWaitMax == 0 {
		cfg.RetryWaitMax = 2 * time.Second
	}
	if cfg.RetryMax == 0 {
		cfg.RetryMax = 30
	}
	if cfg.AttemptTimeout == 0 {
		cfg.AttemptTimeout = 10 * time.Second
	}
	c := &Client{base: strings.TrimRight(u.Scheme+"://"+u.Host, "/"), auth: "Basic " + basic("OPENVIDUAPP", cfg.Secret)}
	rc := retryablehttp.NewClient()
	rc.HTTPClient = &http.Client{Timeout: cfg.AttemptTimeout}
	rc.Logger = nil
	rc.RetryWaitMin, rc.RetryWaitMax, rc.RetryMax = cfg.RetryWaitMin, cfg.RetryWaitMax, cfg.RetryMax
	rc.Backoff = func(min, max time.Duration, attempt int, _ *http.Response) time.Duration {
		ceiling := math.Min(float64(max), float64(min)*math.Pow(2, float64(attempt)))
		return min + time.Duration(mrand.Float64()*(ceiling-float64(min)))
	}
	rc.CheckRetry = func(ctx context.Context, resp *http.Response, err error) (bool, error) {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		retry := err != nil || resp.StatusCode == http.StatusBadGateway ||
			resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusGatewayTimeout
		if retry {
			c.retry.Add(1)
		}
		return retry, nil
	}
	rc.ErrorHandler = retryablehttp.PassthroughErrorHandler
	rc.RequestLogHook = func(_ retryablehttp.Logger, req *http.Request, attempt int) {
		if n, ok := req.Context().Value(attemptsKey{}).(*atomic.Int32); ok {
			n.Store(int32(attempt) + 1)
		}
	}
	c.http = rc
	return c, nil
}

func basic(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
}

// Stats counts the calls made and the attempts that were retries.
func (c *Client) Stats() (calls, retries int64) { return c.calls.Load(), c.retry.Load() }

type attemptsKey struct{}

// do runs one call: body (if any) as JSON, out decoded from a 2xx answer.
func (c *Client) do(ctx context.Context, method, path string, body, out any, idempotent bool) error {
	_, err := c.call(ctx, method, path, body, out, idempotent)
	return err
}

// deleteIdempotent runs a DELETE; a 404 after a retry means an earlier
// attempt did it (its answer was lost when a master failed), so it succeeds.
func (c *Client) deleteIdempotent(ctx context.Context, path string) error {
	attempts, _, err := c.callCounted(ctx, http.MethodDelete, path, nil, nil)
	if attempts > 1 && StatusOf(err) == http.StatusNotFound {
		return nil
	}
	return err
}

// callCounted is call (without idempotency key), also returning how many
// attempts it took.
func (c *Client) callCounted(ctx context.Context, method, path string, body, out any) (attempts, status int, err error) {
	n := new(atomic.Int32)
	ctx = context.WithValue(ctx, attemptsKey{}, n)
	status, err = c.call(ctx, method, path, body, out, false)
	return int(n.Load()), status, err
}

// call runs a request and returns the status of its answer.
func (c *Client) call(ctx context.Context, method, path string, body, out any, idempotent bool) (int, error) {
	c.calls.Add(1)
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return 0, fmt.Errorf("openvidu: encode %s body: %w", path, err)
		}
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, method, c.base+path, raw)
	if err != nil {
		return 0, fmt.Errorf("openvidu: %w", err)
	}
	req.Header.Set("Authorization", c.auth)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if idempotent {
		req.Header.Set("Idempotency-Key", newKey())
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("openvidu: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	payload, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("openvidu: %s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := &Error{Method: method, Path: path, Status: resp.StatusCode}
		var body protocol.Error
		if json.Unmarshal(payload, &body) == nil && body.Status != 0 {
			e.Body = &body
		} else if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
			e.Text = strings.TrimSpace(string(payload))
		}
		return resp.StatusCode, e
	}
	if out != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.Unmarshal(payload, out); err != nil {
			return resp.StatusCode, fmt.Errorf("openvidu: %s %s: decode answer: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

func newKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// SessionProperties are POST /sessions's properties (zero values are left
// to the server's defaults).
type SessionProperties struct {
	CustomSessionID  string `json:"customSessionId,omitempty"`
	MediaMode        string `json:"mediaMode,omitempty"`
	RecordingMode    string `json:"recordingMode,omitempty"`
	ForcedVideoCodec string `json:"forcedVideoCodec,omitempty"`
	AllowTranscoding bool   `json:"allowTranscoding,omitempty"`
	// MediaNode pins the session to a media node by id.
	MediaNode string `json:"-"`
}

// CreateSession creates a session. With a CustomSessionID that already
// exists (409, for instance because an earlier attempt of this very call
// succeeded before its answer was lost), it returns the existing session.
func (c *Client) CreateSession(ctx context.Context, p SessionProperties) (*protocol.Session, error) {
	body := map[string]any{}
	raw, _ := json.Marshal(p)
	_ = json.Unmarshal(raw, &body)
	if p.MediaNode != "" {
		body["mediaNode"] = map[string]string{"id": p.MediaNode}
	}
	var s protocol.Session
	err := c.do(ctx, http.MethodPost, "/openvidu/api/sessions", body, &s, true)
	if StatusOf(err) == http.StatusConflict && p.CustomSessionID != "" {
		return c.Session(ctx, p.CustomSessionID)
	}
	if err != nil {
		return nil, err
	}
	return &s, nil
}

// Session fetches a session with its pending connections (node-client's fetch).
func (c *Client) Session(ctx context.Context, id string) (*protocol.Session, error) {
	var s protocol.Session
	if err := c.do(ctx, http.MethodGet, "/openvidu/api/sessions/"+url.PathEscape(id)+"?pendingConnections=true", nil, &s, false); err != nil {
		return nil, err
	}
	return &s, nil
}

// Sessions lists every session.
func (c *Client) Sessions(ctx context.Context) ([]protocol.Session, error) {
	var list protocol.SessionList
	if err := c.do(ctx, http.MethodGet, "/openvidu/api/sessions?pendingConnections=true", nil, &list, false); err != nil {
		return nil, err
	}
	return list.Content, nil
}

// CloseSession closes a session, evicting its participants. A 404 after a
// retry counts as success: an earlier attempt closed it.
func (c *Client) CloseSession(ctx context.Context, id string) error {
	return c.deleteIdempotent(ctx, "/openvidu/api/sessions/"+url.PathEscape(id))
}

// ConnectionProperties are POST /sessions/{id}/connection's properties.
type ConnectionProperties struct {
	Role             string          `json:"role,omitempty"`
	Data             string          `json:"data,omitempty"`
	Record           *bool           `json:"record,omitempty"`
	KurentoOptions   json.RawMessage `json:"kurentoOptions,omitempty"`
	CustomIceServers json.RawMessage `json:"customIceServers,omitempty"`
}

// CreateConnection creates a pending connection and its token. Retries are
// idempotent: a retried call returns the connection the first attempt made.
func (c *Client) CreateConnection(ctx context.Context, sessionID string, p ConnectionProperties) (*protocol.Connection, error) {
	var conn protocol.Connection
	if err := c.do(ctx, http.MethodPost, "/openvidu/api/sessions/"+url.PathEscape(sessionID)+"/connection", p, &conn, true); err != nil {
		return nil, err
	}
	return &conn, nil
}

// Connection fetches one connection.
func (c *Client) Connection(ctx context.Context, sessionID, connectionID string) (*protocol.Connection, error) {
	var conn protocol.Connection
	path := "/openvidu/api/sessions/" + url.PathEscape(sessionID) + "/connection/" + url.PathEscape(connectionID)
	if err := c.do(ctx, http.MethodGet, path, nil, &conn, false); err != nil {
		return nil, err
	}
	return &conn, nil
}

// ConnectionUpdate changes a connection's role and/or record flag.
type ConnectionUpdate struct {
	Role   *string `json:"role,omitempty"`
	Record *bool   `json:"record,omitempty"`
}

// UpdateConnection applies a ConnectionUpdate (OpenVidu Pro's PATCH).
func (c *Client) UpdateConnection(ctx context.Context, sessionID, connectionID string, u ConnectionUpdate) (*protocol.Connection, error) {
	var conn protocol.Connection
	path := "/openvidu/api/sessions/" + url.PathEscape(sessionID) + "/connection/" + url.PathEscape(connectionID)
	if err := c.do(ctx, http.MethodPatch, path, u, &conn, false); err != nil {
		return nil, err
	}
	return &conn, nil
}

// ForceDisconnect evicts a participant or revokes a pending connection.
func (c *Client) ForceDisconnect(ctx context.Context, sessionID, connectionID string) error {
	return c.deleteIdempotent(ctx, "/openvidu/api/sessions/"+url.PathEscape(sessionID)+"/connection/"+url.PathEscape(connectionID))
}

// ForceUnpublish stops a published stream.
func (c *Client) ForceUnpublish(ctx context.Context, sessionID, streamID string) error {
	return c.deleteIdempotent(ctx, "/openvidu/api/sessions/"+url.PathEscape(sessionID)+"/stream/"+url.PathEscape(streamID))
}

// Signal is a message for participants (POST /signal); an empty To means all.
type Signal struct {
	Session string   `json:"session"`
	To      []string `json:"to,omitempty"`
	Type    string   `json:"type,omitempty"`
	Data    string   `json:"data,omitempty"`
}

// Signal sends a signal.
func (c *Client) Signal(ctx context.Context, s Signal) error {
	return c.do(ctx, http.MethodPost, "/openvidu/api/signal", s, nil, false)
}

// Health returns the cluster's health (OpenVidu Pro's GET /health): UP,
// UNSTABLE (409) or DOWN (503) all come with the same body; it is not
// retried, since a 503 here is an answer, not a failover.
func (c *Client) Health(ctx context.Context) (*protocol.Health, error) {
	c.calls.Add(1)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/openvidu/api/health", nil)
	if err != nil {
		return nil, fmt.Errorf("openvidu: %w", err)
	}
	req.Header.Set("Authorization", c.auth)
	resp, err := c.http.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("openvidu: GET /openvidu/api/health: %w", err)
	}
	defer resp.Body.Close()
	var h protocol.Health
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&h); err != nil || h.Status == "" {
		return nil, &Error{Method: http.MethodGet, Path: "/openvidu/api/health", Status: resp.StatusCode}
	}
	return &h, nil
}
