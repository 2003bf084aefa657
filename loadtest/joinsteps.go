package loadtest

import (
	"time"

	"github.com/chorus-rtc/chorus/sdk/participant"
)

// Join steps, in the order a participant that finds streams to subscribe
// to goes through them: the token's POST /connection (through the proxy),
// the WebSocket (upgraded through the proxy) and joinRoom, then any wait
// before its first subscription starts (none since the participant
// publishes and subscribes at once; its own publication when it published
// first), then that subscription's steps (participant.Step*) and its first
// RTP packet.
const (
	StepREST            = "rest"
	StepBeforeSubscribe = "before subscribe"
	StepFirstPacket     = "first packet"
)

// JoinSteps lists the steps of Result.JoinStepsMS in order.
func JoinSteps() []string {
	return []string{
		StepREST, participant.StepWebSocket, participant.StepJoinRoom, StepBeforeSubscribe,
		participant.StepPrepare, participant.StepGather, participant.StepReceiveVideo,
		participant.StepICE, participant.StepConnected, StepFirstPacket,
	}
}

// joinBreakdown returns how long each of m's join steps took after the one
// before (the first from the token), for the steps that ended. Called with
// m.mu held, once its first subscription received a packet.
func joinBreakdown(m *member) map[string]time.Duration {
	out := map[string]time.Duration{StepREST: m.restTook}
	prev := m.tokenAt
	add := func(name string, at time.Time) {
		if at.IsZero() || at.Before(prev) {
			return
		}
		out[name] = at.Sub(prev)
		prev = at
	}
	_, joined := m.p.JoinSteps().List()
	for _, st := range joined {
		add(st.Name, st.At)
	}
	if m.first == nil {
		return out
	}
	subStart, steps := m.first.Steps().List()
	add(StepBeforeSubscribe, subStart)
	for _, st := range steps {
		add(st.Name, st.At)
	}
	add(StepFirstPacket, m.first.Stats().FirstPacket)
	return out
}
