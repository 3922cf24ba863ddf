// Package storage runs the media side of emulated KVS storage sessions
// (WebRTC ingestion and Multiviewer) for the emulator: it implements
// [emulator.StorageMedia].
//
// A storage session belongs to a signaling channel whose media storage
// configuration links it to a stream. As the service does, the session is
// always the offerer: after the master's JoinStorageSession it sends the
// master, over the master's own signaling connection, an SDP offer with
// video to receive (H.264) and audio both ways (Opus); after a viewer's
// JoinStorageSessionAsViewer it sends that viewer an offer with video to
// send and audio both ways. The camera's media arrives once and is
//
//   - forwarded to every viewer through [media.Broadcaster], the same
//     fan-out engine the relay of kvsrtc serve uses (a joining viewer
//     starts from the cached GOP, or the camera is asked for a keyframe);
//   - recorded into the linked stream as fragmented MP4, one fragment per
//     GOP ([emulator.StorageParticipant.Record]);
//
// and the viewers' audio goes back to the camera, one talker at a time
// (the service mixes it; this emulation forwards the current talker
// without decoding, see docs/EMULATOR.md).
//
// A participant's signaling connection may close and come back (renewal,
// GO_AWAY) while its peer connection lives on: only a re-join replaces a
// link, and a link ends when its connection fails, closes, or does not
// connect within Config.ConnectTimeout.
package storage
