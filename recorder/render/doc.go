// Package render turns a recording's segments (package capture) into
// OpenVidu's output files with FFmpeg (the ffmpeg binary, run with
// exec.CommandContext; Debian's 5.1). The outputs are those of OpenVidu's
// recording docs:
//
//   - COMPOSED and COMPOSED_QUICK_START: <Name>.mp4, H.264 (libx264) and
//     AAC, at the recording's resolution and frame rate, the streams with
//     video in the BEST_FIT grid, the audio of every stream mixed; the
//     thumbnail <ID>.jpg is the frame in the middle. Audio-only: <Name>.webm
//     (Opus). Video-only: the MP4 without audio.
//   - INDIVIDUAL: <Name>.zip holding <Name>.json (SyncFile) and one file per
//     stream and take: <streamId>.webm (VP8 and Opus, copied), or
//     <streamId>.mkv when the video is H.264 (WebM cannot hold H.264;
//     Matroska, WebM's parent format, holds it and Opus without
//     re-encoding). A stream recorded several times gives <streamId>-1,
//     <streamId>-2...
//
// # Time
//
// The output's time 0 is the recording's CreatedAt and it ends at
// StoppedAt. Each track of each segment is placed at its wall-clock start
// (capture's StartedAt): video frames keep their RTP spacing (IVF PTS, or
// the H.264 index), and Opus audio is continuous in its Ogg (capture fills
// timestamp gaps), with the Ogg pre-skip accounted for. A COMPOSED output
// lasts exactly StoppedAt - CreatedAt: a black picture and silence carry
// it where nobody is on screen or speaking.
//
// # COMPOSED in one pass
//
// One FFmpeg run decodes every segment once: each video segment is split
// into one branch per interval of the recording where the set of streams
// on screen is constant, each branch trimmed to its interval (plus up to
// two seconds before it, so that the frame on screen when the layout
// changes is there), scaled to its tile and overlaid on the black picture
// for that interval only. Audio segments are trimmed, delayed to their
// start and mixed (amix, not normalized). Rendering interval by interval
// and concatenating would decode each segment again from its last
// keyframe for every interval, and WebRTC senders send keyframes rarely.
// Video inputs use -reinit_filter 0: a sender that changes resolution (at
// a keyframe) would otherwise make FFmpeg rebuild the whole graph, black
// picture included.
//
// A stream is on screen from the start of its take's first video segment
// to the end of its last one (BestFitLayout gives the tiles); takes are
// ordered by start.
//
// # Crash gaps
//
// A worker or media node that dies ends a segment; another worker
// continues the take in a new segment. The dead worker's files are used up
// to their last complete frame or page (past its last checkpoint). In
// between:
//
//   - COMPOSED: the stream keeps its tile, black, and its audio is silent;
//     the output's duration does not change.
//   - INDIVIDUAL: the segments are concatenated on their wall-clock time
//     (FFmpeg's concat demuxer, each segment lasting until the next one
//     starts): the file's timeline jumps over the gap, which has no media.
//     Players show the last frame before the gap, frozen, and play
//     silence; the file lasts EndTimeOffset - StartTimeOffset.
//
// The first 80 ms of each segment's audio are lost in COMPOSED (pion's
// Ogg pre-skip, which decoders drop), and in INDIVIDUAL for the first
// segment of a take.
//
// # Files
//
// Intermediate files live in a temporary directory (Config.TempDir)
// removed when Render returns; outputs are written under a temporary name
// in the output directory and renamed once complete. An error from FFmpeg
// is an *FFmpegError with the end of its error output.
package render
