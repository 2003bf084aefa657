package session

import (
	"errors"
	"fmt"

	"github.com/chorus-rtc/chorus/shared/mediaapi"
	"github.com/chorus-rtc/chorus/shared/store"
)

// Kind is what went wrong, in the session domain's terms. The transports map
// it to OpenVidu's answers: restapi to the REST status (and whether the body
// is OpenVidu's error JSON), signaling to the JSON-RPC error code, each in
// one table.
type Kind uint8

// The kinds of failure. Each names the openvidu-server case it stands for
// (openvidu-server's OpenViduException codes and the REST API's documented
// statuses, openvidu-docs more/reference-docs REST API).
const (
	// Internal is a failure nobody planned for (a bug, a broken invariant).
	Internal Kind = iota
	// Unavailable: the cluster state (Redis) cannot be reached; retry.
	Unavailable
	// MediaNodeFailed: a media node answered a request with an error.
	MediaNodeFailed
	// NoMediaNode: the session's media node is gone or unknown.
	NoMediaNode
	// NoCapacity: no media node can take a new session now.
	NoCapacity
	// NodeRefusesSessions: the media node a REST request names does not
	// accept new sessions.
	NodeRefusesSessions
	// SessionNotFound: no session with that id.
	SessionNotFound
	// SessionExists: a session with that customSessionId exists.
	SessionExists
	// SessionEmpty: the session has no participant to signal.
	SessionEmpty
	// SessionInactive: the session has no participant, so no stream.
	SessionInactive
	// ConnectionNotFound: no active participant with that connection id.
	ConnectionNotFound
	// StreamNotFound: no such stream, or the participant is not publishing.
	StreamNotFound
	// AlreadyPublishing: the participant publishes already.
	AlreadyPublishing
	// Unauthorized: the token or the participant's role does not allow it.
	Unauthorized
	// BadSDP: the client's SDP cannot be used.
	BadSDP
	// OfferFailed: the media node could not build the subscriber's offer.
	OfferFailed
	// CodecNotFound: the session's forced codec is not in the offer.
	CodecNotFound
	// Superseded: a newer negotiation replaced the one this request was
	// part of (an answer to a replaced offer, a subscription the server is
	// moving and offers again).
	Superseded
	// StreamMoving: the stream is being moved to another media node; the
	// server offers the subscription again once it is there.
	StreamMoving
	// NotMovedInTime: a request held for a moving stream timed out.
	NotMovedInTime
	// InvalidRecipients: a signal names a connection the session lacks.
	InvalidRecipients
	// ReconnectionFailed: a socket's reconnection cannot take over a
	// participant (openvidu-browser then asks sessionStatus).
	ReconnectionFailed
	// SignalTooLarge: a signal's data exceeds Limits.SignalDataBytes
	// (openvidu-server's invalid signal: SIGNAL_FORMAT_INVALID, REST 400).
	SignalTooLarge
	// MetadataTooLarge: a connection's metadata exceeds
	// Limits.MetadataBytes (openvidu-server's invalid client metadata:
	// USER_METADATA_FORMAT_INVALID, REST 400).
	MetadataTooLarge
	// SessionFull: the session has Limits.ParticipantsPerSession active
	// participants already.
	SessionFull
	// RecordingNotFound: no recording with that id.
	RecordingNotFound
	// RecordingConflict: the session is being recorded already, or a
	// started recording cannot be deleted.
	RecordingConflict
	// RecordingStarting: the recording cannot be stopped before it started.
	RecordingStarting
	// RecordingFailed: no recorder started the recording in time.
	RecordingFailed
)

var kindNames = [...]string{
	Internal: "internal", Unavailable: "unavailable", MediaNodeFailed: "media node failed",
	NoMediaNode: "no media node", NoCapacity: "no capacity", NodeRefusesSessions: "node refuses sessions",
	SessionNotFound: "session not found", SessionExists: "session exists", SessionEmpty: "session empty",
	SessionInactive: "session inactive", ConnectionNotFound: "connection not found",
	StreamNotFound: "stream not found", AlreadyPublishing: "already publishing", Unauthorized: "unauthorized",
	BadSDP: "bad SDP", OfferFailed: "offer failed", CodecNotFound: "codec not found", Superseded: "superseded",
	StreamMoving: "stream moving", NotMovedInTime: "not moved in time", InvalidRecipients: "invalid recipients",
	ReconnectionFailed: "reconnection failed", SignalTooLarge: "signal too large",
	MetadataTooLarge: "metadata too large", SessionFull: "session full",
	RecordingNotFound: "recording not found",
	RecordingConflict: "recording conflict", RecordingStarting: "recording starting", RecordingFailed: "recording failed",
}

// Kinds lists every kind, for the transports' mapping tests.
func Kinds() []Kind {
	out := make([]Kind, len(kindNames))
	for i := range out {
		out[i] = Kind(i)
	}
	return out
}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Error is a session failure: its Kind, and Message in openvidu-server's
// words (what the REST error JSON and the JSON-RPC error carry).
type Error struct {
	Kind    Kind
	Message string
	cause   error
}

func (e *Error) Error() string {
	if e.cause != nil {
		return e.Message + ": " + e.cause.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.cause }

func newError(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// wrapError is newError keeping what caused it.
func wrapError(kind Kind, cause error, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...), cause: cause}
}

// IsKind reports whether err is (or wraps) a session Error of one of kinds.
func IsKind(err error, kinds ...Kind) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	for _, k := range kinds {
		if e.Kind == k {
			return true
		}
	}
	return false
}

// AsError returns err as an *Error: a media node's error is MediaNodeFailed,
// Redis being unreachable Unavailable (clients and proxies retry), anything
// else Internal.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var me *mediaapi.Error
	if errors.As(err, &me) {
		return wrapError(MediaNodeFailed, err, "Media node error: %s", me.Message)
	}
	if store.IsUnavailable(err) {
		return wrapError(Unavailable, err, "Cluster state unavailable")
	}
	return wrapError(Internal, err, "Internal error")
}
