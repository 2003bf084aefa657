package restapi

import (
	"net/http"

	"github.com/chorus-rtc/chorus/master/session"
)

// restError is how openvidu-server answers a failure over REST: a status,
// and whether the body is its error JSON (otherwise it is empty; 5xx
// answers always carry the JSON).
type restError struct {
	status int
	body   bool
}

// restErrorOf maps a kind of session failure to openvidu-server's REST
// answer (openvidu-docs more/reference-docs/REST-API: each endpoint's
// documented statuses). Routes that answer a kind differently pass an
// override to fail.
func restErrorOf(k session.Kind) restError {
	switch k {
	case session.Unavailable, session.NoMediaNode, session.NoCapacity, session.NotMovedInTime:
		return restError{status: http.StatusServiceUnavailable}
	case session.MediaNodeFailed:
		return restError{status: http.StatusBadGateway}
	case session.NodeRefusesSessions:
		return restError{status: http.StatusBadRequest, body: true}
	case session.SessionNotFound, session.SessionInactive, session.ConnectionNotFound,
		session.StreamNotFound, session.ReconnectionFailed:
		return restError{status: http.StatusNotFound}
	case session.SessionExists, session.AlreadyPublishing, session.Superseded, session.StreamMoving:
		return restError{status: http.StatusConflict}
	case session.RecordingNotFound:
		return restError{status: http.StatusNotFound}
	case session.RecordingConflict:
		return restError{status: http.StatusConflict, body: true}
	case session.RecordingStarting:
		return restError{status: http.StatusNotAcceptable, body: true}
	case session.RecordingFailed: // no recorder started it: retry once one runs
		return restError{status: http.StatusServiceUnavailable, body: true}
	case session.SessionEmpty:
		return restError{status: http.StatusNotAcceptable}
	case session.InvalidRecipients:
		return restError{status: http.StatusNotAcceptable, body: true}
	case session.Unauthorized:
		return restError{status: http.StatusUnauthorized}
	case session.BadSDP, session.CodecNotFound:
		return restError{status: http.StatusBadRequest}
	case session.SignalTooLarge, session.MetadataTooLarge:
		// "There is a problem with some body parameter" (POST /signal,
		// POST /sessions/{id}/connection), with the limit in the message.
		return restError{status: http.StatusBadRequest, body: true}
	case session.SessionFull:
		return restError{status: http.StatusConflict, body: true}
	default: // Internal, OfferFailed and any kind added without a row here
		return restError{status: http.StatusInternalServerError}
	}
}

// errorOverride answers one kind differently on some routes.
type errorOverride struct {
	kind session.Kind
	restError
}

// sessionOfConnectionMissing is openvidu-server's answer on the routes
// below a session that address a connection or a stream (GET and DELETE
// /sessions/{id}/connection/{cid}, DELETE /sessions/{id}/stream/{sid}):
// a missing session is the client's error there, 400, not 404.
var sessionOfConnectionMissing = errorOverride{kind: session.SessionNotFound, restError: restError{status: http.StatusBadRequest}}

// restAnswer is the answer to err on a route with the given overrides.
func restAnswer(err error, overrides ...errorOverride) (restError, *session.Error) {
	e := session.AsError(err)
	for _, o := range overrides {
		if o.kind == e.Kind {
			return o.restError, e
		}
	}
	return restErrorOf(e.Kind), e
}
