package restapi

import (
	"errors"
	"net/http"
	"testing"

	"github.com/chorus-rtc/chorus/master/session"
)

// TestRESTErrorTable pins the answer to each kind of session failure to the
// statuses openvidu-server documents (REST-API.md's "HTTP responses" of each
// endpoint); restapi_test.go checks them again through the real routes.
func TestRESTErrorTable(t *testing.T) {
	tests := []struct {
		kind      session.Kind
		overrides []errorOverride
		status    int
		body      bool
	}{
		{session.SessionNotFound, nil, 404, false},                                         // GET/DELETE /sessions/{id}, POST connection
		{session.SessionNotFound, []errorOverride{sessionOfConnectionMissing}, 400, false}, // GET/DELETE connection, DELETE stream
		{session.ConnectionNotFound, []errorOverride{sessionOfConnectionMissing}, 404, false},
		{session.SessionExists, nil, 409, false}, // POST /sessions with a taken customSessionId
		{session.SessionEmpty, nil, 406, false},  // POST /signal to a session without participants
		{session.InvalidRecipients, nil, 406, true},
		{session.SessionInactive, nil, 404, false},
		{session.StreamNotFound, nil, 404, false},
		{session.NodeRefusesSessions, nil, 400, true}, // POST /sessions naming a node that takes none
		{session.Unauthorized, nil, 401, false},
		{session.Unavailable, nil, 503, false},
		{session.MediaNodeFailed, nil, 502, false},
		{session.Internal, nil, 500, false},
		{session.SignalTooLarge, nil, 400, true},   // POST /signal: "a problem with some body parameter"
		{session.MetadataTooLarge, nil, 400, true}, // POST connection's data
	}
	for _, tc := range tests {
		t.Run(tc.kind.String(), func(t *testing.T) {
			ans, _ := restAnswer(&session.Error{Kind: tc.kind, Message: "m"}, tc.overrides...)
			if ans.status != tc.status || ans.body != tc.body {
				t.Fatalf("%v answers %d (body %v), want %d (body %v)", tc.kind, ans.status, ans.body, tc.status, tc.body)
			}
		})
	}
}

// TestEveryKindHasARESTAnswer keeps new kinds from falling silently into 500:
// only the failures nobody planned for are server errors of that kind.
func TestEveryKindHasARESTAnswer(t *testing.T) {
	for _, k := range session.Kinds() {
		got := restErrorOf(k).status
		if got == http.StatusInternalServerError && k != session.Internal && k != session.OfferFailed {
			t.Errorf("kind %v has no REST answer of its own (500)", k)
		}
	}
	if ans, e := restAnswer(errors.New("boom")); ans.status != 500 || e.Kind != session.Internal {
		t.Errorf("an unexpected error answers %d as %v", ans.status, e.Kind)
	}
}
