// Package capture writes the RTP of one published stream (VP8 or H.264 video,
// Opus audio) into a segment: the part of a recording that one recorder
// worker wrote continuously, from one RTP sender per track. A worker that
// dies leaves its segment unfinished; the worker that takes the stream over
// opens a new segment of the same take, and render concatenates them. A
// worker whose media node dies subscribes again: the new peer connection is
// another sender (another SSRC, ErrDiscontinuity), in a new segment too.
//
// Packets go through pion's sample builder (reordering, duplicates, loss:
// incomplete frames are dropped) and pion's writers: ivfwriter (VP8, one PTS
// per frame in 1/90000 s), h264writer (H.264 Annex-B) and oggwriter (Opus).
// Nothing here muxes or decodes media.
//
// # Working directory layout
//
// One recording owns a working directory (chosen by the control plane):
//
//	<work>/streams/<streamId>/<take>/<segmentId>/
//	    segment.json    the manifest (Manifest), rewritten atomically at every
//	                    checkpoint (Config.CheckpointInterval) and at Close
//	    video.ivf       VP8 frames, PTS = RTP timestamp - first RTP timestamp (1/90000 s)
//	    video.h264      H.264 Annex-B access units (pion's h264writer)
//	    video.h264.idx  one line per access unit of video.h264, appended after
//	                    the unit is written: "<rtp ticks since the first unit>
//	                    <byte offset> <1 if IDR else 0>" (Annex-B carries no time)
//	    audio.ogg       Opus packets, one per Ogg page; a gap in the RTP
//	                    timestamps is filled with empty Opus frames (RFC 6716
//	                    §3.2.1: the decoder conceals them), so that the Ogg
//	                    granule position stays equal to RTP time
//
// <take> counts from 0 the times this stream was started being recorded in
// this recording (OpenVidu's recording docs, "Selecting streams to be
// recorded": a stream recorded several times gives files suffixed -1, -2);
// a crash continues the same take in a new segment. Segment ids are unique
// within a take; Config.SegmentID lets the control plane pick them.
//
// # Time
//
// Every track maps its RTP timestamps to wall-clock time with the smallest
// observed (arrival time - RTP time) over all its packets: the packet that
// travelled fastest gives the best estimate of when the media was captured.
// A track records the Unix ms of its first written sample (StartedAt) and of
// the end of its last one (EndedAt), with the first and last RTP timestamps.
// Audio and video of a stream are aligned through these wall-clock times.
// A segment that was not closed (Closed false) ends at its last checkpoint.
//
// # Keyframes
//
// Video starts at a keyframe (VP8 key frame, H.264 IDR with SPS and PPS, the
// last ones seen being prepended when the IDR comes without them): samples
// before it are dropped. When it drops one that way, and after a loss (once
// the sample builder gave up waiting for the packet), the segment calls
// Config.RequestKeyframe, at most every Config.KeyframeRequestInterval; the
// caller sends a PLI to the publisher. NeedsKeyframe reports the wait.
// Padding-only packets are not losses.
package capture
