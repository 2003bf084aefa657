// Package protocol holds OpenVidu 2.x's wire types as Chorus speaks them: the
// REST objects, the JSON-RPC messages of openvidu-browser, the identifiers and
// their prefixes. It has no behaviour beyond encoding, decoding and validation.
package protocol

import (
	"crypto/rand"
	"regexp"
	"strings"
)

// Identifier prefixes, as in openvidu-server's IdentifierPrefixes.
const (
	PrefixSession    = "ses_"
	PrefixConnection = "con_"
	PrefixStream     = "str_"
	PrefixToken      = "tok_"
	PrefixMediaNode  = "media_"
	PrefixMasterNode = "master_"
)

// Identifiers of the domain, distinct types so that one cannot be passed
// where another is expected (ForceDisconnect(ctx, session, moderator, target)
// does not compile with the session and a connection swapped). Their JSON is
// the plain string; a client-chosen session id (customSessionId) is a
// SessionID like a generated one.
type (
	// SessionID identifies a session: "ses_..." or a customSessionId.
	SessionID string
	// ConnectionID identifies a connection (a token, then its participant): "con_...".
	ConnectionID string
	// StreamID identifies a published stream: "str_<TYPE>_<4>_<connection id>".
	StreamID string
	// NodeID identifies a media node: "media_...".
	NodeID string
	// MasterID identifies a master: "master_...".
	MasterID string
)

// MarshalBinary lets an id be a Redis command argument as it is (go-redis
// accepts string and encoding.BinaryMarshaler, not named string types).
func (id SessionID) MarshalBinary() ([]byte, error) { return []byte(id), nil }

// MarshalBinary: see SessionID.MarshalBinary.
func (id ConnectionID) MarshalBinary() ([]byte, error) { return []byte(id), nil }

// MarshalBinary: see SessionID.MarshalBinary.
func (id StreamID) MarshalBinary() ([]byte, error) { return []byte(id), nil }

// MarshalBinary: see SessionID.MarshalBinary.
func (id NodeID) MarshalBinary() ([]byte, error) { return []byte(id), nil }

// MarshalBinary: see SessionID.MarshalBinary.
func (id MasterID) MarshalBinary() ([]byte, error) { return []byte(id), nil }

const (
	alphanumeric = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	upper        = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
)

// randomString returns n characters drawn uniformly from alphabet with
// crypto/rand (rejection sampling, so there is no modulo bias).
func randomString(alphabet string, n int) string {
	out := make([]byte, n)
	limit := 256 - 256%len(alphabet)
	buf := make([]byte, n+n/2+8)
	for i := 0; i < n; {
		if _, err := rand.Read(buf); err != nil {
			panic("crypto/rand failed: " + err.Error()) // the kernel's CSPRNG does not fail on Linux
		}
		for _, b := range buf {
			if int(b) >= limit {
				continue
			}
			out[i] = alphabet[int(b)%len(alphabet)]
			i++
			if i == n {
				break
			}
		}
	}
	return string(out)
}

// NewSessionID returns "ses_" plus an upper-case letter and 9 alphanumerics,
// the shape of openvidu-server's generated session ids.
func NewSessionID() SessionID {
	return SessionID(PrefixSession + randomString(upper, 1) + randomString(alphanumeric, 9))
}

// NewConnectionID returns "con_" plus 10 alphanumerics, as openvidu-server.
func NewConnectionID() ConnectionID {
	return ConnectionID(PrefixConnection + randomString(alphanumeric, 10))
}

// NewToken returns "tok_" plus 24 alphanumerics: 142 bits of randomness
// (openvidu-server uses 16 characters; we want at least 128 bits).
func NewToken() string { return PrefixToken + randomString(alphanumeric, 24) }

// NewRPCSessionID returns the JSON-RPC session id handed to a participant in
// joinRoom: 32 alphanumerics (190 bits). It is the credential for a later
// "connect" (reconnection), so it is never shown to anyone else.
func NewRPCSessionID() string { return randomString(alphanumeric, 32) }

// NewMediaNodeID returns "media_" plus 10 alphanumerics.
func NewMediaNodeID() NodeID { return NodeID(PrefixMediaNode + randomString(alphanumeric, 10)) }

// NewMasterNodeID returns "master_" plus 10 alphanumerics.
func NewMasterNodeID() MasterID { return MasterID(PrefixMasterNode + randomString(alphanumeric, 10)) }

// NewEventID returns a random id for de-duplicating events and idempotent operations.
func NewEventID() string { return randomString(alphanumeric, 20) }

// NewStreamID returns OpenVidu's stream id for a stream the connection
// publishes: "str_" + the first three letters of typeOfVideo (CAM, SCR, CUS,
// IPC) + "_" + 4 alphanumerics + "_" + the connection id, e.g.
// "str_CAM_NhxL_con_Xnxg19tonh". The owner's connection id can be read back
// with ConnectionOfStream.
func NewStreamID(typeOfVideo string, connectionID ConnectionID) StreamID {
	kind := strings.ToUpper(typeOfVideo)
	if len(kind) > 3 {
		kind = kind[:3]
	}
	if kind == "" {
		kind = "CAM"
	}
	return StreamID(PrefixStream + kind + "_" + randomString(alphanumeric, 4) + "_" + string(connectionID))
}

// ConnectionOfStream returns the connection id embedded in a stream id made by
// NewStreamID, or "" if the id has another shape.
func ConnectionOfStream(streamID StreamID) ConnectionID {
	s := string(streamID)
	i := strings.Index(s, "_"+PrefixConnection)
	if !strings.HasPrefix(s, PrefixStream) || i < 0 {
		return ""
	}
	return ConnectionID(s[i+1:])
}

var validID = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)

// ValidID reports whether s may be used as a custom session id or any other
// client-chosen identifier: OpenVidu accepts only [a-zA-Z0-9_-].
func ValidID(s string) bool { return len(s) <= 256 && validID.MatchString(s) }
