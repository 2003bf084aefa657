package session

import (
	"encoding/json"
	"sort"

	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

var emptyObject = json.RawMessage("{}")

// RenderSession builds OpenVidu's Session object. Pending connections are
// listed only when withPending is set (GET ...?pendingConnections=true).
func RenderSession(snap *store.Snapshot, withPending bool) protocol.Session {
	s := snap.Session
	p := s.Properties
	out := protocol.Session{
		ID: string(s.ID), Object: "session", SessionID: string(s.ID), CreatedAt: s.CreatedAt,
		MediaMode: p.MediaMode, RecordingMode: p.RecordingMode,
		DefaultRecordingProperties: p.DefaultRecordingProperties,
		CustomSessionID:            p.CustomSessionID,
		ForcedVideoCodec:           p.ForcedVideoCodec,
		AllowTranscoding:           p.AllowTranscoding,
		Recording:                  s.Recording != "",
		Connections:                RenderConnections(snap, withPending),
	}
	if len(out.DefaultRecordingProperties) == 0 {
		out.DefaultRecordingProperties = DefaultRecordingProperties()
	}
	if p.MediaNodeRequested != "" {
		out.MediaNode = &protocol.MediaNodeRef{ID: p.MediaNodeRequested}
	}
	if s.ActivatedAt != 0 {
		out.MediaNodeID = string(s.MediaNodeID)
	}
	return out
}

// RenderConnections lists a session's connections: active participants first
// (by join time), then, with withPending, unused tokens.
func RenderConnections(snap *store.Snapshot, withPending bool) protocol.Connections {
	out := protocol.Connections{Content: []protocol.Connection{}}
	conns := snap.SortedConns()
	for _, c := range participants(conns) {
		out.Content = append(out.Content, RenderConnection(snap, c))
	}
	if withPending {
		for _, c := range conns {
			if !c.Active() && !c.Recorder {
				out.Content = append(out.Content, RenderConnection(snap, c))
			}
		}
	}
	out.NumberOfElements = len(out.Content)
	return out
}

// RenderConnection builds OpenVidu's Connection object.
func RenderConnection(snap *store.Snapshot, c *store.Connection) protocol.Connection {
	out := protocol.Connection{
		ID: string(c.ID), Object: "connection", Status: c.Status, ConnectionID: string(c.ID), SessionID: string(c.SessionID),
		CreatedAt: c.CreatedAt, Type: c.Type, Record: c.Record, Role: c.Role,
		KurentoOptions: c.KurentoOptions, CustomIceServers: c.CustomIceServers,
		ServerData: c.ServerData, Token: c.Token,
	}
	if len(out.KurentoOptions) == 0 {
		out.KurentoOptions = json.RawMessage("null")
	}
	if len(out.CustomIceServers) == 0 {
		out.CustomIceServers = json.RawMessage("[]")
	}
	if !c.Active() {
		return out
	}
	activeAt, location, ip, platform, clientData := c.ActiveAt, c.Location, c.IP, c.Platform, c.ClientData
	out.ActiveAt, out.Location, out.IP, out.Platform, out.ClientData = &activeAt, &location, &ip, &platform, &clientData
	out.Publishers = []protocol.Publisher{}
	out.Subscribers = []protocol.Subscriber{}
	if p := c.Publisher; p != nil && p.Live() {
		out.Publishers = append(out.Publishers, protocol.Publisher{
			CreatedAt: p.CreatedAt, StreamID: string(p.StreamID), MediaOptions: renderMediaOptions(p.MediaOptions),
		})
	}
	for _, sub := range sortedSubscriptions(c) {
		if sub.Live() {
			out.Subscribers = append(out.Subscribers, protocol.Subscriber{CreatedAt: sub.CreatedAt, StreamID: string(sub.StreamID)})
		}
	}
	return out
}

func renderMediaOptions(m store.MediaOptions) protocol.MediaOptions {
	out := protocol.MediaOptions{HasAudio: m.HasAudio, HasVideo: m.HasVideo, Filter: m.Filter}
	if m.HasAudio {
		a := m.AudioActive
		out.AudioActive = &a
	}
	if m.HasVideo {
		v, t, f, d := m.VideoActive, m.TypeOfVideo, m.FrameRate, m.VideoDimensions
		out.VideoActive, out.TypeOfVideo, out.FrameRate, out.VideoDimensions = &v, &t, &f, &d
	}
	if len(out.Filter) == 0 {
		out.Filter = emptyObject
	}
	return out
}

// RenderStream describes a published stream to other participants.
func RenderStream(p *store.Publisher) protocol.Stream {
	m := p.MediaOptions
	s := protocol.Stream{
		ID: string(p.StreamID), CreatedAt: p.CreatedAt,
		HasAudio: m.HasAudio, HasVideo: m.HasVideo, AudioActive: m.AudioActive, VideoActive: m.VideoActive,
		TypeOfVideo: m.TypeOfVideo, FrameRate: m.FrameRate, VideoDimensions: m.VideoDimensions, Filter: m.Filter,
	}
	if len(s.Filter) == 0 {
		s.Filter = emptyObject
	}
	return s
}

// RenderRemote describes a participant to the others (joinRoom's value[],
// participantJoined, participantPublished).
func RenderRemote(c *store.Connection, withStreams bool) protocol.RemoteConnection {
	md := Metadata(c)
	r := protocol.RemoteConnection{ID: string(c.ID), CreatedAt: c.ActiveAt, Metadata: &md}
	if withStreams && c.Publisher != nil && c.Publisher.Live() {
		r.Streams = []protocol.Stream{RenderStream(c.Publisher)}
	}
	return r
}

// Metadata is OpenVidu's "full metadata" of a participant: client data,
// server data, or both joined by "%/%".
func Metadata(c *store.Connection) string {
	switch {
	case c.ClientData != "" && c.ServerData != "":
		return c.ClientData + "%/%" + c.ServerData
	case c.ClientData != "":
		return c.ClientData
	default:
		return c.ServerData
	}
}

// DefaultRecordingProperties is OpenVidu's default for a session's
// defaultRecordingProperties.
func DefaultRecordingProperties() json.RawMessage {
	return json.RawMessage(`{"name":"","hasAudio":true,"hasVideo":true,"outputMode":"COMPOSED","recordingLayout":"BEST_FIT","resolution":"1280x720","frameRate":25,"shmSize":536870912}`)
}

func sortedSubscriptions(c *store.Connection) []*store.Subscription {
	out := make([]*store.Subscription, 0, len(c.Subscriptions))
	for _, s := range c.Subscriptions {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].CreatedAt != out[j].CreatedAt {
			return out[i].CreatedAt < out[j].CreatedAt
		}
		return out[i].StreamID < out[j].StreamID
	})
	return out
}
