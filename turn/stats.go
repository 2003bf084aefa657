package turn

import "sync/atomic"

// Stats are the server's counters, updated atomically while it runs, for the
// caller to export (e.g. as Prometheus metrics). Read them with Load; the
// server is their only writer. All counts are since New, except
// AllocationsActive, a gauge.
type Stats struct {
	// AllocationsActive is the number of allocations alive now.
	AllocationsActive atomic.Int64
	// Allocations counts allocations created.
	Allocations atomic.Uint64
	// RelayedPackets and RelayedBytes count datagrams (and their payload
	// bytes, without TURN framing) relayed between clients and peers, both
	// directions.
	RelayedPackets atomic.Uint64
	RelayedBytes   atomic.Uint64
	// DroppedByFilter counts datagrams dropped because their peer (IP and
	// port) is not an allowed peer, in either direction.
	DroppedByFilter atomic.Uint64
	// DroppedByBandwidth counts datagrams dropped because their allocation
	// was over MaxBitsPerSecondPerAllocation in that direction.
	DroppedByBandwidth atomic.Uint64
	// AuthFailures counts authenticated requests refused: malformed or
	// expired usernames, unknown realms and wrong MESSAGE-INTEGRITY.
	AuthFailures atomic.Uint64
	// PermissionDenials counts CreatePermission, ChannelBind and Connect
	// peers refused because their IP is not an allowed peer's (403, or 401
	// for ChannelBind as pion answers it).
	PermissionDenials atomic.Uint64
	// QuotaRejections counts Allocate requests refused with 486 (Allocation
	// Quota Reached).
	QuotaRejections atomic.Uint64
}
