// Package mediaapi is the internal HTTP API between masters and media nodes:
// its request and response types and a client. Masters create, negotiate and
// release WebRTC endpoints on a node through it; every call is authenticated
// with the cluster secret as a bearer token.
//
// Endpoints are named by the caller, so that a release is idempotent and can
// be repeated by whoever cleans up after a crash:
//
//	publisher endpoint:  the stream id (str_CAM_xxxx_con_yyyy)
//	subscriber endpoint: <subscriber connection id>_<stream id>
//
// Routes (all JSON; errors are {"error": "..."} with a 4xx/5xx status):
//
//	POST   /internal/v1/publishers              PublishRequest  -> SDPAnswer
//	POST   /internal/v1/subscribers             SubscribeRequest -> SDPOffer
//	POST   /internal/v1/endpoints/{id}/answer   SDPAnswer       -> 204
//	POST   /internal/v1/endpoints/{id}/ice      ICECandidate    -> 204
//	DELETE /internal/v1/endpoints/{id}?session=S                -> 204 (also when unknown)
//	DELETE /internal/v1/sessions/{sid}                          -> 204 (every endpoint of the session)
//	GET    /internal/v1/endpoints                               -> EndpointList
//	GET    /internal/v1/network-quality                         -> NetworkQuality
//	GET    /internal/v1/health                                  -> Health
//	GET    /internal/v1/liveness                                -> a line every second while the node runs
package mediaapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/chorus-rtc/chorus/shared/credential"
)

// PublishRequest creates a publisher endpoint from the client's SDP offer.
// Reconnect replaces an existing publisher endpoint of the same stream (a
// publisher's reconnectStream): subscribers keep their endpoints and receive
// the new media.
type PublishRequest struct {
	SessionID string `json:"sessionId"`
	StreamID  string `json:"streamId"`
	// ConnectionID is the publishing connection, whose network quality
	// the node rates (NetworkQuality).
	ConnectionID string `json:"connectionId,omitempty"`
	SDPOffer     string `json:"sdpOffer"`
	VideoCodec   string `json:"videoCodec"` // VP8 or H264
	Reconnect    bool   `json:"reconnect,omitempty"`
}

// SubscribeRequest creates a subscriber endpoint that receives a published
// stream; the node answers with its SDP offer (the node is the offerer for
// subscriptions, as mediasoup is for openvidu-browser). Reconnect replaces an
// existing endpoint of the same id.
type SubscribeRequest struct {
	SessionID  string `json:"sessionId"`
	EndpointID string `json:"endpointId"`
	StreamID   string `json:"streamId"`
	// ConnectionID is the subscribing connection: the round-trip times of
	// its subscriptions count in its network quality.
	ConnectionID string `json:"connectionId,omitempty"`
	Reconnect    bool   `json:"reconnect,omitempty"`
}

// SDPAnswer carries an SDP answer.
type SDPAnswer struct {
	SDPAnswer string `json:"sdpAnswer"`
}

// SDPOffer carries an SDP offer.
type SDPOffer struct {
	SDPOffer string `json:"sdpOffer"`
}

// ICECandidate is a remote (client) ICE candidate for an endpoint.
type ICECandidate struct {
	SessionID     string  `json:"sessionId"`
	Candidate     string  `json:"candidate"`
	SDPMid        *string `json:"sdpMid,omitempty"`
	SDPMLineIndex *uint16 `json:"sdpMLineIndex,omitempty"`
}

// Endpoint describes one endpoint of a node.
type Endpoint struct {
	ID        string `json:"id"`
	SessionID string `json:"sessionId"`
	Kind      string `json:"kind"` // publisher or subscriber
	StreamID  string `json:"streamId"`
	State     string `json:"state"` // the peer connection state
	// Layers are a simulcast publisher's video encodings, lowest quality
	// first (absent without simulcast).
	Layers []Layer `json:"layers,omitempty"`
	// Layer is the simulcast layer a subscriber receives: an index into
	// its publisher's Layers, -1 while paused or not started (absent
	// without simulcast).
	Layer *int `json:"layer,omitempty"`
}

// Layer is one simulcast encoding of a published video as its media node
// receives it.
type Layer struct {
	Bitrate int  `json:"bitrate"` // bits per second over the last second or so
	Width   int  `json:"width"`   // of the last keyframe, 0 when unknown (H.264)
	Height  int  `json:"height"`
	Active  bool `json:"active"` // a packet arrived within the last second
}

// EndpointList lists a node's endpoints.
type EndpointList struct {
	Endpoints []Endpoint `json:"endpoints"`
}

// ConnectionQuality is one publishing connection's network quality level
// (0 to 5, OpenVidu Pro's networkQualityLevelChanged) with the figures it
// was computed from over the interval since the node's previous answer
// (medianode/netquality documents the formula).
type ConnectionQuality struct {
	SessionID    string  `json:"sessionId"`
	ConnectionID string  `json:"connectionId"`
	StreamID     string  `json:"streamId"`
	Level        int     `json:"level"`
	LossPercent  float64 `json:"lossPercent"` // uplink packets lost, 0 to 100
	JitterMS     float64 `json:"jitterMs"`    // uplink interarrival jitter
	RTTMS        float64 `json:"rttMs"`       // 0: unknown (the connection subscribes to nothing)
	// Headroom is the connection's downlink bandwidth estimate over what
	// it is sent (its browser's REMB; the worst of its video
	// subscriptions); 0: unknown.
	Headroom float64 `json:"headroom"`
}

// NetworkQuality lists the rated connections of a node.
type NetworkQuality struct {
	Connections []ConnectionQuality `json:"connections"`
}

// Health is a node's self-description.
type Health struct {
	ID        string  `json:"id"`
	Load      float64 `json:"load"`
	Endpoints int     `json:"endpoints"`
	Sessions  int     `json:"sessions"`
}

// Error is an error answered by a node. Code is one of the Code* constants.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code,omitempty"`
	Message string `json:"error"`
}

// Machine-readable error codes of the node's answers.
const (
	CodeBadSDP          = "bad_sdp"
	CodeCodecNotOffered = "codec_not_offered"
	CodeUnknown         = "unknown_endpoint"
	CodeExists          = "endpoint_exists"
	CodeUnavailable     = "unavailable"
)

func (e *Error) Error() string { return fmt.Sprintf("media node: %d %s", e.Status, e.Message) }

// ErrNotFound matches an Error with status 404 (unknown endpoint or stream).
var ErrNotFound = errors.New("media node: not found")

// Is lets errors.Is(err, ErrNotFound) match a 404.
func (e *Error) Is(target error) bool {
	return target == ErrNotFound && e.Status == http.StatusNotFound
}

// Authorized reports whether r carries the cluster secret as its bearer
// token (credential.Secret.Matches: the time taken tells nothing about the
// secret, its length included).
func Authorized(r *http.Request, secret credential.Secret) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return secret.Matches(got) && ok
}

// The media node API's routes, as net/http ServeMux patterns ("METHOD
// /path/{wildcard}"): the node serves them and Client calls them, so both
// sides read the same table. Wildcards are filled in order by Route.Path.
const (
	RoutePublish        = "POST /internal/v1/publishers"
	RouteSubscribe      = "POST /internal/v1/subscribers"
	RouteAnswer         = "POST /internal/v1/endpoints/{id}/answer" // ?session=<sid>
	RouteICE            = "POST /internal/v1/endpoints/{id}/ice"
	RouteRelease        = "DELETE /internal/v1/endpoints/{id}" // ?session=<sid>
	RouteReleaseSession = "DELETE /internal/v1/sessions/{sid}" // ?moved=true
	RouteEndpoints      = "GET /internal/v1/endpoints"
	RouteNetworkQuality = "GET /internal/v1/network-quality"
	RouteHealth         = "GET /internal/v1/health"
	RouteLiveness       = "GET /internal/v1/liveness"
)

// LivenessInterval is how often a node writes a line on its liveness
// stream: what the stream carries is only that it is open, and the lines
// keep it from looking idle to anything in between.
const LivenessInterval = time.Second

// route splits a Route* pattern into its method and its path with the
// wildcards replaced, in order, by the path-escaped values.
func route(pattern string, values ...string) (method, path string) {
	method, path, _ = strings.Cut(pattern, " ")
	for _, v := range values {
		open := strings.IndexByte(path, '{')
		end := strings.IndexByte(path, '}')
		if open < 0 || end < open {
			break
		}
		path = path[:open] + url.PathEscape(v) + path[end+1:]
	}
	return method, path
}

// Client calls one media node.
type Client struct {
	base   string
	secret string
	http   *http.Client
}

// NewClient returns a client for the node at base (its internal URL).
func NewClient(httpClient *http.Client, base, secret string) *Client {
	return &Client{base: strings.TrimRight(base, "/"), secret: secret, http: httpClient}
}

// Publish creates (or, with Reconnect, replaces) a publisher endpoint.
func (c *Client) Publish(ctx context.Context, req PublishRequest) (SDPAnswer, error) {
	var out SDPAnswer
	err := c.do(ctx, RoutePublish, nil, nil, req, &out)
	return out, err
}

// Subscribe creates (or, with Reconnect, replaces) a subscriber endpoint.
func (c *Client) Subscribe(ctx context.Context, req SubscribeRequest) (SDPOffer, error) {
	var out SDPOffer
	err := c.do(ctx, RouteSubscribe, nil, nil, req, &out)
	return out, err
}

// Answer completes a subscriber endpoint's negotiation with the client's answer.
func (c *Client) Answer(ctx context.Context, sessionID, endpointID, sdp string) error {
	return c.do(ctx, RouteAnswer, []string{endpointID}, url.Values{"session": {sessionID}}, SDPAnswer{SDPAnswer: sdp}, nil)
}

// AddICECandidate adds a client's ICE candidate to an endpoint.
func (c *Client) AddICECandidate(ctx context.Context, endpointID string, cand ICECandidate) error {
	return c.do(ctx, RouteICE, []string{endpointID}, nil, cand, nil)
}

// Release closes an endpoint; releasing an unknown endpoint succeeds.
func (c *Client) Release(ctx context.Context, sessionID, endpointID string) error {
	return c.do(ctx, RouteRelease, []string{endpointID}, url.Values{"session": {sessionID}}, nil, nil)
}

// ReleaseSession closes every endpoint of a session.
func (c *Client) ReleaseSession(ctx context.Context, sessionID string) error {
	return c.do(ctx, RouteReleaseSession, []string{sessionID}, nil, nil, nil)
}

// ReleaseMovedSession closes every endpoint of a session that moved to
// another media node while its clients still use this one: the node then
// refuses their connectivity checks for a while (a STUN 403), so that they
// see their connections fail at once and re-establish them.
func (c *Client) ReleaseMovedSession(ctx context.Context, sessionID string) error {
	return c.do(ctx, RouteReleaseSession, []string{sessionID}, url.Values{"moved": {"true"}}, nil, nil)
}

// Endpoints lists the node's endpoints.
func (c *Client) Endpoints(ctx context.Context) (EndpointList, error) {
	var out EndpointList
	err := c.do(ctx, RouteEndpoints, nil, nil, nil, &out)
	return out, err
}

// NetworkQuality asks the node to rate its publishing connections' links
// over the interval since its previous answer (to anyone).
func (c *Client) NetworkQuality(ctx context.Context) (NetworkQuality, error) {
	var out NetworkQuality
	err := c.do(ctx, RouteNetworkQuality, nil, nil, nil, &out)
	return out, err
}

// Health asks the node for its health.
func (c *Client) Health(ctx context.Context) (Health, error) {
	var out Health
	err := c.do(ctx, RouteHealth, nil, nil, nil, &out)
	return out, err
}

// ErrLivenessClosed means the node closed its liveness stream, or its
// connection broke: its process has exited, or closed its API (see
// Client.WatchLiveness).
var ErrLivenessClosed = errors.New("media node closed its liveness stream")

// WatchLiveness opens the node's liveness stream (RouteLiveness) and blocks
// while it stays open. opened is called once the node has answered. It
// returns ctx's error when ctx ends; ErrLivenessClosed (wrapping the read
// error) when the stream ended after it opened; otherwise the error that
// kept it from opening (an *Error for an answer other than 200).
//
// A node's process that exits, however it dies, has its connections closed
// by its kernel (a FIN or RST reaches the watcher at once), while a node
// that is frozen or starved keeps its stream open: a stream that ended is
// evidence of an exit that no timeout gives. Call it with an http.Client
// without a Timeout (the stream lasts as long as the node).
func (c *Client) WatchLiveness(ctx context.Context, opened func()) error {
	method, path := route(RouteLiveness)
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.secret)
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("media node %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		e := &Error{Status: resp.StatusCode}
		if json.Unmarshal(raw, e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(raw))
		}
		return e
	}
	opened()
	_, err = io.Copy(io.Discard, resp.Body)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err == nil {
		err = io.EOF
	}
	return fmt.Errorf("%w: %w", ErrLivenessClosed, err)
}

// do calls route (a Route* pattern) with its wildcards filled by values,
// query appended, in sent as JSON and the answer decoded into out.
func (c *Client) do(ctx context.Context, pattern string, values []string, query url.Values, in, out any) error {
	method, path := route(pattern, values...)
	if len(query) > 0 {
		path += "?" + query.Encode()
	}
	var body io.Reader
	if in != nil {
		raw, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.secret)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("media node %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("media node %s %s: read body: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		e := &Error{Status: resp.StatusCode}
		if json.Unmarshal(raw, e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(raw))
		}
		return e
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("media node %s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}
