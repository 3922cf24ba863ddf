package emulator_test

import (
	"errors"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvsproto"
)

func TestParseFault(t *testing.T) {
	good := map[string]emulator.Fault{
		"drop,action=SDP_ANSWER,count=1,channel=demo": {Kind: emulator.FaultDrop, Action: kvsproto.ActionSDPAnswer, Count: 1, Channel: "demo"},
		" delay , action=ice , delay=1.5s ":           {Kind: emulator.FaultDelay, Action: kvsproto.ActionICECandidate, Delay: 1500 * time.Millisecond},
		"goaway,channel=demo,target=master,grace=5s":  {Kind: emulator.FaultGoAway, Channel: "demo", Target: "master", Grace: 5 * time.Second},
		"GO_AWAY":                       {Kind: emulator.FaultGoAway},
		"reconnect-ice,target=viewer-1": {Kind: emulator.FaultReconnectICE, Target: "viewer-1"},
		"close":                         {Kind: emulator.FaultClose},
		"throttle,channel=arn:aws:kinesisvideo:x,count=3": {Kind: emulator.FaultRefuseThrottle, Channel: "arn:aws:kinesisvideo:x", Count: 3},
		"full":         {Kind: emulator.FaultRefuseFull},
		"expire-turn":  {Kind: emulator.FaultExpireTURN},
		"skew,by=-10m": {Kind: emulator.FaultSkewClock, Delay: -10 * time.Minute},
		"throttle-api,target=GetIceServerConfig,count=2": {Kind: emulator.FaultThrottleAPI, Target: "GetIceServerConfig", Count: 2},
	}
	for spec, want := range good {
		got, err := emulator.ParseFault(spec)
		if err != nil || got != want {
			t.Errorf("ParseFault(%q) = %+v, %v; want %+v", spec, got, err, want)
		}
	}
	for _, spec := range []string{
		"", "explode", "drop,count=0", "drop,count=x", "drop,action=PING", "delay", "delay,delay=-1s",
		"drop,channel", "drop,channel=a,channel=b", "expire-turn,count=1", "skew,by=forever",
		"throttle-api,target=Nope", "goaway,grace=0s", "skew,by=9000h",
	} {
		if _, err := emulator.ParseFault(spec); !errors.Is(err, emulator.ErrInvalidFault) {
			t.Errorf("ParseFault(%q) = %v, want ErrInvalidFault", spec, err)
		}
	}
}

func FuzzParseFault(f *testing.F) {
	for _, s := range []string{"drop,action=SDP_ANSWER,count=1,channel=demo", "delay,delay=2s", "skew,by=-1h", "x,y=z", ",,,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		if fl, err := emulator.ParseFault(spec); err == nil && fl.Kind == "" {
			t.Fatalf("ParseFault(%q) returned no kind", spec)
		}
	})
}
