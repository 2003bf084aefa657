package restapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/chorus-rtc/chorus/master/session"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

// body is a JSON request body as openvidu-server reads it: an object whose
// absent keys and null values mean the same thing.
type body map[string]json.RawMessage

// parseBody decodes a request body. An empty body is an empty object when
// optional is set (POST /sessions and POST /connection may come without one).
func parseBody(raw []byte, optional bool) (body, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		if optional {
			return body{}, nil
		}
		return nil, fmt.Errorf("Error in body parameters. Cannot be empty")
	}
	var b body
	if err := json.Unmarshal(raw, &b); err != nil || b == nil {
		return nil, fmt.Errorf("Error in body parameters. Not a valid JSON object")
	}
	return b, nil
}

// present reports whether key is set to something other than null.
func (b body) present(key string) bool {
	v, ok := b[key]
	return ok && string(v) != "null"
}

func (b body) string(key string) (*string, error) {
	if !b.present(key) {
		return nil, nil
	}
	var s string
	if err := json.Unmarshal(b[key], &s); err != nil {
		return nil, fmt.Errorf("'%s' must be a string, got %s", key, truncate(b[key]))
	}
	return &s, nil
}

func (b body) bool(key string) (*bool, error) {
	if !b.present(key) {
		return nil, nil
	}
	var v bool
	if err := json.Unmarshal(b[key], &v); err != nil {
		return nil, fmt.Errorf("'%s' must be a boolean, got %s", key, truncate(b[key]))
	}
	return &v, nil
}

func (b body) number(key string) (*float64, error) {
	if !b.present(key) {
		return nil, nil
	}
	var v float64
	if err := json.Unmarshal(b[key], &v); err != nil {
		return nil, fmt.Errorf("'%s' must be a number, got %s", key, truncate(b[key]))
	}
	return &v, nil
}

func (b body) object(key string) (body, error) {
	if !b.present(key) {
		return nil, nil
	}
	var o body
	if err := json.Unmarshal(b[key], &o); err != nil || o == nil {
		return nil, fmt.Errorf("not an object")
	}
	return o, nil
}

func truncate(raw json.RawMessage) string {
	if len(raw) > 40 {
		return string(raw[:40]) + "..."
	}
	return string(raw)
}

func enum(v *string, def string, allowed ...string) (string, bool) {
	if v == nil {
		return def, true
	}
	return *v, slices.Contains(allowed, *v)
}

var customSessionIDPattern = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)

// SessionPropertiesFromBody validates POST /openvidu/api/sessions's body and
// returns the normalised properties, or the message of OpenVidu's 400 (in
// openvidu-server's order of checks). Chorus forwards VP8 and H264 and never
// transcodes, so forcedVideoCodec VP9 is refused.
func SessionPropertiesFromBody(raw []byte) (store.SessionProperties, error) {
	var p store.SessionProperties
	b, err := parseBody(raw, true)
	if err != nil {
		return p, err
	}
	typeErr := func(err error) error { return fmt.Errorf("Type error in some parameter: %w", err) }
	mediaMode, err := b.string("mediaMode")
	if err != nil {
		return p, typeErr(err)
	}
	recordingMode, err := b.string("recordingMode")
	if err != nil {
		return p, typeErr(err)
	}
	customID, err := b.string("customSessionId")
	if err != nil {
		return p, typeErr(err)
	}
	codec, err := b.string("forcedVideoCodec")
	if err != nil {
		return p, typeErr(err)
	}
	transcoding, err := b.bool("allowTranscoding")
	if err != nil {
		return p, typeErr(err)
	}
	var ok bool
	if p.ForcedVideoCodec, ok = enum(codec, "", "MEDIA_SERVER_PREFERRED", "NONE", "VP8", "VP9", "H264"); !ok {
		return p, fmt.Errorf("Invalid value for parameter 'forcedVideoCodec': No enum constant io.openvidu.java.client.VideoCodec.%s", *codec)
	}
	if p.ForcedVideoCodec == "VP9" {
		return p, fmt.Errorf("Invalid value for parameter 'forcedVideoCodec': VP9 is not supported by this server (VP8 or H264)")
	}
	if p.RecordingMode, ok = enum(recordingMode, "MANUAL", "MANUAL", "ALWAYS"); !ok {
		return p, fmt.Errorf("Some parameter is not valid. No enum constant io.openvidu.java.client.RecordingMode.%s", *recordingMode)
	}
	if p.MediaMode, ok = enum(mediaMode, "ROUTED", "ROUTED", "RELAYED"); !ok {
		return p, fmt.Errorf("Some parameter is not valid. No enum constant io.openvidu.java.client.MediaMode.%s", *mediaMode)
	}
	if customID != nil && *customID != "" {
		if !customSessionIDPattern.MatchString(*customID) || len(*customID) > 256 {
			return p, fmt.Errorf("Some parameter is not valid. Parameter 'customSessionId' is wrong. Must be an alphanumeric string [a-zA-Z0-9_-]")
		}
		p.CustomSessionID = *customID
	}
	if transcoding != nil {
		p.AllowTranscoding = *transcoding
	}
	if b.present("defaultRecordingProperties") {
		rec, err := b.object("defaultRecordingProperties")
		if err != nil {
			return p, fmt.Errorf("Some parameter is not valid. Error in parameter 'defaultRecordingProperties'. It is not a valid JSON object")
		}
		if p.DefaultRecordingProperties, err = recordingProperties(rec); err != nil {
			return p, fmt.Errorf("Some parameter is not valid. Parameter 'defaultRecordingProperties' is not valid: %w", err)
		}
	}
	if b.present("mediaNode") {
		node, err := b.object("mediaNode")
		if err != nil {
			return p, fmt.Errorf("Some parameter is not valid. Error in parameter 'mediaNode'. It is not a valid JSON object")
		}
		if !node.present("id") {
			return p, fmt.Errorf("Some parameter is not valid. Error in parameter 'mediaNode'. Property 'id' not found")
		}
		id, err := node.string("id")
		if err != nil {
			return p, fmt.Errorf("Some parameter is not valid. Type error in parameter 'mediaNode.id': not a String")
		}
		p.MediaNodeRequested = *id
	}
	return p, nil
}

var resolutionPattern = regexp.MustCompile(`^(?:[1-9][0-9]{2}|1[0-9]{3})x(?:[1-9][0-9]{2}|1[0-9]{3})$`)

// recordingProperties normalises a defaultRecordingProperties object onto
// OpenVidu's defaults and renders it with OpenVidu's conditional keys.
func recordingProperties(b body) (json.RawMessage, error) {
	name, err := b.string("name")
	if err != nil {
		return nil, err
	}
	hasAudio, err := b.bool("hasAudio")
	if err != nil {
		return nil, err
	}
	hasVideo, err := b.bool("hasVideo")
	if err != nil {
		return nil, err
	}
	outputMode, err := b.string("outputMode")
	if err != nil {
		return nil, err
	}
	layout, err := b.string("recordingLayout")
	if err != nil {
		return nil, err
	}
	customLayout, err := b.string("customLayout")
	if err != nil {
		return nil, err
	}
	resolution, err := b.string("resolution")
	if err != nil {
		return nil, err
	}
	frameRate, err := b.number("frameRate")
	if err != nil {
		return nil, err
	}
	shmSize, err := b.number("shmSize")
	if err != nil {
		return nil, err
	}
	ignoreFailed, err := b.bool("ignoreFailedStreams")
	if err != nil {
		return nil, err
	}
	out := protocol.Object{}
	nm := ""
	if name != nil {
		nm = *name
	}
	audio, video := hasAudio == nil || *hasAudio, hasVideo == nil || *hasVideo
	if !audio && !video {
		return nil, fmt.Errorf(`Cannot start a recording with both "hasAudio" and "hasVideo" set to false`)
	}
	mode, ok := enum(outputMode, "COMPOSED", "COMPOSED", "INDIVIDUAL", "COMPOSED_QUICK_START")
	if !ok {
		return nil, fmt.Errorf("Type error in parameter 'outputMode'")
	}
	out = out.With("name", nm).With("hasAudio", audio).With("hasVideo", video).With("outputMode", mode)
	if mode != "INDIVIDUAL" && video {
		lay, ok := enum(layout, "BEST_FIT", "BEST_FIT", "PICTURE_IN_PICTURE", "VERTICAL_PRESENTATION", "HORIZONTAL_PRESENTATION", "CUSTOM")
		if !ok {
			return nil, fmt.Errorf("Type error in parameter 'recordingLayout'")
		}
		res := "1280x720"
		if resolution != nil {
			if !resolutionPattern.MatchString(*resolution) {
				return nil, fmt.Errorf("Wrong 'resolution' parameter. Acceptable values from 100 to 1999 for both width and height")
			}
			res = *resolution
		}
		fr := 25
		if frameRate != nil {
			if *frameRate < 1 || *frameRate > 120 {
				return nil, fmt.Errorf("Wrong 'frameRate' parameter. Acceptable values are within range [1,120]")
			}
			fr = int(*frameRate)
		}
		shm := int64(536870912)
		if shmSize != nil {
			if *shmSize < 134217728 {
				return nil, fmt.Errorf("Wrong 'shmSize' parameter. Must be 134217728 (128 MB) minimum")
			}
			shm = int64(*shmSize)
		}
		out = out.With("recordingLayout", lay).With("resolution", res).With("frameRate", fr).With("shmSize", shm)
		if lay == "CUSTOM" {
			cl := ""
			if customLayout != nil {
				cl = *customLayout
			}
			out = out.With("customLayout", cl)
		}
	}
	if mode == "INDIVIDUAL" {
		out = out.With("ignoreFailedStreams", ignoreFailed != nil && *ignoreFailed)
	}
	return json.Marshal(out)
}

// NotSupportedError marks a request for something Chorus deliberately does not
// do (IP cameras): the REST layer answers 501.
type NotSupportedError struct{ Message string }

func (e NotSupportedError) Error() string { return e.Message }

// ConnectionPropertiesFromBody validates POST /sessions/{id}/connection's (and
// POST /tokens') body, in openvidu-server's order of checks.
func ConnectionPropertiesFromBody(b body) (session.ConnectionProperties, error) {
	p := session.ConnectionProperties{Type: "WEBRTC", Role: protocol.RolePublisher, Record: true}
	typ, err := b.string("type")
	if err != nil {
		return p, fmt.Errorf("Type error in some parameter: %w", err)
	}
	if typ != nil {
		switch *typ {
		case "WEBRTC":
		case "IPCAM":
			return p, NotSupportedError{"Connections of type IPCAM are not supported by this server"}
		default:
			return p, fmt.Errorf("Parameter 'type' %s is not defined", *typ)
		}
	}
	data, err := b.string("data")
	if err != nil {
		return p, fmt.Errorf("Type error in some parameter: %w", err)
	}
	if data != nil {
		p.Data = *data
	}
	role, err := b.string("role")
	if err != nil {
		return p, fmt.Errorf("Type error in parameter 'role': %w", err)
	}
	if role != nil {
		if !slices.Contains([]string{protocol.RoleSubscriber, protocol.RolePublisher, protocol.RoleModerator}, *role) {
			return p, fmt.Errorf("Parameter role %s is not defined", *role)
		}
		p.Role = *role
	}
	if b.present("kurentoOptions") {
		ko, err := b.object("kurentoOptions")
		if err != nil {
			return p, fmt.Errorf("Error in parameter 'kurentoOptions'. It is not a valid JSON object")
		}
		if p.KurentoOptions, err = kurentoOptions(ko); err != nil {
			return p, fmt.Errorf("Type error in some parameter of 'kurentoOptions': %w", err)
		}
	}
	if b.present("customIceServers") {
		var servers []body
		if err := json.Unmarshal(b["customIceServers"], &servers); err != nil {
			return p, fmt.Errorf("Error in parameter 'customIceServersJson'. It is not a valid JSON object")
		}
		if p.CustomIceServers, err = iceServers(servers); err != nil {
			return p, fmt.Errorf("Type error in some parameter of 'customIceServers': %w", err)
		}
	}
	record, err := b.bool("record")
	if err != nil {
		return p, fmt.Errorf("Type error in parameter 'record': %w", err)
	}
	if record != nil {
		p.Record = *record
	}
	return p, nil
}

// kurentoOptions keeps the known keys of a kurentoOptions object: the four
// bandwidths (integers) and allowedFilters (strings).
func kurentoOptions(b body) (json.RawMessage, error) {
	out := map[string]any{}
	for _, k := range []string{"videoMaxRecvBandwidth", "videoMinRecvBandwidth", "videoMaxSendBandwidth", "videoMinSendBandwidth"} {
		n, err := b.number(k)
		if err != nil {
			return nil, err
		}
		if n != nil {
			out[k] = int(*n)
		}
	}
	if b.present("allowedFilters") {
		var filters []string
		if err := json.Unmarshal(b["allowedFilters"], &filters); err != nil {
			return nil, fmt.Errorf("Not a JSON Array: %s", truncate(b["allowedFilters"]))
		}
		if len(filters) > 0 {
			out["allowedFilters"] = filters
		}
	}
	return json.Marshal(out)
}

// iceServers validates custom ICE servers: {url, username?, credential?}.
func iceServers(servers []body) (json.RawMessage, error) {
	type server struct {
		URL        string `json:"url"`
		Username   string `json:"username,omitempty"`
		Credential string `json:"credential,omitempty"`
	}
	out := []server{}
	for _, s := range servers {
		if s == nil {
			return nil, fmt.Errorf("External turn url cannot be null")
		}
		u, err := s.string("url")
		if err != nil {
			return nil, err
		}
		if u == nil {
			return nil, fmt.Errorf("External turn url cannot be null")
		}
		scheme, rest, ok := strings.Cut(*u, ":")
		if !ok {
			return nil, fmt.Errorf("Not a valid TURN/STUN uri provided. No colons found in: '%s'", *u)
		}
		user, err := s.string("username")
		if err != nil {
			return nil, err
		}
		cred, err := s.string("credential")
		if err != nil {
			return nil, err
		}
		hasCreds := user != nil && *user != "" && cred != nil && *cred != ""
		switch scheme {
		case "turn", "turns":
			if !hasCreds {
				return nil, fmt.Errorf("Credentials must be defined while using turn")
			}
		case "stun", "stuns":
			if user != nil || cred != nil {
				return nil, fmt.Errorf("Credentials can not be defined while using stun.")
			}
			if strings.Contains(rest, "?") {
				return nil, fmt.Errorf("STUN uri can't have any '?' query param")
			}
		default:
			return nil, fmt.Errorf("The protocol '%s' is invalid. Only valid values are: [turn, turns] [stun, stuns]", scheme)
		}
		host := strings.SplitN(strings.SplitN(rest, "?", 2)[0], ":", 2)[0]
		if host == "" {
			return nil, fmt.Errorf("Host defined in '%s' is empty or null", *u)
		}
		sv := server{URL: *u}
		if hasCreds {
			sv.Username, sv.Credential = *user, *cred
		}
		out = append(out, sv)
	}
	return json.Marshal(out)
}
