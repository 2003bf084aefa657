package session

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"

	"github.com/chorus-rtc/chorus/shared/protocol"
)

// A JSON-RPC session id (joinRoom's sessionId, the credential of a later
// connect) is rpcRandomLen random alphanumerics followed by an
// rpcTagLen-character tag: HMAC-SHA256, under the cluster secret, of the
// OpenVidu session id and the random part. Its length, 32, is the one
// Chorus always used; openvidu-browser treats it as opaque.
const (
	rpcRandomLen = 20
	rpcTagLen    = 12
	rpcAlphabet  = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
)

// newRPCSessionID returns the JSON-RPC session id of a participant joining
// session sid.
func (s *Service) newRPCSessionID(sid protocol.SessionID) string {
	random := protocol.NewRPCSessionID()[:rpcRandomLen]
	return random + s.rpcTag(sid, random)
}

// VerifyRPCSessionID reports whether rpcID is a JSON-RPC session id this
// cluster handed to a participant of session sid: the proof, without any
// state (the participant, the session may be gone), that a client was a
// participant there. A client whose connect failed may then ask
// sessionStatus about that session, and no other client may.
func (s *Service) VerifyRPCSessionID(sid protocol.SessionID, rpcID string) bool {
	if len(rpcID) != rpcRandomLen+rpcTagLen {
		return false
	}
	random, tag := rpcID[:rpcRandomLen], rpcID[rpcRandomLen:]
	return subtle.ConstantTimeCompare([]byte(tag), []byte(s.rpcTag(sid, random))) == 1
}

func (s *Service) rpcTag(sid protocol.SessionID, random string) string {
	mac := hmac.New(sha256.New, []byte(s.cfg.ClusterSecret))
	mac.Write([]byte("chorus rpc session id\x00"))
	mac.Write([]byte(sid))
	mac.Write([]byte{0})
	mac.Write([]byte(random))
	sum := mac.Sum(nil)
	tag := make([]byte, rpcTagLen)
	for i := range tag {
		tag[i] = rpcAlphabet[int(sum[i])%len(rpcAlphabet)]
	}
	return string(tag)
}
