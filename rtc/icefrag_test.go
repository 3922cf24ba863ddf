package rtc

import (
	"errors"
	"strings"
	"testing"
)

func TestParseICEFragment(t *testing.T) {
	f, err := ParseICEFragment("a=ice-ufrag:abcd\r\na=ice-pwd:secretsecretsecretsecret\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n" +
		"a=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\na=end-of-candidates\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if f.Ufrag != "abcd" || f.Pwd != "secretsecretsecretsecret" || !f.EndOfCandidates || len(f.Candidates) != 1 ||
		f.Candidates[0].SDPMid == nil || *f.Candidates[0].SDPMid != "0" || !strings.HasPrefix(f.Candidates[0].Candidate, "candidate:1 ") {
		t.Errorf("parsed %+v", f)
	}
	for _, bad := range []string{"", "hello", "a=ice-pwd:x\r\n", "a=group:BUNDLE 0\r\n"} {
		if _, err := ParseICEFragment(bad); !errors.Is(err, ErrBadFragment) {
			t.Errorf("ParseICEFragment(%q): %v, want ErrBadFragment", bad, err)
		}
	}
}

func TestICECredentialsAndLocalFragment(t *testing.T) {
	sdp := "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n" +
		"m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=ice-ufrag:old\r\na=ice-pwd:oldpwd\r\n" +
		"a=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\na=end-of-candidates\r\n" +
		"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\na=ice-ufrag:old\r\na=ice-pwd:oldpwd\r\n"
	got := WithICECredentials(sdp, "new", "newpwd")
	if strings.Contains(got, "old") || strings.Count(got, "a=ice-ufrag:new\r\n") != 2 || strings.Contains(got, "a=candidate") {
		t.Errorf("WithICECredentials:\n%s", got)
	}
	frag := LocalICEFragment(sdp)
	want := "a=ice-ufrag:old\r\na=ice-pwd:oldpwd\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n" +
		"a=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\na=end-of-candidates\r\n"
	if frag != want {
		t.Errorf("LocalICEFragment:\n%q\nwant\n%q", frag, want)
	}
	if SDPAttribute(sdp, "mid") != "0" || SDPAttribute(sdp, "nothing") != "" {
		t.Error("SDPAttribute")
	}
}
