// Package media moves encoded media between files, pion tracks and
// recordings. It never encodes or decodes pictures or sound.
//
// Sending side (master):
//
//   - A [Source] produces timed samples, paced in real time: the embedded
//     test pattern and tone ([NewTestSource]), files ([OpenFile]: H.264
//     Annex-B, VP8 in IVF, Opus in Ogg, the H.264 track of an MP4; looped
//     by default), MP4 files with their H.264 and Opus tracks and their own
//     timing ([OpenMP4], with Eyevinn/mp4ff), RTSP cameras through a
//     supervised ffmpeg that copies the video and restarts with backoff
//     ([OpenRTSP]) and live H.264 Annex-B streams such as stdin
//     ([NewH264Stream]). A camera that changes resolution (a new SPS)
//     keeps playing: parameter sets travel in band, and a recording
//     decodes through the change.
//   - A [Broadcaster] fans one Source out to many viewer tracks. It keeps the
//     current GOP so a viewer that joins late starts on a keyframe (the GOP
//     is sent at once, with the source's frame spacing in its RTP
//     timestamps), and never sends a viewer a delta frame before its first
//     keyframe.
//
// For example, a test-pattern relay:
//
//	src, err := media.NewTestSource(rtc.CodecH264, media.SourceConfig{})
//	if err != nil {
//		return err
//	}
//	b := media.NewBroadcaster(src, media.BroadcasterConfig{Logger: logger})
//	go b.Run(ctx) // owned by the caller: cancel ctx and wait
//	// per viewer, once its PeerConnection is connected:
//	sub := b.Subscribe(track) // track is a *webrtc.TrackLocalStaticSample
//	defer sub.Unsubscribe()
//
// Receiving side (viewer):
//
//   - A [Receiver] reads RTP from a *webrtc.TrackRemote, rebuilds frames
//     ([Depacketizer]), keeps [Stats], reports the first keyframe and hands
//     frames to [Sink]s.
//   - Sinks: [MatroskaWriter] (.mkv with H.264 or VP8, .webm with VP8, each
//     optionally with Opus), [AnnexBWriter] (raw H.264 for `| ffplay -`),
//     [IVFWriter] (raw VP8), [FMP4Writer] (fragmented MP4, one fragment per
//     GOP: the emulated stream archive of WebRTC ingestion) and [Stats].
//
// For example, recording a video track:
//
//	rec, err := media.CreateMatroskaFile("out.mkv", media.MatroskaConfig{Video: rtc.CodecH264, Audio: true})
//	if err != nil {
//		return err
//	}
//	defer rec.Close() // finalises the file: duration and cues
//	r, err := media.NewReceiver(track, media.ReceiverConfig{Sinks: []media.Sink{rec}})
//	if err != nil {
//		return err
//	}
//	err = r.Run(ctx) // returns when the track ends
//
// Recordings take their times from the RTP timestamps. To line audio up
// with video by the sender's clock, pass each track's RTCP (from its
// *webrtc.RTPReceiver's ReadRTCP) to [Receiver.HandleRTCP]; without it
// the tracks are aligned by arrival time.
//
// Bitstream helpers ([ParseSPS], [AnnexBNALs], [AnnexBToAVC],
// [VP8FrameSize], [OpusPacketDuration]) are exported for tools and tests.
package media
