package store

import (
	"encoding/json"

	"github.com/chorus-rtc/chorus/shared/protocol"
)

// Session is the stored state of one OpenVidu session. Every field is owned by
// the cluster, not by a master: any master loads it, changes it in a
// transaction and writes it back.
type Session struct {
	ID        protocol.SessionID `json:"id"`
	CreatedAt int64              `json:"createdAt"` // Unix ms
	// Properties are the session's POST /sessions properties, normalised.
	Properties SessionProperties `json:"properties"`
	// MediaNodeID is the media node the session is pinned to: chosen when the
	// first participant joins, or given by mediaNode.id at creation.
	MediaNodeID protocol.NodeID `json:"mediaNodeId,omitempty"`
	// ActivatedAt is when a participant first joined (Unix ms); 0 while
	// nobody has. Garbage collection closes sessions nobody joined.
	ActivatedAt int64 `json:"activatedAt,omitempty"`
	// Life counts how many times the session lost its state (OpenVidu's
	// "life", compared by openvidu-browser after a failed reconnection).
	Life int `json:"life"`
	// Idempotency maps the Idempotency-Key of a POST .../connection to the
	// connection it created, so a retried request returns it instead of
	// creating another. Entries expire (IdempotencyTTL).
	Idempotency map[string]IdempotentCall `json:"idempotency,omitempty"`
	// Recording is the id of the recording in progress (starting or
	// started), "" when none: one at a time, as in OpenVidu.
	Recording string `json:"recording,omitempty"`
}

// IdempotentCall is what one idempotency key produced.
type IdempotentCall struct {
	ConnectionID protocol.ConnectionID `json:"connectionId"`
	At           int64                 `json:"at"` // Unix ms
}

// SessionProperties mirror OpenVidu's SessionProperties.
type SessionProperties struct {
	MediaMode                  string          `json:"mediaMode"`
	RecordingMode              string          `json:"recordingMode"`
	CustomSessionID            string          `json:"customSessionId"`
	ForcedVideoCodec           string          `json:"forcedVideoCodec"`
	ForcedVideoCodecResolved   string          `json:"forcedVideoCodecResolved"`
	AllowTranscoding           bool            `json:"allowTranscoding"`
	DefaultRecordingProperties json.RawMessage `json:"defaultRecordingProperties,omitempty"`
	MediaNodeRequested         string          `json:"mediaNodeRequested,omitempty"`
}

// Connection states, as in OpenVidu's Connection.status.
const (
	StatusPending = "pending"
	StatusActive  = "active"
)

// Endpoint states: an endpoint is recorded as Creating before the media node
// is asked for it, so a master that dies mid-call leaves a record that whoever
// cleans up the connection uses to release it (releases are idempotent).
//
// Every state but Creating is live: the stream or subscription exists for the
// session (it was announced, and its webrtcConnectionCreated emitted), even
// while its peer connection is being replaced.
const (
	EndpointCreating = "creating"
	EndpointReady    = "ready"
	// EndpointMigrating: the endpoint went with a media node that crashed or
	// is draining; the session moved to Node, where the publisher's
	// reconnectStream (for a subscription: its publisher's return)
	// recreates it.
	EndpointMigrating = "migrating"
	// EndpointReconnecting: a live subscription whose client asked for a new
	// peer connection (prepareReceiveVideoFrom with reconnect).
	EndpointReconnecting = "reconnecting"
	// EndpointForced: the server offered a subscriber a new peer connection
	// (forciblyReconnectSubscriber) and waits for its answer.
	EndpointForced = "forced"
)

// Live reports whether the stream exists for the session.
func (p *Publisher) Live() bool { return p.State != EndpointCreating }

// Live reports whether the subscription exists for the session.
func (s *Subscription) Live() bool { return s.State != EndpointCreating }

// Connection is the stored state of one OpenVidu Connection: a token handed
// out by POST /connection (pending) and, once a client joins with it, the
// participant (active).
type Connection struct {
	ID        protocol.ConnectionID `json:"id"`
	SessionID protocol.SessionID    `json:"sessionId"`
	Type      string                `json:"type"` // WEBRTC
	Status    string                `json:"status"`
	CreatedAt int64                 `json:"createdAt"`
	ActiveAt  int64                 `json:"activeAt,omitempty"`

	TokenID string `json:"tokenId"` // tok_...
	Token   string `json:"token"`   // the full ws(s)://...?sessionId=...&token=tok_... URL

	Role   string `json:"role"`
	Record bool   `json:"record"`
	// Recorder marks the hidden connection of a recorder (OpenVidu's
	// RECORDER participant): it subscribes to every stream but is not
	// listed, announced, counted, or reported in events.
	Recorder         bool            `json:"recorder,omitempty"`
	ServerData       string          `json:"serverData"`
	KurentoOptions   json.RawMessage `json:"kurentoOptions,omitempty"`
	CustomIceServers json.RawMessage `json:"customIceServers,omitempty"`

	// Set when the participant joins.
	ClientData string `json:"clientData,omitempty"`
	Platform   string `json:"platform,omitempty"`
	IP         string `json:"ip,omitempty"`
	// Features are the Chorus extensions the client announced
	// (protocol.Feature*).
	Features []string `json:"features,omitempty"`
	Location string   `json:"location,omitempty"`
	// NetworkQuality is the connection's last network quality level (0
	// to 5) told to the session; nil before the first.
	NetworkQuality *int `json:"networkQuality,omitempty"`
	// RPCSessionID is the JSON-RPC session id returned by joinRoom: the
	// credential for "connect" after a WebSocket reconnection.
	RPCSessionID string `json:"rpcSessionId,omitempty"`

	// Master is the id of the master holding the participant's WebSocket; ""
	// while the socket is gone (the participant may still reconnect).
	Master protocol.MasterID `json:"master,omitempty"`
	// DisconnectedAt is when the WebSocket was lost (Unix ms), 0 while connected.
	DisconnectedAt int64 `json:"disconnectedAt,omitempty"`

	Publisher     *Publisher                          `json:"publisher,omitempty"`
	Subscriptions map[protocol.StreamID]*Subscription `json:"subscriptions,omitempty"` // by publisher stream id
}

// Publisher is the stream a connection publishes (OpenVidu 2 allows one).
type Publisher struct {
	StreamID     protocol.StreamID `json:"streamId"`
	CreatedAt    int64             `json:"createdAt"`
	MediaOptions MediaOptions      `json:"mediaOptions"`
	Node         protocol.NodeID   `json:"node"` // media node holding the endpoint
	State        string            `json:"state"`
}

// MediaOptions are the published stream's properties, as openvidu-browser
// sends them in publishVideo and OpenVidu reports them in Connection.publishers.
type MediaOptions struct {
	HasAudio        bool            `json:"hasAudio"`
	AudioActive     bool            `json:"audioActive"`
	HasVideo        bool            `json:"hasVideo"`
	VideoActive     bool            `json:"videoActive"`
	TypeOfVideo     string          `json:"typeOfVideo,omitempty"`
	FrameRate       int             `json:"frameRate"`
	VideoDimensions string          `json:"videoDimensions,omitempty"` // JSON text, e.g. {"width":640,"height":480}
	Filter          json.RawMessage `json:"filter,omitempty"`
}

// Subscription is one stream a connection receives.
type Subscription struct {
	StreamID  protocol.StreamID `json:"streamId"`
	CreatedAt int64             `json:"createdAt"`
	Node      protocol.NodeID   `json:"node"`
	State     string            `json:"state"`
}

// SubscriberEndpointID names the media node endpoint through which connection
// subscriberID receives streamID.
func SubscriberEndpointID(subscriberID protocol.ConnectionID, streamID protocol.StreamID) string {
	return string(subscriberID) + "_" + string(streamID)
}

// Active reports whether a participant has joined with this connection.
// SameClient reports whether c and o may be connections of one client (one
// browser page holding a camera and a screen connection, as openvidu-call
// does): the same IP and platform, or either unknown.
func (c *Connection) SameClient(o *Connection) bool {
	if c.IP == "" || o.IP == "" || c.Platform == "" || o.Platform == "" {
		return true
	}
	return c.IP == o.IP && c.Platform == o.Platform
}

func (c *Connection) Active() bool { return c.Status == StatusActive }
