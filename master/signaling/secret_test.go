package signaling_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/chorus-rtc/chorus/clustertest"
	"github.com/chorus-rtc/chorus/shared/protocol"
)

// TestJoinWithTheSecretIsASubscriber: joinRoom with the OpenVidu secret
// instead of a token makes a connection whose role is SUBSCRIBER, as
// openvidu-server 2 gives its "insecure" participants (RpcHandler.joinRoom),
// and that role holds: its publishVideo is refused as a subscriber's, and
// the REST API shows SUBSCRIBER. A wrong secret joins nobody.
func TestJoinWithTheSecretIsASubscriber(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := clustertest.Start(t, clustertest.Options{Masters: 1, MediaNodes: 1})
	newSession(t, c, "insecure")

	wrong := dialRaw(t, ctx, c, "insecure")
	if resp := wrong.call(ctx, "joinRoom", map[string]any{"token": "x", "session": "insecure", "platform": "go", "metadata": "",
		"secret": clustertest.Secret + "x"}); resp.Error == nil || resp.Error.Code != protocol.CodeUserUnauthorized {
		t.Errorf("joinRoom with a wrong secret: %+v, want error 401", resp)
	}

	sock := dialRaw(t, ctx, c, "insecure")
	resp := sock.call(ctx, "joinRoom", map[string]any{"token": "x", "session": "insecure", "platform": "go", "metadata": "", "secret": clustertest.Secret})
	if resp.Error != nil {
		t.Fatalf("joinRoom with the secret: %+v", resp.Error)
	}
	var jr protocol.JoinRoomResult
	if err := json.Unmarshal(resp.Result, &jr); err != nil {
		t.Fatal(err)
	}
	if jr.Role != protocol.RoleSubscriber {
		t.Errorf("joinRoom with the secret gave role %q, want %s", jr.Role, protocol.RoleSubscriber)
	}
	st, body := rest(t, c, "GET", "/openvidu/api/sessions/insecure/connection/"+jr.ID, "")
	var conn protocol.Connection
	if err := json.Unmarshal(body, &conn); st != 200 || err != nil || conn.Role != protocol.RoleSubscriber {
		t.Errorf("GET its connection: %d %s, want role %s", st, body, protocol.RoleSubscriber)
	}
	pub := sock.call(ctx, "publishVideo", map[string]any{"sdpOffer": "v=0\r\n", "doLoopback": false, "hasAudio": true, "hasVideo": false,
		"audioActive": true, "videoActive": false, "typeOfVideo": "", "frameRate": 30, "videoDimensions": ""})
	if pub.Error == nil || pub.Error.Code != protocol.CodeUserUnauthorized {
		t.Errorf("publishVideo of the secret's participant: %+v, want error 401", pub)
	}
}
