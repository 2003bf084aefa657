package session_test

import (
	"context"
	"slices"
	"testing"

	"github.com/chorus-rtc/chorus/master/session"
	"github.com/chorus-rtc/chorus/shared/protocol"
)

// TestDemotedPublisherCannotReconnect: a publisher that PATCH
// .../connection demoted to SUBSCRIBER cannot renegotiate its stream
// (reconnectStream as its owner): it gets Unauthorized, as publishVideo
// would answer it, and the media node keeps only the stream's old endpoint.
// Promoted back to PUBLISHER, it can again.
func TestDemotedPublisherCannotReconnect(t *testing.T) {
	e := newEnv(t, 1)
	e.adopt("media_1")
	svc := e.service("master_1.1")
	ctx := context.Background()
	const sid = "demoted"
	e.createSession(svc, sid)
	b := newBrowser(t)
	pub := e.join(svc, sid)
	stream := e.publish(svc, b, sid, pub.ID)

	setRole := func(role string) {
		t.Helper()
		if _, _, err := svc.UpdateConnection(ctx, sid, pub.ID, &role, nil); err != nil {
			t.Fatal(err)
		}
	}
	setRole(protocol.RoleSubscriber)
	_, err := svc.ReconnectPublisher(ctx, sid, pub.ID, stream, b.offer())
	if se := session.AsError(err); err == nil || se.Kind != session.Unauthorized {
		t.Errorf("reconnectStream of a demoted publisher: %v, want Unauthorized", err)
	}
	if got := e.endpoints("media_1", sid); !slices.Equal(got, []string{string(stream)}) {
		t.Errorf("endpoints after the refused reconnection: %v, want [%s]", got, stream)
	}
	setRole(protocol.RolePublisher)
	if _, err := svc.ReconnectPublisher(ctx, sid, pub.ID, stream, b.offer()); err != nil {
		t.Errorf("reconnectStream once promoted back: %v", err)
	}
}
