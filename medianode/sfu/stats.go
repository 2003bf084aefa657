package sfu

import "sync/atomic"

// Stats are the SFU's cumulative counters, read by the node's metrics
// endpoint and by the load tester.
type Stats struct {
	ReceivedPackets  atomic.Uint64 // RTP packets received from publishers
	ReceivedBytes    atomic.Uint64
	ForwardedPackets atomic.Uint64 // RTP packets written to subscribers (one per subscriber)
	ForwardedBytes   atomic.Uint64
	Retransmissions  atomic.Uint64 // packets resent from the retransmission buffer on a NACK
	NACKMisses       atomic.Uint64 // NACKed packets no longer in the buffer
	KeyframeRequests atomic.Uint64 // PLIs sent to publishers
	MalformedPackets atomic.Uint64
	WriteErrors      atomic.Uint64
	PaddingPackets   atomic.Uint64 // padding-only packets sent to subscribers (bandwidth probes)
	Probes           atomic.Uint64 // bandwidth probes started by simulcast subscriptions
	ProbesFailed     atomic.Uint64 // probes the path did not carry (queueing, loss)
	PublisherREMBs   atomic.Uint64 // REMBs sent to simulcast publishers (layerCap)
	// LayersCapped is the number of simulcast layers the node now tells
	// their publishers not to send, no subscriber needing them.
	LayersCapped atomic.Int64
}
