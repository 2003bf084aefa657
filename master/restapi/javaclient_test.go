package restapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chorus-rtc/chorus/clustertest"
	"github.com/chorus-rtc/chorus/sdk/participant"
)

// openvidu-java-client 2.32 cannot run here (no Maven repository), so this
// test replays its HTTP exchanges as its sources (OpenVidu/openvidu v2.32.x,
// openvidu-java-client/src/main/java/io/openvidu/java/client) make them, and
// checks every answer the way its Gson-based parsers read it:
//   - it authenticates only after a challenge: a request without
//     Authorization must get 401 with WWW-Authenticate: Basic, then the same
//     request with Basic OPENVIDUAPP:<secret>;
//   - it sends Content-Type: application/json without a charset, no Accept,
//     and request bodies with explicit nulls, in its own key order;
//   - each call accepts exactly one status (200 or 204);
//   - its parsers need some fields present and non-null (a raw
//     NullPointerException otherwise), some present but possibly null, and
//     some only if present; see javaFields.

// javaExchange sends one request as openvidu-java-client does and returns
// the status and body of the authenticated attempt.
func javaExchange(t *testing.T, base, method, path, body string) (int, []byte) {
	t.Helper()
	send := func(auth bool) (*http.Response, []byte) {
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequest(method, base+"/"+path, rd)
		if err != nil {
			t.Fatal(err)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		req.Header.Set("User-Agent", "Apache-HttpClient/5.4.4 (Java/17)")
		req.Header.Set("Accept-Encoding", "gzip, x-gzip, deflate")
		if auth {
			req.SetBasicAuth("OPENVIDUAPP", clustertest.Secret)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp, raw
	}
	resp, _ := send(false)
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic") {
		t.Fatalf("%s %s without credentials: %d, WWW-Authenticate %q; the Java client only sends credentials after a Basic challenge",
			method, path, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	resp, raw := send(true)
	return resp.StatusCode, raw
}

// javaObject is a JSON object read as Gson's JsonObject.
type javaObject map[string]json.RawMessage

func parseJavaObject(t *testing.T, what string, raw []byte) javaObject {
	t.Helper()
	var o javaObject
	if err := json.Unmarshal(raw, &o); err != nil || o == nil {
		t.Fatalf("%s: not a JSON object (the Java client fails): %v: %s", what, err, raw)
	}
	return o
}

// Presence rules of the Java client's parsers.
const (
	required  = iota // get(k).getAsX(): present and not null
	keyed            // get(k).isJsonNull() first: present, maybe null
	ifPresent        // has(k) then getAsX(): absent, or present and not null
	optional         // has(k) && !isJsonNull(): anything
)

// javaField is one field a parser reads: its presence rule and the Gson
// accessor it calls (string, long, int, double, bool, object, array).
type javaField struct {
	name, kind string
	rule       int
	// enum, if set, is the Java enum the value must name (Enum.valueOf).
	enum []string
}

// check reads the object's fields as the Java client does and reports what
// would throw.
func (o javaObject) check(t *testing.T, what string, fields ...javaField) {
	t.Helper()
	for _, p := range o.problems(fields...) {
		t.Errorf("%s: %s", what, p)
	}
}

func (o javaObject) problems(fields ...javaField) []string {
	var out []string
	for _, f := range fields {
		raw, present := o[f.name]
		isNull := present && string(raw) == "null"
		switch {
		case !present && (f.rule == required || f.rule == keyed):
			out = append(out, fmt.Sprintf("%q is missing (NullPointerException in the Java client)", f.name))
			continue
		case isNull && (f.rule == required || f.rule == ifPresent):
			out = append(out, fmt.Sprintf("%q is null (UnsupportedOperationException in the Java client)", f.name))
			continue
		case !present || isNull:
			continue
		}
		if err := gsonAccess(raw, f.kind); err != nil {
			out = append(out, fmt.Sprintf("%q = %s: %v", f.name, raw, err))
			continue
		}
		if len(f.enum) > 0 {
			var s string
			_ = json.Unmarshal(raw, &s)
			if !contains(f.enum, s) {
				out = append(out, fmt.Sprintf("%q = %s is not one of %v (IllegalArgumentException from Enum.valueOf)", f.name, raw, f.enum))
			}
		}
	}
	return out
}

// TestJavaFieldRules: the replay's reader refuses what the Java client's
// parsers cannot read.
func TestJavaFieldRules(t *testing.T) {
	for _, tc := range []struct {
		obj   string
		field javaField
		bad   bool
	}{
		{`{}`, javaField{"k", "string", required, nil}, true},
		{`{"k":null}`, javaField{"k", "string", required, nil}, true},
		{`{"k":null}`, javaField{"k", "string", keyed, nil}, false},
		{`{}`, javaField{"k", "string", keyed, nil}, true},
		{`{}`, javaField{"k", "string", ifPresent, nil}, false},
		{`{"k":null}`, javaField{"k", "string", ifPresent, nil}, true},
		{`{"k":null}`, javaField{"k", "string", optional, nil}, false},
		{`{"k":{"w":1}}`, javaField{"k", "string", optional, nil}, true}, // videoDimensions as an object
		{`{"k":"12"}`, javaField{"k", "long", required, nil}, false},
		{`{"k":"x"}`, javaField{"k", "long", required, nil}, true},
		{`{"k":[]}`, javaField{"k", "object", required, nil}, true},
		{`{"k":"VP9"}`, javaField{"k", "string", required, videoCodecs}, false},
		{`{"k":"AV1"}`, javaField{"k", "string", required, videoCodecs}, true},
	} {
		var o javaObject
		_ = json.Unmarshal([]byte(tc.obj), &o)
		if got := o.problems(tc.field); (len(got) > 0) != tc.bad {
			t.Errorf("%s with %+v: problems %v, want bad=%v", tc.obj, tc.field, got, tc.bad)
		}
	}
}

// gsonAccess reports whether Gson's getAsX for kind accepts the JSON value.
func gsonAccess(raw json.RawMessage, kind string) error {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return err
	}
	switch kind {
	case "string":
		switch v.(type) {
		case string, float64, bool:
			return nil
		}
	case "long", "int", "double":
		switch x := v.(type) {
		case float64:
			return nil
		case string:
			if _, err := strconv.ParseFloat(x, 64); err == nil {
				return nil
			}
		}
	case "bool":
		switch v.(type) {
		case bool, string:
			return nil
		}
	case "object":
		if _, ok := v.(map[string]any); ok {
			return nil
		}
	case "array":
		if _, ok := v.([]any); ok {
			return nil
		}
	}
	return fmt.Errorf("getAs%s fails on %T", kind, v)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

var (
	videoCodecs = []string{"MEDIA_SERVER_PREFERRED", "NONE", "VP8", "VP9", "H264"}

	// Session.resetWithJson.
	javaSession = []javaField{
		{"sessionId", "string", required, nil}, {"createdAt", "long", required, nil},
		{"recording", "bool", required, nil}, {"broadcasting", "bool", required, nil},
		{"mediaMode", "string", required, []string{"ROUTED", "RELAYED"}},
		{"recordingMode", "string", required, []string{"MANUAL", "ALWAYS"}},
		{"defaultRecordingProperties", "object", ifPresent, nil}, {"customSessionId", "string", ifPresent, nil},
		{"forcedVideoCodec", "string", ifPresent, videoCodecs}, {"allowTranscoding", "bool", ifPresent, nil},
		{"connections", "object", required, nil},
	}
	// Connection.resetWithJson, plus serverData and record, which later
	// calls (fetch's change detection, updateConnection) unbox.
	javaConnection = []javaField{
		{"connectionId", "string", required, nil}, {"status", "string", required, nil},
		{"token", "string", keyed, nil}, {"publishers", "array", keyed, nil}, {"subscribers", "array", keyed, nil},
		{"createdAt", "long", keyed, nil}, {"activeAt", "long", keyed, nil}, {"location", "string", keyed, nil},
		{"ip", "string", keyed, nil}, {"platform", "string", keyed, nil}, {"clientData", "string", keyed, nil},
		{"type", "string", required, []string{"WEBRTC", "IPCAM"}},
		{"serverData", "string", required, nil}, {"record", "bool", required, nil},
		{"role", "string", optional, []string{"SUBSCRIBER", "PUBLISHER", "MODERATOR"}},
		{"customIceServers", "array", optional, nil}, {"rtspUri", "string", optional, nil},
		{"adaptativeBitrate", "bool", optional, nil}, {"onlyPlayWithSubscribers", "bool", optional, nil},
		{"networkCache", "int", optional, nil},
	}
	// Publisher.resetWithJson.
	javaPublisher = []javaField{{"streamId", "string", required, nil}, {"createdAt", "long", required, nil}, {"mediaOptions", "object", optional, nil}}
	javaMedia     = []javaField{
		{"hasAudio", "bool", required, nil}, {"hasVideo", "bool", required, nil}, {"audioActive", "bool", optional, nil},
		{"videoActive", "bool", optional, nil}, {"frameRate", "int", optional, nil}, {"typeOfVideo", "string", optional, nil},
		{"videoDimensions", "string", optional, nil},
	}
)

// checkJavaSession checks a session object and every connection in it.
func checkJavaSession(t *testing.T, what string, s javaObject) []javaObject {
	t.Helper()
	s.check(t, what, javaSession...)
	var conns javaObject
	if err := json.Unmarshal(s["connections"], &conns); err != nil {
		t.Fatalf("%s: connections: %v", what, err)
	}
	conns.check(t, what+".connections", javaField{"content", "array", required, nil})
	var content []json.RawMessage
	_ = json.Unmarshal(conns["content"], &content)
	var out []javaObject
	for i, raw := range content {
		c := parseJavaObject(t, fmt.Sprintf("%s connection %d", what, i), raw)
		checkJavaConnection(t, fmt.Sprintf("%s connection %d", what, i), c)
		out = append(out, c)
	}
	return out
}

func checkJavaConnection(t *testing.T, what string, c javaObject) {
	t.Helper()
	c.check(t, what, javaConnection...)
	var pubs, subs []json.RawMessage
	_ = json.Unmarshal(c["publishers"], &pubs)
	_ = json.Unmarshal(c["subscribers"], &subs)
	for i, raw := range pubs {
		p := parseJavaObject(t, fmt.Sprintf("%s publisher %d", what, i), raw)
		p.check(t, fmt.Sprintf("%s publisher %d", what, i), javaPublisher...)
		if m, ok := p["mediaOptions"]; ok && string(m) != "null" {
			parseJavaObject(t, what+" mediaOptions", m).check(t, fmt.Sprintf("%s publisher %d mediaOptions", what, i), javaMedia...)
		}
	}
	for i, raw := range subs {
		parseJavaObject(t, fmt.Sprintf("%s subscriber %d", what, i), raw).check(t, fmt.Sprintf("%s subscriber %d", what, i), javaField{"streamId", "string", required, nil})
	}
}

// TestJavaClientExchanges walks openvidu-java-client's calls in the order an
// application makes them, with its exact request bodies.
func TestJavaClientExchanges(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := clustertest.Start(t, clustertest.Options{Masters: 1, MediaNodes: 1})
	base := c.MasterURLs[0]
	expect := func(method, path, body string, status int) []byte {
		t.Helper()
		got, raw := javaExchange(t, base, method, path, body)
		if got != status {
			t.Fatalf("%s %s: %d %s, the Java client accepts only %d", method, path, got, raw, status)
		}
		return raw
	}
	const defaultRecording = `{"name":"","hasAudio":true,"hasVideo":true,"outputMode":"COMPOSED","recordingLayout":"BEST_FIT","resolution":"1280x720","frameRate":25,"shmSize":536870912}`

	// OpenVidu.createSession() and createSession(properties).
	created := parseJavaObject(t, "createSession()", expect("POST", "openvidu/api/sessions",
		`{"mediaMode":"ROUTED","recordingMode":"MANUAL","defaultRecordingProperties":`+defaultRecording+`,"customSessionId":"","forcedVideoCodec":"MEDIA_SERVER_PREFERRED","allowTranscoding":false}`, 200))
	created.check(t, "createSession()", javaField{"id", "string", required, nil}, javaField{"createdAt", "long", required, nil},
		javaField{"forcedVideoCodec", "string", required, videoCodecs}, javaField{"allowTranscoding", "bool", required, nil})
	sid := "java_" + strconv.FormatInt(time.Now().UnixNano()%1e6, 10)
	body := `{"mediaMode":"ROUTED","recordingMode":"MANUAL","defaultRecordingProperties":` + defaultRecording +
		`,"customSessionId":"` + sid + `","forcedVideoCodec":"VP8","allowTranscoding":false}`
	expect("POST", "openvidu/api/sessions", body, 200)
	// The same id again: 409, on which the client fetches the session.
	expect("POST", "openvidu/api/sessions", body, 409)
	fetched := parseJavaObject(t, "Session.fetch()", expect("GET", "openvidu/api/sessions/"+sid+"?pendingConnections=true", "", 200))
	checkJavaSession(t, "Session.fetch()", fetched)

	// Session.createConnection() with no properties, and with some.
	conn := parseJavaObject(t, "createConnection()", expect("POST", "openvidu/api/sessions/"+sid+"/connection",
		`{"session":"`+sid+`","type":null,"data":"","record":true,"role":"PUBLISHER","kurentoOptions":null,"customIceServers":[],"rtspUri":null,"adaptativeBitrate":null,"onlyPlayWithSubscribers":null,"networkCache":null}`, 200))
	checkJavaConnection(t, "createConnection()", conn)
	var token, cid string
	_ = json.Unmarshal(conn["token"], &token)
	_ = json.Unmarshal(conn["connectionId"], &cid)
	sub := parseJavaObject(t, "createConnection(SUBSCRIBER, ICE servers)", expect("POST", "openvidu/api/sessions/"+sid+"/connection",
		`{"session":"`+sid+`","type":"WEBRTC","data":"viewer","record":false,"role":"SUBSCRIBER","kurentoOptions":{"videoMaxRecvBandwidth":1000},"customIceServers":[{"url":"turn:turn.example.org:3478","username":"u","credential":"p"}],"rtspUri":null,"adaptativeBitrate":null,"onlyPlayWithSubscribers":null,"networkCache":null}`, 200))
	checkJavaConnection(t, "createConnection(SUBSCRIBER)", sub)
	var subID string
	_ = json.Unmarshal(sub["connectionId"], &subID)

	// Session.generateToken() (deprecated): only "id" is read.
	tok := parseJavaObject(t, "generateToken()", expect("POST", "openvidu/api/tokens", `{"session":"`+sid+`","role":"PUBLISHER","data":""}`, 200))
	tok.check(t, "generateToken()", javaField{"id", "string", required, nil})
	tok = parseJavaObject(t, "generateToken(options)", expect("POST", "openvidu/api/tokens", `{"session":"`+sid+`","role":"PUBLISHER","data":null}`, 200))
	tok.check(t, "generateToken(options)", javaField{"id", "string", required, nil})

	// Session.updateConnection: PATCH answered 200 with a body (a 204 makes
	// the client throw).
	updated := parseJavaObject(t, "updateConnection", expect("PATCH", "openvidu/api/sessions/"+sid+"/connection/"+subID,
		`{"session":"`+sid+`","type":null,"data":null,"record":false,"role":"MODERATOR","kurentoOptions":null,"customIceServers":[],"rtspUri":null,"adaptativeBitrate":null,"onlyPlayWithSubscribers":null,"networkCache":null}`, 200))
	checkJavaConnection(t, "updateConnection", updated)

	// A participant joins and publishes with the first token: the fetched
	// objects now have publishers and active connections.
	p, err := participant.Join(ctx, participant.Config{Token: token, LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	pub, err := p.Publish(ctx, participant.PublishOptions{Audio: true, Video: true})
	if err != nil {
		t.Fatal(err)
	}
	list := parseJavaObject(t, "OpenVidu.fetch()", expect("GET", "openvidu/api/sessions?pendingConnections=true", "", 200))
	list.check(t, "OpenVidu.fetch()", javaField{"content", "array", required, nil})
	var sessions []json.RawMessage
	_ = json.Unmarshal(list["content"], &sessions)
	sawPublisher := false
	for i, raw := range sessions {
		for _, conn := range checkJavaSession(t, fmt.Sprintf("OpenVidu.fetch() session %d", i), parseJavaObject(t, "session", raw)) {
			var pubs []json.RawMessage
			_ = json.Unmarshal(conn["publishers"], &pubs)
			sawPublisher = sawPublisher || len(pubs) == 1 && strings.Contains(string(pubs[0]), pub.StreamID)
		}
	}
	if !sawPublisher {
		t.Errorf("OpenVidu.fetch() shows no publisher %s", pub.StreamID)
	}

	// Session.forceUnpublish, forceDisconnect (of the pending connection:
	// the participant's would close the session, as in OpenVidu) and close:
	// exactly 204.
	expect("DELETE", "openvidu/api/sessions/"+sid+"/stream/"+pub.StreamID, "", 204)
	expect("DELETE", "openvidu/api/sessions/"+sid+"/connection/"+subID, "", 204)
	expect("DELETE", "openvidu/api/sessions/"+sid, "", 204)
	var createdID string
	_ = json.Unmarshal(created["id"], &createdID)
	expect("DELETE", "openvidu/api/sessions/"+createdID, "", 204)

	// Ids go into URLs unescaped: every id Chorus makes is URL-safe.
	for _, id := range []string{createdID, cid, subID, pub.StreamID} {
		if !regexp.MustCompile(`^[A-Za-z0-9_-]+$`).MatchString(id) {
			t.Errorf("id %q needs escaping in a URL", id)
		}
	}
	c.AssertNoLeftovers(t)
}
