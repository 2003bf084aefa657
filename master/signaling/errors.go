package signaling

import (
	"errors"

	"github.com/chorus-rtc/chorus/master/session"
	"github.com/chorus-rtc/chorus/shared/protocol"
)

// rpcCodes maps each kind of session failure to the JSON-RPC error code
// openvidu-server answers in that case (its OpenViduException.Code values,
// which openvidu-browser reports to the application).
var rpcCodes = map[session.Kind]int{
	session.Internal:            protocol.CodeGeneric,
	session.Unavailable:         protocol.CodeGeneric,
	session.MediaNodeFailed:     protocol.CodeMediaGeneric,
	session.NoMediaNode:         protocol.CodeMediaNodeNotFound,
	session.NoCapacity:          protocol.CodeRoomCannotBeCreated,
	session.NodeRefusesSessions: protocol.CodeMediaNodeNotFound,
	session.SessionNotFound:     protocol.CodeRoomNotFound,
	session.SessionExists:       protocol.CodeRoomCannotBeCreated,
	session.SessionEmpty:        protocol.CodeRoomNotFound,
	session.SessionInactive:     protocol.CodeRoomNotFound,
	session.ConnectionNotFound:  protocol.CodeUserNotFound,
	session.StreamNotFound:      protocol.CodeUserNotStreaming,
	session.AlreadyPublishing:   protocol.CodeUserAlreadyStreaming,
	session.Unauthorized:        protocol.CodeUserUnauthorized,
	session.BadSDP:              protocol.CodeMediaSDP,
	session.OfferFailed:         protocol.CodeMediaSDP,
	session.CodecNotFound:       protocol.CodeForcedCodecNotFound,
	session.Superseded:          protocol.CodeMediaSDP,
	session.StreamMoving:        protocol.CodeMediaGeneric,
	session.NotMovedInTime:      protocol.CodeMediaGeneric,
	session.InvalidRecipients:   protocol.CodeSignalToInvalid,
	session.ReconnectionFailed:  protocol.CodeReconnectionError,
	session.SignalTooLarge:      protocol.CodeSignalFormatInvalid,
	session.MetadataTooLarge:    protocol.CodeUserMetadataFormatInvalid,
	session.SessionFull:         protocol.CodeUserUnauthorized,
	// Recording failures come from the REST API only; no JSON-RPC method
	// records.
	session.RecordingNotFound: protocol.CodeGeneric,
	session.RecordingConflict: protocol.CodeGeneric,
	session.RecordingStarting: protocol.CodeGeneric,
	session.RecordingFailed:   protocol.CodeGeneric,
}

// toRPCError answers a failed request: an RPCError as built, or a session
// failure with its JSON-RPC code (rpcCodes) and openvidu-server's message.
func toRPCError(err error) *protocol.RPCError {
	var rerr *protocol.RPCError
	if errors.As(err, &rerr) {
		return rerr
	}
	e := session.AsError(err)
	code, ok := rpcCodes[e.Kind]
	if !ok {
		code = protocol.CodeGeneric
	}
	return &protocol.RPCError{Code: code, Message: e.Message}
}
