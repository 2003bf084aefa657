package session

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/chorus-rtc/chorus/shared/store"
	"github.com/chorus-rtc/chorus/shared/turncred"
)

// TURN is what masters hand participants so that they reach the media
// nodes through the cluster's TURN servers when UDP is blocked.
type TURN struct {
	// URLs are the STUN/TURN URLs participants use (RFC 7064, RFC 7065):
	// "turn:host:3478?transport=udp", "turns:host:5349?transport=tcp"...
	// Empty: no TURN server is handed out.
	URLs []string
	// Secret mints the TURN REST API credentials (shared/turncred).
	Secret string
	// CredentialTTL is how long a credential is valid (OpenVidu's coturn
	// credentials live as long as the session; 24 h covers any meeting and
	// survives a media node crash, after which browsers reuse them).
	CredentialTTL time.Duration
}

// iceServer is one entry of joinRoom's customIceServers, as
// openvidu-browser reads it (Session.processJoinRoomResponse: url,
// username, credential).
type iceServer struct {
	URL        string `json:"url"`
	Username   string `json:"username,omitempty"`
	Credential string `json:"credential,omitempty"`
}

// ICEServers returns the customIceServers of c's joinRoom answer: the ones
// the connection was created with (POST .../connection customIceServers,
// which win, as in OpenVidu), else the cluster's TURN servers with a
// credential minted for this connection at now, else nil (none).
func (s *Service) ICEServers(c *store.Connection, now time.Time) json.RawMessage {
	if own := strings.TrimSpace(string(c.CustomIceServers)); own != "" && own != "[]" && own != "null" {
		return c.CustomIceServers
	}
	t := s.cfg.TURN
	if len(t.URLs) == 0 {
		return nil
	}
	var username, password string
	servers := make([]iceServer, 0, len(t.URLs))
	for _, u := range t.URLs {
		srv := iceServer{URL: u}
		if strings.HasPrefix(u, "turn:") || strings.HasPrefix(u, "turns:") {
			if username == "" {
				var err error
				username, password, err = turncred.Mint(t.Secret, string(c.ID), t.CredentialTTL, now)
				if err != nil {
					s.log.Warn("mint a TURN credential", "connection", c.ID, "err", err)
					return nil
				}
			}
			srv.Username, srv.Credential = username, password
		}
		servers = append(servers, srv)
	}
	raw, err := json.Marshal(servers)
	if err != nil {
		return nil
	}
	return raw
}
