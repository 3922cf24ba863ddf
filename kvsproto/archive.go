package kvsproto

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
)

// The recorded media of a stream: GetDataEndpoint (kinesisvideo
// 2017-09-30) and the Kinesis Video Archived Media API (2017-09-30,
// REST-JSON, signing name kinesisvideo) served on the data endpoint, with
// the HLS requests a player makes on the URL GetHLSStreamingSessionURL
// returns. Member names are those of the AWS service models.

// Operation paths.
const (
	PathGetDataEndpoint           = "/getDataEndpoint"
	PathGetClip                   = "/getClip"
	PathGetHLSStreamingSessionURL = "/getHLSStreamingSessionURL"
	PathListFragments             = "/listFragments"
)

// HLS request paths (unsigned GETs authorized by the SessionToken query
// parameter), as the real service names them.
const (
	PathHLSPrefix         = "/hls/v1/"
	PathHLSMasterPlaylist = PathHLSPrefix + "getHLSMasterPlaylist.m3u8"
	PathHLSMediaPlaylist  = PathHLSPrefix + "getHLSMediaPlaylist.m3u8"
	PathHLSInitFragment   = PathHLSPrefix + "getMP4InitFragment.mp4"
	PathHLSMediaFragment  = PathHLSPrefix + "getMP4MediaFragment.mp4"
)

// Error codes of the archived media API (besides those in rest.go and
// storage.go).
const (
	ErrCodeUnsupportedStreamMediaType = "UnsupportedStreamMediaTypeException"
	ErrCodeMissingCodecPrivateData    = "MissingCodecPrivateDataException"
	ErrCodeInvalidCodecPrivateData    = "InvalidCodecPrivateDataException"
	ErrCodeInvalidMediaFrame          = "InvalidMediaFrameException"
)

// DataEndpointAPINames are the valid APIName values of GetDataEndpoint.
var DataEndpointAPINames = []string{
	"PUT_MEDIA", "GET_MEDIA", "LIST_FRAGMENTS", "GET_MEDIA_FOR_FRAGMENT_LIST",
	"GET_HLS_STREAMING_SESSION_URL", "GET_DASH_STREAMING_SESSION_URL", "GET_CLIP", "GET_IMAGES",
}

// Enum values of the archived media API.
const (
	SelectorProducerTimestamp = "PRODUCER_TIMESTAMP"
	SelectorServerTimestamp   = "SERVER_TIMESTAMP"

	PlaybackLive       = "LIVE"
	PlaybackLiveReplay = "LIVE_REPLAY"
	PlaybackOnDemand   = "ON_DEMAND"

	ContainerFragmentedMP4 = "FRAGMENTED_MP4"
	ContainerMPEGTS        = "MPEG_TS"

	DiscontinuityAlways          = "ALWAYS"
	DiscontinuityNever           = "NEVER"
	DiscontinuityOnDiscontinuity = "ON_DISCONTINUITY"

	DisplayTimestampAlways = "ALWAYS"
	DisplayTimestampNever  = "NEVER"
)

// Limits of the archived media API model.
const (
	// MinHLSExpires and MaxHLSExpires bound Expires (seconds); the default
	// is DefaultHLSExpires.
	MinHLSExpires     = 300
	MaxHLSExpires     = 43200
	DefaultHLSExpires = 300
	// MaxHLSMaxResults bounds MaxMediaPlaylistFragmentResults.
	MaxHLSMaxResults = 5000
	// MaxListFragmentsResults bounds ListFragments' MaxResults.
	MaxListFragmentsResults = 1000
)

// Timestamp is an AWS timestamp in a REST-JSON body: epoch seconds as a
// JSON number (fractions allowed), which is what the SDKs and the AWS CLI
// send. An RFC 3339 string is accepted too.
type Timestamp struct {
	time.Time
}

// UnmarshalJSON reads a number of epoch seconds or an RFC 3339 string.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return fmt.Errorf("timestamp %q is neither epoch seconds nor RFC 3339", s)
		}
		t.Time = v
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e11 {
		return fmt.Errorf("timestamp %s is not epoch seconds", b)
	}
	sec, frac := math.Modf(f)
	t.Time = time.Unix(int64(sec), int64(math.Round(frac*1e6))*1000).UTC()
	return nil
}

// MarshalJSON writes epoch seconds with millisecond precision (0 for the
// zero time).
func (t Timestamp) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("0"), nil
	}
	return []byte(strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64)), nil
}

// GetDataEndpointInput is the body of GetDataEndpoint.
type GetDataEndpointInput struct {
	StreamName string `json:"StreamName,omitempty"`
	StreamARN  string `json:"StreamARN,omitempty"`
	APIName    string `json:"APIName"`
}

// GetDataEndpointOutput is the response of GetDataEndpoint.
type GetDataEndpointOutput struct {
	DataEndpoint string `json:"DataEndpoint"`
}

// TimestampRange is a range of fragment start timestamps. EndTimestamp is
// optional in HLS LIVE_REPLAY sessions only.
type TimestampRange struct {
	StartTimestamp *Timestamp `json:"StartTimestamp,omitempty"`
	EndTimestamp   *Timestamp `json:"EndTimestamp,omitempty"`
}

// FragmentSelector selects fragments by the origin of their timestamps
// (PRODUCER_TIMESTAMP or SERVER_TIMESTAMP) and a range. It is the shape of
// ClipFragmentSelector, HLSFragmentSelector and ListFragments'
// FragmentSelector.
type FragmentSelector struct {
	FragmentSelectorType string          `json:"FragmentSelectorType,omitempty"`
	TimestampRange       *TimestampRange `json:"TimestampRange,omitempty"`
}

// GetClipInput is the body of GetClip.
type GetClipInput struct {
	StreamName           string            `json:"StreamName,omitempty"`
	StreamARN            string            `json:"StreamARN,omitempty"`
	ClipFragmentSelector *FragmentSelector `json:"ClipFragmentSelector,omitempty"`
}

// GetHLSStreamingSessionURLInput is the body of GetHLSStreamingSessionURL.
type GetHLSStreamingSessionURLInput struct {
	StreamName                      string            `json:"StreamName,omitempty"`
	StreamARN                       string            `json:"StreamARN,omitempty"`
	PlaybackMode                    string            `json:"PlaybackMode,omitempty"`
	HLSFragmentSelector             *FragmentSelector `json:"HLSFragmentSelector,omitempty"`
	ContainerFormat                 string            `json:"ContainerFormat,omitempty"`
	DiscontinuityMode               string            `json:"DiscontinuityMode,omitempty"`
	DisplayFragmentTimestamp        string            `json:"DisplayFragmentTimestamp,omitempty"`
	Expires                         *int              `json:"Expires,omitempty"`
	MaxMediaPlaylistFragmentResults *int64            `json:"MaxMediaPlaylistFragmentResults,omitempty"`
}

// GetHLSStreamingSessionURLOutput is the response of
// GetHLSStreamingSessionURL.
type GetHLSStreamingSessionURLOutput struct {
	HLSStreamingSessionURL string `json:"HLSStreamingSessionURL"`
}

// ListFragmentsInput is the body of ListFragments.
type ListFragmentsInput struct {
	StreamName       string            `json:"StreamName,omitempty"`
	StreamARN        string            `json:"StreamARN,omitempty"`
	MaxResults       *int64            `json:"MaxResults,omitempty"`
	NextToken        string            `json:"NextToken,omitempty"`
	FragmentSelector *FragmentSelector `json:"FragmentSelector,omitempty"`
}

// Fragment describes one archived fragment.
type Fragment struct {
	FragmentNumber               string    `json:"FragmentNumber"`
	FragmentSizeInBytes          int64     `json:"FragmentSizeInBytes"`
	ProducerTimestamp            Timestamp `json:"ProducerTimestamp"`
	ServerTimestamp              Timestamp `json:"ServerTimestamp"`
	FragmentLengthInMilliseconds int64     `json:"FragmentLengthInMilliseconds"`
}

// ListFragmentsOutput is the response of ListFragments.
type ListFragmentsOutput struct {
	Fragments []Fragment `json:"Fragments"`
	NextToken string     `json:"NextToken,omitempty"`
}
