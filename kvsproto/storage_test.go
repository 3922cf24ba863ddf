package kvsproto_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

func TestParseStreamARN(t *testing.T) {
	const ok = "arn:aws:kinesisvideo:us-west-2:123456789012:stream/cam-1/1700000000000"
	a, err := kvsproto.ParseStreamARN(ok)
	if err != nil || a.Name != "cam-1" || a.Region != "us-west-2" || a.Account != "123456789012" || a.CreationMillis != 1700000000000 || a.String() != ok {
		t.Fatalf("ParseStreamARN(%q) = %+v, %v", ok, a, err)
	}
	for _, tc := range []struct{ in, words string }{
		{"", "empty"},
		{"arn:aws:kinesisvideo:us-west-2:123456789012:channel/cam/1", "signaling channel ARN"},
		{"arn:aws:s3:us-west-2:123456789012:stream/cam/1", "not kinesisvideo"},
		{"arn:aws:kinesisvideo:us-west-2:12x:stream/cam/1", "account"},
		{"arn:aws:kinesisvideo:us-west-2:123456789012:stream/bad name/1", "stream name"},
		{"arn:aws:kinesisvideo:us-west-2:123456789012:stream/cam/x", "creation time"},
		{"arn:aws:kinesisvideo:us-west-2:123456789012:stream/cam", "resource part"},
		{"not-an-arn", "not an ARN"},
	} {
		_, err := kvsproto.ParseStreamARN(tc.in)
		if !errors.Is(err, kvsproto.ErrInvalid) || !strings.Contains(err.Error(), tc.words) {
			t.Errorf("ParseStreamARN(%q) = %v, want an ErrInvalid mentioning %q", tc.in, err, tc.words)
		}
	}
	if _, err := kvsproto.ParseChannelARN(ok); err == nil || !strings.Contains(err.Error(), "stream ARN") {
		t.Errorf("ParseChannelARN of a stream ARN: %v", err)
	}
}

func TestValidateStreamName(t *testing.T) {
	if err := kvsproto.ValidateStreamName("a.b_c-1"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"", "a b", strings.Repeat("x", kvsproto.MaxStreamNameLen+1)} {
		if err := kvsproto.ValidateStreamName(n); !errors.Is(err, kvsproto.ErrInvalid) {
			t.Errorf("ValidateStreamName(%q) = %v", n, err)
		}
	}
}
