package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// Version is the OpenVidu release whose protocol Chorus speaks. It must be a
// full semver: openvidu-browser throws on "2.32".
const Version = "2.32.0"

// MediaServer is what joinRoom reports as the media server. "mediasoup" makes
// openvidu-browser let the server offer subscriptions
// (prepareReceiveVideoFrom), the only negotiation path Chorus implements.
const MediaServer = "mediasoup"

// Request is an incoming JSON-RPC 2.0 request. ID is kept raw and echoed as is.
type Request struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params,omitempty"`
}

// Response is an outgoing JSON-RPC 2.0 response.
type Response struct {
	ID      json.RawMessage `json:"id"`
	Result  any             `json:"result,omitempty"`
	Error   *RPCError       `json:"error,omitempty"`
	JSONRPC string          `json:"jsonrpc"`
}

// Notification is an outgoing JSON-RPC 2.0 notification.
type Notification struct {
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
	JSONRPC string          `json:"jsonrpc"`
}

// RPCError is a JSON-RPC error object with OpenVidu's numeric codes.
type RPCError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    string `json:"data,omitempty"`
}

func (e *RPCError) Error() string { return fmt.Sprintf("%d: %s", e.Code, e.Message) }

// JSON-RPC 2.0's own error codes, and OpenVidu's (OpenViduException.Code).
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602

	CodeGeneric                   = 999
	CodeServiceNotEnabled         = 996
	CodeWrongEdition              = 997
	CodeTransport                 = 803
	CodeForcedCodecNotFound       = 800
	CodeMediaSDP                  = 302
	CodeMediaGeneric              = 301
	CodeRoomCannotBeCreated       = 204
	CodeRoomClosed                = 203
	CodeRoomNotFound              = 202
	CodeUserAlreadyStreaming      = 106
	CodeUserNotStreaming          = 105
	CodeUserNotFound              = 102
	CodeUserGeneric               = 10
	CodeUserUnauthorized          = 401
	CodeTokenCannotBeCreated      = 404
	CodeUserMetadataFormatInvalid = 500
	CodeSignalFormatInvalid       = 600
	CodeSignalToInvalid           = 601
	CodeMediaNodeNotFound         = 900
	CodeReconnectionError         = 40007
	CodeReconnectionErrorString   = "reconnection error"
)

// DecodeRequest parses one WebSocket text frame as a JSON-RPC request. Its
// errors are RPCErrors to send back (with a null id when the frame could not
// be parsed far enough to read one).
func DecodeRequest(frame []byte) (*Request, *RPCError) {
	var req Request
	dec := json.NewDecoder(bytes.NewReader(frame))
	if err := dec.Decode(&req); err != nil {
		return nil, &RPCError{Code: CodeParseError, Message: "Parse error: " + err.Error()}
	}
	if dec.More() {
		return &req, &RPCError{Code: CodeParseError, Message: "Parse error: trailing data after the JSON object"}
	}
	if req.JSONRPC != "2.0" {
		return &req, &RPCError{Code: CodeInvalidRequest, Message: `Invalid request: "jsonrpc" must be "2.0"`}
	}
	if req.Method == "" {
		return &req, &RPCError{Code: CodeInvalidRequest, Message: `Invalid request: "method" is missing`}
	}
	if len(req.ID) > 0 {
		switch req.ID[0] {
		case '"', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		case 'n': // null: a notification, which no OpenVidu method is
		default:
			return &req, &RPCError{Code: CodeInvalidRequest, Message: `Invalid request: "id" must be a number or a string`}
		}
	}
	return &req, nil
}

// ErrMissingParam is wrapped by DecodeParams errors for absent mandatory fields.
var ErrMissingParam = errors.New("missing parameter")

// DecodeParams unmarshals request params into v (a pointer to a struct).
// Absent params decode as an empty object.
func DecodeParams(raw json.RawMessage, v any) *RPCError {
	if len(raw) == 0 || string(raw) == "null" {
		raw = json.RawMessage("{}")
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return &RPCError{Code: CodeInvalidParams, Message: "Invalid params: " + err.Error()}
	}
	return nil
}

// MissingParam is the error for an absent mandatory parameter, worded as
// openvidu-server words it.
func MissingParam(method, key string) *RPCError {
	return &RPCError{Code: CodeInvalidParams, Message: fmt.Sprintf(
		"Request element '%s' is missing in RPC method '%s'. Check that 'openvidu-server' and 'openvidu-browser' versions are compatible with each other",
		key, method)}
}

// JoinRoomParams are joinRoom's params.
type JoinRoomParams struct {
	Token      *string `json:"token"`
	Session    *string `json:"session"`
	Platform   *string `json:"platform"`
	SDKVersion string  `json:"sdkVersion"`
	Metadata   *string `json:"metadata"`
	Secret     *string `json:"secret"`
	Recorder   bool    `json:"recorder"`
	STT        bool    `json:"stt"`
	// ChorusFeatures lists the Chorus extensions the client understands
	// (Feature*); openvidu-browser sends none and never gets one.
	ChorusFeatures []string `json:"chorusFeatures,omitempty"`
}

// JoinRoom is a validated joinRoom request: every mandatory parameter
// present, the session id of OpenVidu's shape.
type JoinRoom struct {
	Token, Session, Platform, Metadata string
	// Secret is the OpenVidu secret, when the client joins without a token
	// (openvidu-browser sends "" otherwise).
	Secret     string
	SDKVersion string
	Recorder   bool
	// Features are the params' ChorusFeatures that this server knows.
	Features []string
}

// DecodeJoinRoom decodes and validates joinRoom's params, as
// openvidu-browser sends them (Session.initializeParams: token, session,
// platform, sdkVersion, metadata, secret, recorder, stt). Errors: invalid
// params (-32602) for undecodable JSON or a missing token, session,
// platform or metadata (worded as openvidu-server); ROOM_NOT_FOUND (404)
// for a session id no session can have (ValidID).
func DecodeJoinRoom(raw json.RawMessage) (JoinRoom, *RPCError) {
	var p JoinRoomParams
	if err := DecodeParams(raw, &p); err != nil {
		return JoinRoom{}, err
	}
	for _, f := range []struct {
		name string
		v    *string
	}{{"token", p.Token}, {"session", p.Session}, {"platform", p.Platform}, {"metadata", p.Metadata}} {
		if f.v == nil {
			return JoinRoom{}, MissingParam("joinRoom", f.name)
		}
	}
	if !ValidID(*p.Session) {
		return JoinRoom{}, &RPCError{Code: CodeRoomNotFound, Message: "Unable to join session. Session " + *p.Session + " cannot be found"}
	}
	j := JoinRoom{Token: *p.Token, Session: *p.Session, Platform: *p.Platform, Metadata: *p.Metadata, SDKVersion: p.SDKVersion, Recorder: p.Recorder}
	for _, f := range p.ChorusFeatures {
		if f == FeatureReconnectPublisher && !slices.Contains(j.Features, f) {
			j.Features = append(j.Features, f)
		}
	}
	if p.Secret != nil {
		j.Secret = *p.Secret
	}
	return j, nil
}

// PublishVideoParams are publishVideo's params.
type PublishVideoParams struct {
	SDPOffer        *string         `json:"sdpOffer"`
	DoLoopback      bool            `json:"doLoopback"`
	HasAudio        *bool           `json:"hasAudio"`
	HasVideo        *bool           `json:"hasVideo"`
	AudioActive     *bool           `json:"audioActive"`
	VideoActive     *bool           `json:"videoActive"`
	TypeOfVideo     string          `json:"typeOfVideo"`
	FrameRate       *float64        `json:"frameRate"`
	VideoDimensions string          `json:"videoDimensions"`
	Filter          json.RawMessage `json:"filter"`
}

// ReceiveVideoParams are the params of prepareReceiveVideoFrom and
// receiveVideoFrom. Sender is a stream id (a connection id is accepted too).
type ReceiveVideoParams struct {
	Sender    *string `json:"sender"`
	Reconnect bool    `json:"reconnect"`
	SDPOffer  *string `json:"sdpOffer"`
	SDPAnswer *string `json:"sdpAnswer"`
}

// ReconnectStreamParams are reconnectStream's params: SDPString is the
// publisher's new offer or a subscriber's answer to a server offer.
type ReconnectStreamParams struct {
	Stream            *string `json:"stream"`
	SDPString         *string `json:"sdpString"`
	SDPOffer          *string `json:"sdpOffer"`
	ForciblyReconnect bool    `json:"forciblyReconnect"`
}

// OnIceCandidateParams are onIceCandidate's params. EndpointName is the
// connection id owning the media: the caller's own for its publisher, the
// remote publisher's for a subscription.
type OnIceCandidateParams struct {
	EndpointName  *string `json:"endpointName"`
	Candidate     *string `json:"candidate"`
	SDPMid        *string `json:"sdpMid"`
	SDPMLineIndex *uint16 `json:"sdpMLineIndex"`
}

// StreamPropertyChangedParams are streamPropertyChanged's params; NewValue is
// any JSON value (a bool, a JSON-encoded string, an object).
type StreamPropertyChangedParams struct {
	StreamID *string         `json:"streamId"`
	Property *string         `json:"property"`
	NewValue json.RawMessage `json:"newValue"`
	Reason   string          `json:"reason"`
}

// SignalMessage is the JSON text inside sendMessage's "message" param.
type SignalMessage struct {
	To   []*string `json:"to"`
	Data *string   `json:"data"`
	Type *string   `json:"type"`
}

// RemoteConnection is an existing participant as joinRoom and
// participantJoined/participantPublished describe it.
type RemoteConnection struct {
	ID        string   `json:"id"`
	CreatedAt int64    `json:"createdAt,omitempty"`
	Metadata  *string  `json:"metadata,omitempty"`
	Streams   []Stream `json:"streams,omitempty"`
}

// Stream describes a published stream to other participants. VideoDimensions
// is a JSON-encoded string, as openvidu-browser JSON.parses it.
type Stream struct {
	ID              string          `json:"id"`
	CreatedAt       int64           `json:"createdAt"`
	HasAudio        bool            `json:"hasAudio"`
	HasVideo        bool            `json:"hasVideo"`
	AudioActive     bool            `json:"audioActive"`
	VideoActive     bool            `json:"videoActive"`
	TypeOfVideo     string          `json:"typeOfVideo,omitempty"`
	FrameRate       int             `json:"frameRate"`
	VideoDimensions string          `json:"videoDimensions,omitempty"`
	Filter          json.RawMessage `json:"filter"`
}

// JoinRoomResult is joinRoom's result.
type JoinRoomResult struct {
	ID               string             `json:"id"`
	FinalUserID      string             `json:"finalUserId"`
	CreatedAt        int64              `json:"createdAt"`
	Metadata         string             `json:"metadata"`
	Value            []RemoteConnection `json:"value"`
	Session          string             `json:"session"`
	SessionID        string             `json:"sessionId"` // the JSON-RPC session id
	Version          string             `json:"version"`
	MediaServer      string             `json:"mediaServer"`
	VideoSimulcast   bool               `json:"videoSimulcast"`
	Life             int                `json:"life"`
	Record           bool               `json:"record"`
	Role             string             `json:"role"`
	CustomIceServers json.RawMessage    `json:"customIceServers,omitempty"`
}

// Notification methods sent to participants.
const (
	NotifyParticipantJoined        = "participantJoined"
	NotifyParticipantLeft          = "participantLeft"
	NotifyParticipantEvicted       = "participantEvicted"
	NotifyParticipantPublished     = "participantPublished"
	NotifyParticipantUnpublished   = "participantUnpublished"
	NotifyIceCandidate             = "iceCandidate"
	NotifySendMessage              = "sendMessage"
	NotifyStreamPropertyChanged    = "streamPropertyChanged"
	NotifyConnectionPropertyChange = "connectionPropertyChanged"
	NotifyForciblyReconnect        = "forciblyReconnectSubscriber"
	// NotifyRecordingStarted and NotifyRecordingStopped carry
	// RecordingNotification; openvidu-browser turns them into the session's
	// recordingStarted and recordingStopped events.
	NotifyRecordingStarted = "recordingStarted"
	NotifyRecordingStopped = "recordingStopped"
	// NotifyNetworkQualityLevelChanged carries NetworkQualityLevelChanged
	// (OpenVidu Pro's network quality API); openvidu-browser turns it into
	// the session's networkQualityLevelChanged event.
	NotifyNetworkQualityLevelChanged = "networkQualityLevelChanged"
)

// NetworkQualityLevelChanged tells every participant of a session that a
// publishing connection's network quality level (0 to 5) changed.
// OldValue is absent for a connection's first level (undefined in
// openvidu-browser's event).
type NetworkQualityLevelChanged struct {
	ConnectionID ConnectionID `json:"connectionId"`
	NewValue     int          `json:"newValue"`
	OldValue     *int         `json:"oldValue,omitempty"`
}

// FeatureReconnectPublisher: the client re-publishes a stream when told
// (NotifyReconnectPublisher). The Go SDK announces it.
const FeatureReconnectPublisher = "reconnectPublisher"

// NotifyReconnectPublisher tells a participant that announced
// FeatureReconnectPublisher that the media node carrying its stream crashed
// and the session now lives on another node: it re-publishes at once
// (reconnectStream with a new offer, as after its ICE failed) instead of
// waiting for its ICE to notice the silence. There is no such message in
// OpenVidu: the server cannot make openvidu-browser re-publish (see
// InternalReconnectSocket). Params: ReconnectPublisher.
const NotifyReconnectPublisher = "chorus.reconnectPublisher"

// ReconnectPublisher is NotifyReconnectPublisher's params.
type ReconnectPublisher struct {
	StreamID string `json:"streamId"`
	Reason   string `json:"reason"` // nodeCrashed
}

// InternalReconnectSocket is an outbox entry that is never sent: the master
// holding the participant's WebSocket closes it, and the client reconnects
// and resumes (after a session migration, this makes openvidu-browser
// re-establish its broken streams at once).
const InternalReconnectSocket = "chorus.reconnectSocket"

// InternalResponse is an outbox entry holding a JSON-RPC response frame
// (its params) for a request whose socket closed before the answer was
// ready: the participant's next socket writes it, and openvidu-browser,
// which keeps its pending requests across reconnections, takes it.
const InternalResponse = "chorus.response"

// ReconnectSocket is InternalReconnectSocket's params.
type ReconnectSocket struct {
	// IfMigrating: only if the participant's stream still waits to be
	// re-published on another media node.
	IfMigrating bool `json:"ifMigrating,omitempty"`
}

// ConnectionReason is a notification's {connectionId, reason} params
// (participantLeft, participantEvicted, participantUnpublished).
type ConnectionReason struct {
	ConnectionID string `json:"connectionId"`
	Reason       string `json:"reason"`
}

// Reasons (OpenVidu's EndReason names).
const (
	ReasonUnsubscribe              = "unsubscribe"
	ReasonUnpublish                = "unpublish"
	ReasonDisconnect               = "disconnect"
	ReasonForceUnpublishByUser     = "forceUnpublishByUser"
	ReasonForceUnpublishByServer   = "forceUnpublishByServer"
	ReasonForceDisconnectByUser    = "forceDisconnectByUser"
	ReasonForceDisconnectByServer  = "forceDisconnectByServer"
	ReasonLastParticipantLeft      = "lastParticipantLeft"
	ReasonSessionClosedByServer    = "sessionClosedByServer"
	ReasonNetworkDisconnect        = "networkDisconnect"
	ReasonNodeCrashed              = "nodeCrashed"
	ReasonOpenviduServerStopped    = "openviduServerStopped"
	ReasonRecordingStoppedByServer = "recordingStoppedByServer"
	ReasonAutomaticStop            = "automaticStop"
)

// SignalNotification is sendMessage's notification params.
type SignalNotification struct {
	Data *string `json:"data,omitempty"`
	Type *string `json:"type,omitempty"`
	From string  `json:"from,omitempty"`
}

// StreamPropertyChangedNotification is streamPropertyChanged's notification
// params; NewValue is a string holding the JSON text of the value.
type StreamPropertyChangedNotification struct {
	ConnectionID string `json:"connectionId"`
	StreamID     string `json:"streamId"`
	Property     string `json:"property"`
	NewValue     string `json:"newValue"`
	Reason       string `json:"reason"`
}

// ConnectionPropertyChangedNotification tells a participant its role or
// record flag changed; NewValue is a string.
type ConnectionPropertyChangedNotification struct {
	Property string `json:"property"`
	NewValue string `json:"newValue"`
}

// ForciblyReconnectNotification asks a subscriber to re-negotiate with a new
// server offer.
type ForciblyReconnectNotification struct {
	ConnectionID string `json:"connectionId"`
	StreamID     string `json:"streamId"`
	SDPOffer     string `json:"sdpOffer"`
}

// RecordingNotification is the params of recordingStarted and
// recordingStopped (openvidu-server's SessionEventsHandler; reason only when
// stopped).
type RecordingNotification struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Reason string `json:"reason,omitempty"`
}
