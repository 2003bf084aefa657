package openvidu

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/chorus-rtc/chorus/shared/protocol"
)

// MediaNode is OpenVidu Pro's Media Node object (GET /openvidu/api/media-nodes).
type MediaNode struct {
	ID                string             `json:"id"`
	EnvironmentID     *string            `json:"environmentId"`
	IP                *string            `json:"ip"`
	URI               *string            `json:"uri"`
	Status            string             `json:"status"`
	LaunchingTime     int64              `json:"launchingTime"`
	Connected         bool               `json:"connected"`
	ConnectionTime    *int64             `json:"connectionTime"`
	DisconnectionTime *int64             `json:"disconnectionTime,omitempty"`
	Load              float64            `json:"load"`
	Sessions          []protocol.Session `json:"sessions,omitempty"`
	RecordingIDs      []string           `json:"recordingIds,omitempty"`
}

// Media node statuses.
const (
	NodeLaunching   = protocol.NodeLaunching
	NodeCanceled    = protocol.NodeCanceled
	NodeFailed      = protocol.NodeFailed
	NodeRunning     = protocol.NodeRunning
	NodeWaitingIdle = protocol.NodeWaitingIdle
	NodeTerminating = protocol.NodeTerminating
	NodeTerminated  = protocol.NodeTerminated
)

// Deletion strategies of DropMediaNode (OpenVidu's, and Chorus's migrate).
const (
	DropNow            = "now"
	DropIfNoSessions   = "if-no-sessions"
	DropWhenNoSessions = "when-no-sessions"
	DropMigrate        = "migrate"
)

func mediaNodePath(id string) string { return "/openvidu/api/media-nodes/" + url.PathEscape(id) }

// MediaNodes lists the cluster's media nodes; withSessions adds the sessions
// each hosts.
func (c *Client) MediaNodes(ctx context.Context, withSessions bool) ([]MediaNode, error) {
	var out struct {
		Content []MediaNode `json:"content"`
	}
	path := "/openvidu/api/media-nodes?sessions=" + strconv.FormatBool(withSessions)
	if err := c.do(ctx, http.MethodGet, path, nil, &out, false); err != nil {
		return nil, err
	}
	return out.Content, nil
}

// MediaNode fetches one media node (an *Error with status 404 if unknown).
func (c *Client) MediaNode(ctx context.Context, id string, withSessions bool) (*MediaNode, error) {
	var n MediaNode
	if err := c.do(ctx, http.MethodGet, mediaNodePath(id)+"?sessions="+strconv.FormatBool(withSessions), nil, &n, false); err != nil {
		return nil, err
	}
	return &n, nil
}

// LaunchOptions are POST /media-nodes's: with URI a running node is added
// (on premises), else the cluster's provider launches one. Wait returns once
// the node is running.
type LaunchOptions struct {
	Wait          bool
	URI           string
	EnvironmentID string
}

// LaunchMediaNode adds a media node. The request carries an Idempotency-Key,
// so a retry after a master failed never launches a second node.
func (c *Client) LaunchMediaNode(ctx context.Context, o LaunchOptions) (*MediaNode, error) {
	body := map[string]string{}
	if o.URI != "" {
		body["uri"] = o.URI
	}
	if o.EnvironmentID != "" {
		body["environmentId"] = o.EnvironmentID
	}
	var n MediaNode
	if err := c.do(ctx, http.MethodPost, "/openvidu/api/media-nodes?wait="+strconv.FormatBool(o.Wait), body, &n, true); err != nil {
		return nil, err
	}
	return &n, nil
}

// DropOptions are DELETE /media-nodes/{id}'s.
type DropOptions struct {
	// Strategy is one of the Drop* constants (default if-no-sessions).
	Strategy string
	// Wait returns once the node is terminated.
	Wait bool
}

// DropMediaNode removes a media node. It returns the node as the server left
// it (terminating, or waiting-idle-to-terminate while its sessions end or
// move), or nil once it is terminated (with Wait). A retry that finds the
// node gone (an earlier attempt dropped it) succeeds.
func (c *Client) DropMediaNode(ctx context.Context, id string, o DropOptions) (*MediaNode, error) {
	q := url.Values{}
	q.Set("wait", strconv.FormatBool(o.Wait))
	if o.Strategy != "" {
		q.Set("deletion-strategy", o.Strategy)
	}
	var n MediaNode
	attempts, status, err := c.callCounted(ctx, http.MethodDelete, mediaNodePath(id)+"?"+q.Encode(), nil, &n)
	switch {
	case attempts > 1 && StatusOf(err) == http.StatusNotFound:
		return nil, nil
	case err != nil:
		return nil, err
	case status == http.StatusNoContent:
		return nil, nil
	}
	return &n, nil
}

// SetMediaNodeStatus changes a node's status (PATCH): canceled, launching,
// running, waiting-idle-to-terminate or terminating, as OpenVidu allows. It
// returns the node, or nil when it already had that status.
func (c *Client) SetMediaNodeStatus(ctx context.Context, id, status string) (*MediaNode, error) {
	var n MediaNode
	code, err := c.call(ctx, http.MethodPatch, mediaNodePath(id), map[string]string{"status": status}, &n, false)
	if err != nil || code == http.StatusNoContent {
		return nil, err
	}
	return &n, nil
}

// DiscoverMediaNodes adds the media nodes that report to the cluster
// without being part of it yet (PUT, OpenVidu's autodiscovery) and returns
// them.
func (c *Client) DiscoverMediaNodes(ctx context.Context) ([]MediaNode, error) {
	var out struct {
		Content []MediaNode `json:"content"`
	}
	if err := c.do(ctx, http.MethodPut, "/openvidu/api/media-nodes", nil, &out, false); err != nil {
		return nil, err
	}
	return out.Content, nil
}
