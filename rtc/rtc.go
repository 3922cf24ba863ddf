package rtc

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/transport/v5"
	"github.com/pion/webrtc/v4"
)

// ErrInvalidConfig is wrapped by every error [NewAPI] returns for a bad [Config].
var ErrInvalidConfig = errors.New("rtc: invalid config")

// ErrUnknownCodec is wrapped by [ParseCodec] for a name it does not know.
var ErrUnknownCodec = errors.New("rtc: unknown codec")

// Codec names a codec kvsrtc can send and receive.
type Codec string

// The codecs kvsrtc negotiates.
const (
	CodecH264 Codec = "H264"
	CodecVP8  Codec = "VP8"
	CodecOpus Codec = "opus"
)

// String returns the codec's canonical name ("H264", "VP8", "opus").
func (c Codec) String() string { return string(c) }

// MimeType returns the codec's RTP mime type (for example "video/H264").
// It returns "" for an unknown codec.
func (c Codec) MimeType() string {
	switch c {
	case CodecH264:
		return webrtc.MimeTypeH264
	case CodecVP8:
		return webrtc.MimeTypeVP8
	case CodecOpus:
		return webrtc.MimeTypeOpus
	}
	return ""
}

// Kind returns the codec's media kind (video or audio); 0 for an unknown codec.
func (c Codec) Kind() webrtc.RTPCodecType {
	switch c {
	case CodecH264, CodecVP8:
		return webrtc.RTPCodecTypeVideo
	case CodecOpus:
		return webrtc.RTPCodecTypeAudio
	}
	return 0
}

// ParseCodec parses a codec name or mime type, case-insensitively:
// "h264", "H264", "video/H264", "avc" -> CodecH264; "vp8", "video/VP8" ->
// CodecVP8; "opus", "audio/opus" -> CodecOpus.
func ParseCodec(s string) (Codec, error) {
	name := strings.TrimSpace(s)
	if i := strings.IndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	switch strings.ToLower(name) {
	case "h264", "h.264", "avc":
		return CodecH264, nil
	case "vp8":
		return CodecVP8, nil
	case "opus":
		return CodecOpus, nil
	}
	return "", fmt.Errorf("%w %q (supported: H264, VP8, opus)", ErrUnknownCodec, s)
}

// SDP fmtp lines of the codecs kvsrtc sends. Local tracks should use
// [Capability], which carries them.
const (
	// H264FmtpLine is constrained baseline, level 3.1, non-interleaved
	// packetization: what the KVS SDKs and browsers send by default.
	H264FmtpLine = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
	// OpusFmtpLine is the usual WebRTC Opus fmtp.
	OpusFmtpLine = "minptime=10;useinbandfec=1"
)

// Capability returns the RTP codec capability to create a local track for c
// with (clock rate, channels and fmtp as registered by [NewAPI]).
func Capability(c Codec) (webrtc.RTPCodecCapability, error) {
	switch c {
	case CodecH264:
		return webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: H264FmtpLine}, nil
	case CodecVP8:
		return webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, nil
	case CodecOpus:
		return webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: OpusFmtpLine}, nil
	}
	return webrtc.RTPCodecCapability{}, fmt.Errorf("%w %q", ErrUnknownCodec, string(c))
}

// Config configures the *webrtc.API built by [NewAPI]. The zero value works:
// both video codecs (H.264 preferred), no audio, all interfaces, pion's
// default ports, logs discarded.
type Config struct {
	// LoopbackOnly makes ICE gather only loopback host candidates
	// (127.0.0.1, UDP4) and disables mDNS. Required in tests.
	LoopbackOnly bool

	// Logger receives pion's logs (component=<pion scope>). nil discards them.
	Logger *slog.Logger

	// VideoCodecs lists the video codecs to negotiate, in order of preference:
	// "H264" and/or "VP8" (any spelling ParseCodec accepts). nil or empty
	// means both, H.264 first.
	VideoCodecs []string

	// Audio registers Opus. Without it audio m-lines are rejected.
	Audio bool

	// ICEPortMin and ICEPortMax restrict the local UDP ports ICE uses.
	// Both zero means any port; otherwise both must be set and Min <= Max.
	ICEPortMin, ICEPortMax uint16

	// Net replaces the network stack ICE uses (nil: the operating
	// system's). Tests use it to make paths unreachable, for example a
	// filter that lets only TURN traffic through.
	Net transport.Net

	// TURNRootCAs verifies the certificates of TLS TURN servers (turns:
	// URIs over TCP); nil means the system roots. Peers of a service
	// trusted through AWS_CA_BUNDLE (kvsrtc local) need that pool:
	// [RootCAs] of the HTTP client. Pass ICE servers through [ICEServers].
	TURNRootCAs *x509.CertPool
}

// videoCodecs returns the validated, de-duplicated codec list.
func (c Config) videoCodecs() ([]Codec, error) {
	if len(c.VideoCodecs) == 0 {
		return []Codec{CodecH264, CodecVP8}, nil
	}
	out := make([]Codec, 0, len(c.VideoCodecs))
	for i, s := range c.VideoCodecs {
		codec, err := ParseCodec(s)
		if err != nil {
			return nil, fmt.Errorf("%w: VideoCodecs[%d]: %w", ErrInvalidConfig, i, err)
		}
		if codec.Kind() != webrtc.RTPCodecTypeVideo {
			return nil, fmt.Errorf("%w: VideoCodecs[%d] %q is not a video codec (use H264 or VP8; set Audio for opus)", ErrInvalidConfig, i, s)
		}
		dup := false
		for _, o := range out {
			dup = dup || o == codec
		}
		if !dup {
			out = append(out, codec)
		}
	}
	return out, nil
}

func (c Config) validatePorts() error {
	switch {
	case c.ICEPortMin == 0 && c.ICEPortMax == 0:
		return nil
	case c.ICEPortMin == 0 || c.ICEPortMax == 0:
		return fmt.Errorf("%w: set both ICEPortMin and ICEPortMax (got %d-%d)", ErrInvalidConfig, c.ICEPortMin, c.ICEPortMax)
	case c.ICEPortMin > c.ICEPortMax:
		return fmt.Errorf("%w: ICEPortMin %d is above ICEPortMax %d", ErrInvalidConfig, c.ICEPortMin, c.ICEPortMax)
	}
	return nil
}

// Payload types. Values follow what browsers commonly use so SDP stays
// familiar; they only need to be unique within one MediaEngine.
const (
	ptVP8         = 96
	ptH264CB      = 102 // 42e01f constrained baseline
	ptH264B       = 104 // 42001f baseline
	ptH264Main    = 106 // 4d001f main
	ptH264HighC   = 108 // 640c1f constrained high
	ptOpus        = 111
	h264FmtpTmpl  = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id="
	videoClock    = 90000
	opusClockRate = 48000
)

func videoFeedback() []webrtc.RTCPFeedback {
	return []webrtc.RTCPFeedback{
		{Type: "ccm", Parameter: "fir"},
		{Type: "nack"},
		{Type: "nack", Parameter: "pli"},
	}
}

func registerCodecs(m *webrtc.MediaEngine, video []Codec, audio bool) error {
	var params []webrtc.RTPCodecParameters
	for _, c := range video {
		switch c {
		case CodecH264:
			for _, v := range []struct {
				pt      webrtc.PayloadType
				profile string
			}{{ptH264CB, "42e01f"}, {ptH264B, "42001f"}, {ptH264Main, "4d001f"}, {ptH264HighC, "640c1f"}} {
				params = append(params, webrtc.RTPCodecParameters{
					RTPCodecCapability: webrtc.RTPCodecCapability{
						MimeType: webrtc.MimeTypeH264, ClockRate: videoClock,
						SDPFmtpLine: h264FmtpTmpl + v.profile, RTCPFeedback: videoFeedback(),
					},
					PayloadType: v.pt,
				})
			}
		case CodecVP8:
			params = append(params, webrtc.RTPCodecParameters{
				RTPCodecCapability: webrtc.RTPCodecCapability{
					MimeType: webrtc.MimeTypeVP8, ClockRate: videoClock, RTCPFeedback: videoFeedback(),
				},
				PayloadType: ptVP8,
			})
		}
	}
	for _, p := range params {
		if err := m.RegisterCodec(p, webrtc.RTPCodecTypeVideo); err != nil {
			return fmt.Errorf("rtc: register %s: %w", p.MimeType, err)
		}
	}
	if audio {
		opus := webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{
				MimeType: webrtc.MimeTypeOpus, ClockRate: opusClockRate, Channels: 2, SDPFmtpLine: OpusFmtpLine,
			},
			PayloadType: ptOpus,
		}
		if err := m.RegisterCodec(opus, webrtc.RTPCodecTypeAudio); err != nil {
			return fmt.Errorf("rtc: register opus: %w", err)
		}
	}
	return nil
}

// isLoopbackInterface reports whether the named interface is a loopback one.
func isLoopbackInterface(name string) bool {
	iface, err := net.InterfaceByName(name)
	if err != nil {
		return false
	}
	return iface.Flags&net.FlagLoopback != 0
}

// NewAPI builds a *webrtc.API from cfg: a MediaEngine with the configured
// codecs, pion's default interceptors (NACK, RTCP reports, stats, TWCC) and
// a SettingEngine with pion's logs bridged to cfg.Logger. Every returned
// error wraps [ErrInvalidConfig] when cfg is at fault.
func NewAPI(cfg Config) (*webrtc.API, error) {
	video, err := cfg.videoCodecs()
	if err != nil {
		return nil, err
	}
	if err := cfg.validatePorts(); err != nil {
		return nil, err
	}

	lf := NewLoggerFactory(cfg.Logger)

	m := &webrtc.MediaEngine{}
	if err := registerCodecs(m, video, cfg.Audio); err != nil {
		return nil, err
	}

	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptorsWithOptions(m, ir, webrtc.WithInterceptorLoggerFactory(lf)); err != nil {
		return nil, fmt.Errorf("rtc: register interceptors: %w", err)
	}

	se := webrtc.SettingEngine{LoggerFactory: lf}
	// The first working path wins. pion's defaults hold back the
	// nomination of server-reflexive (0.5 s), peer-reflexive (1 s) and
	// relay (2 s) pairs, in case a better pair succeeds meanwhile; and its
	// relay-only default of 0 never takes effect through webrtc (the
	// candidate types are set after the defaults). Where a camera is
	// behind a NAT that only TURN crosses, that wait was paid on every
	// connect (relay-only first frame 2.2 s against 0.34 s direct). Pairs
	// are still nominated best first among those that succeeded, and a
	// host pair on a LAN answers before a pair through a TURN server does.
	if cfg.Net != nil {
		se.SetNet(cfg.Net)
	}
	se.SetSrflxAcceptanceMinWait(0)
	se.SetPrflxAcceptanceMinWait(0)
	se.SetRelayAcceptanceMinWait(0)
	if cfg.ICEPortMin != 0 {
		if err := se.SetEphemeralUDPPortRange(cfg.ICEPortMin, cfg.ICEPortMax); err != nil {
			return nil, fmt.Errorf("%w: ICE port range %d-%d: %w", ErrInvalidConfig, cfg.ICEPortMin, cfg.ICEPortMax, err)
		}
	}
	// TURN over TCP/TLS goes through kvsrtc's dialer (see turn.go).
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	se.SetICEProxyDialer(&turnDialer{roots: cfg.TURNRootCAs, log: logger.With("component", "turn")})
	if cfg.LoopbackOnly {
		se.SetIncludeLoopbackCandidate(true)
		se.SetInterfaceFilter(isLoopbackInterface)
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() && ip.To4() != nil })
		// UDP4 candidates only; TCP4 lets pion reach TURN servers over
		// TCP/TLS (relay candidates are UDP either way). No ICE-TCP host
		// candidates: there is no TCP mux, and active TCP is off.
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeTCP4})
		se.DisableActiveTCP(true)
		se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	}

	return webrtc.NewAPI(
		webrtc.WithMediaEngine(m),
		webrtc.WithInterceptorRegistry(ir),
		webrtc.WithSettingEngine(se),
	), nil
}
