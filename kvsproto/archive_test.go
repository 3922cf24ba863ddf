package kvsproto_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// TestTimestampJSON: request timestamps are epoch seconds (fractions
// allowed) or RFC 3339; responses are epoch seconds with milliseconds.
func TestTimestampJSON(t *testing.T) {
	for in, want := range map[string]time.Time{
		`1700000000`:                  time.Unix(1700000000, 0),
		`1700000000.25`:               time.Unix(1700000000, 250e6),
		`"2023-11-14T22:13:20.5Z"`:    time.Unix(1700000000, 500e6),
		`"2023-11-14T23:13:20+01:00"`: time.Unix(1700000000, 0),
	} {
		var ts kvsproto.Timestamp
		if err := json.Unmarshal([]byte(in), &ts); err != nil || !ts.Equal(want) {
			t.Errorf("%s: %v %v, want %v", in, ts.Time, err, want)
		}
	}
	for _, bad := range []string{`"yesterday"`, `-1`, `1e300`, `true`, `{}`} {
		var ts kvsproto.Timestamp
		if err := json.Unmarshal([]byte(bad), &ts); err == nil {
			t.Errorf("%s: accepted as %v", bad, ts.Time)
		}
	}
	b, err := json.Marshal(kvsproto.Fragment{ProducerTimestamp: kvsproto.Timestamp{Time: time.UnixMilli(1700000000123)}})
	if err != nil || !json.Valid(b) || string(b) != `{"FragmentNumber":"","FragmentSizeInBytes":0,"ProducerTimestamp":1700000000.123,"ServerTimestamp":0,"FragmentLengthInMilliseconds":0}` {
		t.Errorf("marshal: %s %v", b, err)
	}
}
