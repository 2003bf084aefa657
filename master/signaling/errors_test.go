package signaling

import (
	"errors"
	"fmt"
	"testing"

	"github.com/chorus-rtc/chorus/master/session"
	"github.com/chorus-rtc/chorus/shared/protocol"
)

// TestRPCErrorCodes pins session failures to openvidu-server's JSON-RPC
// error codes (OpenViduException.Code), which openvidu-browser hands to
// applications, and checks that every kind has a row.
func TestRPCErrorCodes(t *testing.T) {
	for _, k := range session.Kinds() {
		if _, ok := rpcCodes[k]; !ok {
			t.Errorf("kind %v has no JSON-RPC code", k)
		}
	}
	tests := []struct {
		err  error
		code int
	}{
		{&session.Error{Kind: session.SessionNotFound}, 202},
		{&session.Error{Kind: session.ConnectionNotFound}, 102},
		{&session.Error{Kind: session.StreamNotFound}, 105},
		{&session.Error{Kind: session.AlreadyPublishing}, 106},
		{&session.Error{Kind: session.Unauthorized}, 401},
		{&session.Error{Kind: session.BadSDP}, 302},
		{&session.Error{Kind: session.CodecNotFound}, 800},
		{&session.Error{Kind: session.InvalidRecipients}, 601},
		{&session.Error{Kind: session.ReconnectionFailed}, 40007},
		{&session.Error{Kind: session.NoMediaNode}, 900},
		{&session.Error{Kind: session.SignalTooLarge}, 600},
		{&session.Error{Kind: session.MetadataTooLarge}, 500},
		{fmt.Errorf("wrapped: %w", &session.Error{Kind: session.SessionExists}), 204},
		{&protocol.RPCError{Code: protocol.CodeTransport}, 803},
		{errors.New("unexpected"), 999},
	}
	for _, tc := range tests {
		if got := toRPCError(tc.err).Code; got != tc.code {
			t.Errorf("%v: code %d, want %d", tc.err, got, tc.code)
		}
	}
}
