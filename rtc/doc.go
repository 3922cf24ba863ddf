// Package rtc is the one place in kvsrtc that configures pion/webrtc.
//
// [NewAPI] builds a *webrtc.API with the codecs KVS WebRTC peers use (H.264
// in the profiles browsers offer, VP8 and Opus), pion's default interceptors
// (NACK, RTCP sender/receiver reports, TWCC) and a SettingEngine whose
// logging goes to a *slog.Logger. With Config.LoopbackOnly the agent gathers
// only 127.0.0.1 host candidates over UDP4 and never touches mDNS, which is
// what every test in this module uses:
//
//	api, err := rtc.NewAPI(rtc.Config{LoopbackOnly: true, Logger: logger, Audio: true})
//	if err != nil {
//		return err
//	}
//	pc, err := api.NewPeerConnection(webrtc.Configuration{})
//
// Nothing else in kvsrtc constructs a MediaEngine or SettingEngine.
package rtc
