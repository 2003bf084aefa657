package restapi_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/chorus-rtc/chorus/clustertest"
	"github.com/chorus-rtc/chorus/sdk/participant"
	"github.com/chorus-rtc/chorus/shared/protocol"
)

// TestRecordingStatusCodes walks the recording API through OpenVidu's
// answers (REST-API.md, each recording endpoint's statuses) with a real
// recorder: 404, 406, 422, 400, 409, the Recording object through
// started, stopped and a final status, and the participants'
// recordingStarted / recordingStopped.
func TestRecordingStatusCodes(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Masters: 1, MediaNodes: 1, Recorders: 1})
	base := c.MasterURLs[0]
	expect := func(name string, cl call, status int) []byte {
		t.Helper()
		resp, body := do(t, base, cl)
		if resp.StatusCode != status {
			t.Fatalf("%s: %s %s answered %d, want %d: %s", name, cl.method, cl.path, resp.StatusCode, status, body)
		}
		return body
	}
	start := func(body string) call {
		return call{method: "POST", path: "/openvidu/api/recordings/start", body: body}
	}
	expect("unknown session", start(`{"session":"nobody"}`), 404)
	expect("no session", start(`{}`), 400)
	expect("create session", call{method: "POST", path: "/openvidu/api/sessions", body: `{"customSessionId":"recs"}`}, 200)
	expect("no participants", start(`{"session":"recs"}`), 406)
	for _, bad := range []struct{ name, body string }{
		{"resolution too small", `{"session":"recs","resolution":"99x720"}`},
		{"resolution malformed", `{"session":"recs","resolution":"wide"}`},
		{"frame rate 0", `{"session":"recs","frameRate":0}`},
		{"frame rate 121", `{"session":"recs","frameRate":121}`},
		{"neither audio nor video", `{"session":"recs","hasAudio":false,"hasVideo":false}`},
		{"custom layout", `{"session":"recs","recordingLayout":"CUSTOM"}`},
	} {
		expect(bad.name, start(bad.body), 422)
	}
	expect("path in the name", start(`{"session":"recs","name":"../../etc/passwd"}`), 400)
	expect("unknown output mode", start(`{"session":"recs","outputMode":"MIXED"}`), 400)
	for _, m := range []string{"GET /openvidu/api/recordings/nope", "POST /openvidu/api/recordings/stop/nope", "DELETE /openvidu/api/recordings/nope"} {
		method, path, _ := cut(m)
		expect("unknown recording", call{method: method, path: path}, 404)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var conn protocol.Connection
	if err := json.Unmarshal(expect("token", call{method: "POST", path: "/openvidu/api/sessions/recs/connection", body: `{}`}, 200), &conn); err != nil {
		t.Fatal(err)
	}
	p, err := participant.Join(ctx, participant.Config{Token: conn.Token, LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	pub, err := p.Publish(ctx, participant.PublishOptions{Audio: true, Video: true})
	if err != nil {
		t.Fatal(err)
	}
	sctx, stopSending := context.WithCancel(ctx)
	defer stopSending()
	go pub.SendSynthetic(sctx, participant.DefaultVideo)

	var rec protocol.Recording
	if err := json.Unmarshal(expect("start", start(`{"session":"recs","name":"take1","resolution":"640x480","frameRate":15}`), 200), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.ID != "recs" || rec.Object != "recording" || rec.Status != protocol.RecordingStarted || rec.Name != "take1" ||
		rec.OutputMode != "COMPOSED" || rec.Resolution != "640x480" || rec.FrameRate != 15 || rec.RecordingLayout != "BEST_FIT" ||
		!rec.HasAudio || !rec.HasVideo || rec.URL != nil {
		t.Errorf("started recording %+v", rec)
	}
	expect("already recording", start(`{"session":"recs"}`), 409)
	expect("delete while started", call{method: "DELETE", path: "/openvidu/api/recordings/recs"}, 409)
	var sess protocol.Session
	_ = json.Unmarshal(expect("session", call{method: "GET", path: "/openvidu/api/sessions/recs"}, 200), &sess)
	if !sess.Recording || sess.Connections.NumberOfElements != 1 {
		t.Errorf("session while recorded: recording %v, %d connections (the recorder is hidden)", sess.Recording, sess.Connections.NumberOfElements)
	}
	time.Sleep(2 * time.Second)
	if err := json.Unmarshal(expect("stop", call{method: "POST", path: "/openvidu/api/recordings/stop/recs"}, 200), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Status != protocol.RecordingStopped {
		t.Errorf("stopped recording %+v", rec)
	}
	expect("stop again", call{method: "POST", path: "/openvidu/api/recordings/stop/recs"}, 406)
	if err := p.WaitFor(ctx, func(p *participant.Participant) bool {
		started, stopped := false, false
		for _, e := range p.Events() {
			var n protocol.RecordingNotification
			_ = json.Unmarshal(e.Params, &n)
			started = started || e.Method == "recordingStarted" && n.ID == "recs" && n.Name == "take1"
			stopped = stopped || e.Method == "recordingStopped" && n.ID == "recs" && n.Reason == "recordingStoppedByServer"
		}
		return started && stopped
	}); err != nil {
		t.Errorf("participant events: recordingStarted and recordingStopped not both received: %v", p.Events())
	}
	deadline := time.Now().Add(30 * time.Second)
	for rec.Status == protocol.RecordingStopped && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		_ = json.Unmarshal(expect("get", call{method: "GET", path: "/openvidu/api/recordings/recs"}, 200), &rec)
	}
	if rec.Status != protocol.RecordingReady || rec.Size <= 0 || rec.Duration < 1.5 || rec.URL == nil {
		t.Fatalf("recording after stop: %+v", rec)
	}
	file := "/openvidu/recordings/recs/take1.mp4"
	if *rec.URL != c.PublicURL[len("ws"):] && len(*rec.URL) < len(file) || (*rec.URL)[len(*rec.URL)-len(file):] != file {
		t.Errorf("url %s", *rec.URL)
	}
	expect("download", call{method: "GET", path: file}, 200)
	expect("download without credentials", call{method: "GET", path: file, auth: "none"}, 401)
	expect("download outside", call{method: "GET", path: "/openvidu/recordings/recs/..%2F..%2Fetc"}, 404)
	var list protocol.RecordingList
	_ = json.Unmarshal(expect("list", call{method: "GET", path: "/openvidu/api/recordings"}, 200), &list)
	if list.Count != 1 || len(list.Items) != 1 || list.Items[0].ID != "recs" {
		t.Errorf("list %+v", list)
	}
	// The session may be recorded again: the next id is recs~1.
	var second protocol.Recording
	if err := json.Unmarshal(expect("start again", start(`{"session":"recs","outputMode":"INDIVIDUAL"}`), 200), &second); err != nil {
		t.Fatal(err)
	}
	if second.ID != "recs~1" || second.Status != protocol.RecordingStarted || second.Resolution != "" || second.RecordingLayout != "" {
		t.Errorf("second recording %+v", second)
	}
	expect("stop the second", call{method: "POST", path: "/openvidu/api/recordings/stop/recs~1"}, 200)
	expect("delete", call{method: "DELETE", path: "/openvidu/api/recordings/recs"}, 204)
	expect("deleted", call{method: "GET", path: "/openvidu/api/recordings/recs"}, 404)
}

func cut(s string) (string, string, bool) {
	for i := range s {
		if s[i] == ' ' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}
