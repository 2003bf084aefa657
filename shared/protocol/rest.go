package protocol

import "encoding/json"

// Session is OpenVidu's Session object (GET /openvidu/api/sessions/{id}),
// with openvidu-server 2.x's keys and order. SessionID duplicates ID:
// openvidu-node-client reads it.
type Session struct {
	ID                         string          `json:"id"`
	Object                     string          `json:"object"` // "session"
	SessionID                  string          `json:"sessionId"`
	CreatedAt                  int64           `json:"createdAt"` // Unix ms
	Recording                  bool            `json:"recording"`
	Broadcasting               bool            `json:"broadcasting"`
	MediaMode                  string          `json:"mediaMode"`
	RecordingMode              string          `json:"recordingMode"`
	DefaultRecordingProperties json.RawMessage `json:"defaultRecordingProperties"`
	CustomSessionID            string          `json:"customSessionId"`
	MediaNode                  *MediaNodeRef   `json:"mediaNode,omitempty"`
	ForcedVideoCodec           string          `json:"forcedVideoCodec"`
	AllowTranscoding           bool            `json:"allowTranscoding"`
	Connections                Connections     `json:"connections"`
	// MediaNodeID is the media node hosting the session (OpenVidu Pro), once
	// a participant joined.
	MediaNodeID string `json:"mediaNodeId,omitempty"`
}

// MediaNodeRef selects a media node in POST /sessions: {"id": "media_..."}.
type MediaNodeRef struct {
	ID string `json:"id"`
}

// Connections is the paged list OpenVidu wraps connections in.
type Connections struct {
	NumberOfElements int          `json:"numberOfElements"`
	Content          []Connection `json:"content"`
}

// SessionList is the body of GET /openvidu/api/sessions.
type SessionList struct {
	NumberOfElements int       `json:"numberOfElements"`
	Content          []Session `json:"content"`
}

// Connection is OpenVidu's Connection object. A pending connection (a token
// nobody used yet) has null activeAt, location, ip, platform, clientData,
// publishers and subscribers, as openvidu-server writes them.
type Connection struct {
	ID                      string          `json:"id"`
	Object                  string          `json:"object"` // "connection"
	Status                  string          `json:"status"` // "pending" or "active"
	ConnectionID            string          `json:"connectionId"`
	SessionID               string          `json:"sessionId"`
	CreatedAt               int64           `json:"createdAt"`
	Type                    string          `json:"type"` // "WEBRTC"
	Record                  bool            `json:"record"`
	Role                    string          `json:"role"`
	KurentoOptions          json.RawMessage `json:"kurentoOptions"`   // null or object
	CustomIceServers        json.RawMessage `json:"customIceServers"` // array, [] by default
	RtspURI                 *string         `json:"rtspUri"`
	AdaptativeBitrate       *bool           `json:"adaptativeBitrate"`
	OnlyPlayWithSubscribers *bool           `json:"onlyPlayWithSubscribers"`
	NetworkCache            *int            `json:"networkCache"`
	ServerData              string          `json:"serverData"`
	Token                   string          `json:"token"`
	ActiveAt                *int64          `json:"activeAt"`
	Location                *string         `json:"location"`
	IP                      *string         `json:"ip"`
	Platform                *string         `json:"platform"`
	ClientData              *string         `json:"clientData"`
	Publishers              []Publisher     `json:"publishers"`  // null while pending
	Subscribers             []Subscriber    `json:"subscribers"` // null while pending
}

// Publisher is an entry of Connection.publishers.
type Publisher struct {
	CreatedAt    int64        `json:"createdAt"`
	StreamID     string       `json:"streamId"`
	MediaOptions MediaOptions `json:"mediaOptions"`
}

// MediaOptions describe a published stream. audioActive is present only with
// audio; videoActive, typeOfVideo, frameRate and videoDimensions only with video.
type MediaOptions struct {
	HasAudio        bool            `json:"hasAudio"`
	AudioActive     *bool           `json:"audioActive,omitempty"`
	HasVideo        bool            `json:"hasVideo"`
	VideoActive     *bool           `json:"videoActive,omitempty"`
	TypeOfVideo     *string         `json:"typeOfVideo,omitempty"`
	FrameRate       *int            `json:"frameRate,omitempty"`
	VideoDimensions *string         `json:"videoDimensions,omitempty"`
	Filter          json.RawMessage `json:"filter"`
}

// Subscriber is an entry of Connection.subscribers.
type Subscriber struct {
	CreatedAt int64  `json:"createdAt"`
	StreamID  string `json:"streamId"`
}

// Token is the body of the deprecated POST /openvidu/api/tokens.
type Token struct {
	ID             string          `json:"id"`
	Token          string          `json:"token"`
	CreatedAt      int64           `json:"createdAt"`
	ConnectionID   string          `json:"connectionId"`
	Session        string          `json:"session"`
	Data           string          `json:"data"`
	Role           string          `json:"role"`
	KurentoOptions json.RawMessage `json:"kurentoOptions,omitempty"`
}

// Error is the JSON body of OpenVidu's error responses
// (SessionRestController.generateErrorResponse).
type Error struct {
	Timestamp int64  `json:"timestamp"`
	Status    int    `json:"status"`
	Error     string `json:"error"`
	Message   string `json:"message"`
	Path      string `json:"path"`
}

// Roles of a connection.
const (
	RoleSubscriber = "SUBSCRIBER"
	RolePublisher  = "PUBLISHER"
	RoleModerator  = "MODERATOR"
)

// CanPublish reports whether a role may publish (PUBLISHER or MODERATOR).
func CanPublish(role string) bool { return role == RolePublisher || role == RoleModerator }

// Health is the body of GET /openvidu/api/health: OpenVidu Pro's fields
// (status UP, UNSTABLE or DOWN, and the media nodes that stopped answering)
// and OpenVidu Enterprise HA's per-master view.
type Health struct {
	Status                 string                `json:"status"`
	DisconnectedMediaNodes []string              `json:"disconnectedMediaNodes"`
	ClusterStatus          string                `json:"clusterStatus"`
	Nodes                  map[string]NodeHealth `json:"nodes"`
}

// NodeHealth is one master's entry in Health.Nodes.
type NodeHealth struct {
	Status                 string   `json:"status"`
	ID                     string   `json:"id"`
	URI                    string   `json:"uri"`
	DisconnectedMediaNodes []string `json:"disconnectedMediaNodes"`
}

// Health statuses.
const (
	HealthUp       = "UP"
	HealthUnstable = "UNSTABLE"
	HealthDown     = "DOWN"
)

// Recording statuses (OpenVidu's Recording.Status).
const (
	RecordingStarting = "starting"
	RecordingStarted  = "started"
	RecordingStopped  = "stopped"
	RecordingReady    = "ready"
	RecordingFailed   = "failed"
)

// Recording output modes and layouts (OpenVidu's Recording.OutputMode,
// RecordingLayout).
const (
	OutputComposed           = "COMPOSED"
	OutputComposedQuickStart = "COMPOSED_QUICK_START"
	OutputIndividual         = "INDIVIDUAL"
	LayoutBestFit            = "BEST_FIT"
)

// Recording is OpenVidu's Recording object (REST-API.md "The Recording
// object"): resolution, frameRate and recordingLayout only for COMPOSED
// with video, url null until the recording is ready.
type Recording struct {
	ID              string  `json:"id"`
	Object          string  `json:"object"` // "recording"
	Name            string  `json:"name"`
	OutputMode      string  `json:"outputMode"`
	HasAudio        bool    `json:"hasAudio"`
	HasVideo        bool    `json:"hasVideo"`
	RecordingLayout string  `json:"recordingLayout,omitempty"`
	Resolution      string  `json:"resolution,omitempty"`
	FrameRate       int     `json:"frameRate,omitempty"`
	SessionID       string  `json:"sessionId"`
	CreatedAt       int64   `json:"createdAt"`
	Size            int64   `json:"size"`
	Duration        float64 `json:"duration"`
	URL             *string `json:"url"`
	Status          string  `json:"status"`
	// Gaps (a Chorus extension, absent when none) are the stretches where
	// a recorded stream's media is missing from a ready recording: a media
	// node's or a recorder's crash (ARCHITECTURE.md "Recording").
	Gaps []RecordingGap `json:"gaps,omitempty"`
}

// RecordingGap is a stretch of a stream missing from a recording, in
// milliseconds from the recording's start (as OpenVidu's INDIVIDUAL sync
// file's startTimeOffset and endTimeOffset).
type RecordingGap struct {
	StreamID        string `json:"streamId"`
	StartTimeOffset int64  `json:"startTimeOffset"`
	EndTimeOffset   int64  `json:"endTimeOffset"`
}

// RecordingList is GET /openvidu/api/recordings.
type RecordingList struct {
	Count int         `json:"count"`
	Items []Recording `json:"items"`
}
