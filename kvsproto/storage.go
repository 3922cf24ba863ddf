package kvsproto

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// WebRTC ingestion and Multiviewer: the Kinesis video stream control plane
// (kinesisvideo 2017-09-30), the media storage configuration that links a
// signaling channel to a stream, and the Kinesis Video WebRTC Storage API
// (2018-05-10, REST-JSON, signing name kinesisvideo) served on the WEBRTC
// endpoint of GetSignalingChannelEndpoint. Field names are exactly those of
// the AWS service models; note that the storage API spells its members in
// lower camel case (channelArn, clientId).

// Stream control-plane operation paths.
const (
	PathCreateStream                    = "/createStream"
	PathDescribeStream                  = "/describeStream"
	PathListStreams                     = "/listStreams"
	PathDeleteStream                    = "/deleteStream"
	PathUpdateMediaStorageConfiguration = "/updateMediaStorageConfiguration"
)

// WebRTC Storage operation paths, served on the channel's WEBRTC endpoint.
const (
	PathJoinStorageSession         = "/joinStorageSession"
	PathJoinStorageSessionAsViewer = "/joinStorageSessionAsViewer"
)

// Error codes of the stream and storage operations (besides those in rest.go).
const (
	// ErrCodeNoDataRetention: UpdateMediaStorageConfiguration names a
	// stream whose DataRetentionInHours is 0.
	ErrCodeNoDataRetention = "NoDataRetentionException"
	// ErrCodeAccountStreamLimit: CreateStream beyond the account's streams.
	ErrCodeAccountStreamLimit = "AccountStreamLimitExceededException"
)

// MediaStorageStatus is the Status of a MediaStorageConfiguration.
type MediaStorageStatus string

// Media storage statuses.
const (
	MediaStorageEnabled  MediaStorageStatus = "ENABLED"
	MediaStorageDisabled MediaStorageStatus = "DISABLED"
)

// Stream limits of the service model.
const (
	// MaxStreamNameLen is the longest stream name.
	MaxStreamNameLen = 256
	// MaxDeviceNameLen is the longest DeviceName.
	MaxDeviceNameLen = 128
	// MaxMediaTypeLen is the longest MediaType.
	MaxMediaTypeLen = 128
	// MaxKmsKeyIDLen is the longest KmsKeyId.
	MaxKmsKeyIDLen = 2048
)

// StreamStorageConfiguration is a stream's default storage tier (HOT, WARM).
type StreamStorageConfiguration struct {
	DefaultStorageTier string `json:"DefaultStorageTier"`
}

// CreateStreamInput is the body of CreateStream. Tags is a map here, unlike
// CreateSignalingChannel's list.
type CreateStreamInput struct {
	StreamName                 string                      `json:"StreamName"`
	DeviceName                 string                      `json:"DeviceName,omitempty"`
	MediaType                  string                      `json:"MediaType,omitempty"`
	KmsKeyID                   string                      `json:"KmsKeyId,omitempty"`
	DataRetentionInHours       *int                        `json:"DataRetentionInHours,omitempty"`
	Tags                       map[string]string           `json:"Tags,omitempty"`
	StreamStorageConfiguration *StreamStorageConfiguration `json:"StreamStorageConfiguration,omitempty"`
}

// CreateStreamOutput is the response of CreateStream.
type CreateStreamOutput struct {
	StreamARN string `json:"StreamARN"`
}

// StreamInfo describes a stream. CreationTime is epoch seconds as a JSON
// number.
type StreamInfo struct {
	DeviceName           string  `json:"DeviceName,omitempty"`
	StreamName           string  `json:"StreamName"`
	StreamARN            string  `json:"StreamARN"`
	MediaType            string  `json:"MediaType,omitempty"`
	KmsKeyID             string  `json:"KmsKeyId,omitempty"`
	Version              string  `json:"Version"`
	Status               string  `json:"Status"`
	CreationTime         float64 `json:"CreationTime"`
	DataRetentionInHours int     `json:"DataRetentionInHours"`
}

// DescribeStreamInput names a stream by StreamName or StreamARN.
type DescribeStreamInput struct {
	StreamName string `json:"StreamName,omitempty"`
	StreamARN  string `json:"StreamARN,omitempty"`
}

// DescribeStreamOutput is the response of DescribeStream.
type DescribeStreamOutput struct {
	StreamInfo StreamInfo `json:"StreamInfo"`
}

// StreamNameCondition filters ListStreams by name prefix.
type StreamNameCondition struct {
	ComparisonOperator string `json:"ComparisonOperator,omitempty"` // "BEGINS_WITH"
	ComparisonValue    string `json:"ComparisonValue,omitempty"`
}

// ListStreamsInput is the body of ListStreams.
type ListStreamsInput struct {
	MaxResults          *int                 `json:"MaxResults,omitempty"`
	NextToken           string               `json:"NextToken,omitempty"`
	StreamNameCondition *StreamNameCondition `json:"StreamNameCondition,omitempty"`
}

// ListStreamsOutput is the response of ListStreams.
type ListStreamsOutput struct {
	StreamInfoList []StreamInfo `json:"StreamInfoList"`
	NextToken      string       `json:"NextToken,omitempty"`
}

// DeleteStreamInput is the body of DeleteStream.
type DeleteStreamInput struct {
	StreamARN      string `json:"StreamARN"`
	CurrentVersion string `json:"CurrentVersion,omitempty"`
}

// MediaStorageConfiguration links a channel to a stream. StreamARN is
// required when Status is ENABLED.
type MediaStorageConfiguration struct {
	StreamARN string             `json:"StreamARN,omitempty"`
	Status    MediaStorageStatus `json:"Status"`
}

// UpdateMediaStorageConfigurationInput is the body of
// UpdateMediaStorageConfiguration.
type UpdateMediaStorageConfigurationInput struct {
	ChannelARN                string                     `json:"ChannelARN"`
	MediaStorageConfiguration *MediaStorageConfiguration `json:"MediaStorageConfiguration"`
}

// DescribeMediaStorageConfigurationInput names a channel by ChannelName or
// ChannelARN.
type DescribeMediaStorageConfigurationInput struct {
	ChannelName string `json:"ChannelName,omitempty"`
	ChannelARN  string `json:"ChannelARN,omitempty"`
}

// DescribeMediaStorageConfigurationOutput is the response of
// DescribeMediaStorageConfiguration.
type DescribeMediaStorageConfigurationOutput struct {
	MediaStorageConfiguration MediaStorageConfiguration `json:"MediaStorageConfiguration"`
}

// JoinStorageSessionInput is the body of JoinStorageSession (the master).
type JoinStorageSessionInput struct {
	ChannelArn string `json:"channelArn"` //nolint:revive // AWS field name
}

// JoinStorageSessionAsViewerInput is the body of JoinStorageSessionAsViewer.
type JoinStorageSessionAsViewerInput struct {
	ChannelArn string `json:"channelArn"` //nolint:revive // AWS field name
	ClientID   string `json:"clientId"`
}

// StreamARN is a parsed Kinesis video stream ARN:
// arn:{partition}:kinesisvideo:{region}:{account}:stream/{name}/{creationMillis}.
type StreamARN struct {
	Partition      string
	Region         string
	Account        string
	Name           string
	CreationMillis int64
}

// String formats the ARN.
func (a StreamARN) String() string {
	return "arn:" + a.Partition + ":kinesisvideo:" + a.Region + ":" + a.Account + ":stream/" + a.Name + "/" + strconv.FormatInt(a.CreationMillis, 10)
}

// ValidateStreamName checks a stream name: 1 to 256 of [a-zA-Z0-9_.-].
func ValidateStreamName(name string) error {
	return checkIDChars("StreamName", name, MaxStreamNameLen)
}

// ParseStreamARN parses and validates a Kinesis video stream ARN. A
// signaling channel ARN is refused with a message that says so.
func ParseStreamARN(s string) (StreamARN, error) {
	var a StreamARN
	const example = "; expected arn:aws:kinesisvideo:REGION:ACCOUNT:stream/NAME/CREATION_MILLIS"
	if s == "" {
		return a, invalid("StreamARN", s, "must not be empty")
	}
	if len(s) > MaxARNLen {
		return a, invalid("StreamARN", s, fmt.Sprintf("is %d characters long; the limit is %d", len(s), MaxARNLen))
	}
	parts := strings.SplitN(s, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" {
		return a, invalid("StreamARN", s, "is not an ARN"+example)
	}
	if !isLowerAlnumDash(parts[1]) || !isLowerAlnumDash(parts[3]) {
		return a, invalid("StreamARN", s, "has an invalid partition or region"+example)
	}
	if parts[2] != "kinesisvideo" {
		return a, invalid("StreamARN", s, fmt.Sprintf("is for service %q, not kinesisvideo%s", parts[2], example))
	}
	if parts[4] == "" || strings.Trim(parts[4], "0123456789") != "" {
		return a, invalid("StreamARN", s, "has an invalid account id (digits only)"+example)
	}
	res := strings.Split(parts[5], "/")
	if len(res) != 3 || res[0] != "stream" {
		if len(res) == 3 && res[0] == "channel" {
			return a, invalid("StreamARN", s, "is a signaling channel ARN, not a stream ARN"+example)
		}
		return a, invalid("StreamARN", s, "has an invalid resource part"+example)
	}
	if err := ValidateStreamName(res[1]); err != nil {
		reason := err.Error()
		var ve *ValidationError
		if errors.As(err, &ve) {
			reason = ve.Reason
		}
		return a, invalid("StreamARN", s, "has an invalid stream name: "+reason)
	}
	ms, err := strconv.ParseInt(res[2], 10, 64)
	if err != nil || ms < 0 || strings.Trim(res[2], "0123456789") != "" {
		return a, invalid("StreamARN", s, "has an invalid creation time (digits only)"+example)
	}
	return StreamARN{Partition: parts[1], Region: parts[3], Account: parts[4], Name: res[1], CreationMillis: ms}, nil
}
