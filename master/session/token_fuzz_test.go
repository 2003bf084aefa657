package session_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/chorus-rtc/chorus/master/session"
	"github.com/chorus-rtc/chorus/shared/protocol"
)

// FuzzParseToken checks the parsing of the token a client presents in
// joinRoom: it never panics; it accepts a bare tok_ id, or a URL whose
// sessionId is the session joined and whose token is a tok_ id, and then
// returns that id; a token URL the cluster made parses back to its id.
// Seeded with tokens as openvidu-browser sends them.
func FuzzParseToken(f *testing.F) {
	for _, s := range []struct{ token, sid string }{
		{"wss://localhost:4443?sessionId=ses_Ab12&token=tok_XyZ0123456789abcdefghijk&edition=pro", "ses_Ab12"},
		{"wss://video.example.org?sessionId=ses_Ab12&token=tok_XyZ0123456789abcdefghijk", "other"},
		{"tok_XyZ0123456789abcdefghijk", "ses_Ab12"},
		{"ws://127.0.0.1:4443/?sessionId=a%20b&token=tok_x&token=evil", "a b"},
		{"%zz", "s"}, {"", ""},
	} {
		f.Add(s.token, s.sid)
	}
	svc := session.New(session.Config{PublicURL: "wss://video.example.org:4443", Edition: "pro"})
	f.Fuzz(func(t *testing.T, token, sid string) {
		id, ok := session.ParseToken(token, protocol.SessionID(sid))
		if ok {
			if !strings.HasPrefix(id, protocol.PrefixToken) {
				t.Fatalf("ParseToken(%q, %q) = %q", token, sid, id)
			}
			if !strings.HasPrefix(token, protocol.PrefixToken) {
				u, err := url.Parse(token)
				if err != nil || u.Query().Get("sessionId") != sid || u.Query().Get("token") != id {
					t.Fatalf("ParseToken(%q, %q) = %q from another session or token", token, sid, id)
				}
			}
		}
		// Whatever the session id, the cluster's own token URL parses back.
		tok := protocol.NewToken()
		if got, ok := session.ParseToken(svc.TokenURL(protocol.SessionID(sid), tok), protocol.SessionID(sid)); !ok || got != tok {
			t.Fatalf("token URL of session %q: %q, %v; want %q", sid, got, ok, tok)
		}
	})
}
