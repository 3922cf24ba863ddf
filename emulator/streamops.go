package emulator

import (
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// Kinesis video stream control plane (kinesisvideo 2017-09-30) and the
// media storage configuration of a channel: what WebRTC ingestion needs.
// A stream's recorded media is its archive (archive.go; docs/EMULATOR.md,
// "The stream archive and the archived-media API").

// maxRetentionHours is the service's upper bound of DataRetentionInHours
// (87,600 hours, ten years; the model states only the minimum, 0).
const maxRetentionHours = 87600

func mediaTypeChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_-.+", c) >= 0
}

// validMediaType matches [\w\-\.\+]+/[\w\-\.\+]+(,[\w\-\.\+]+/[\w\-\.\+]+)*.
func validMediaType(s string) bool {
	for _, part := range strings.Split(s, ",") {
		typ, sub, ok := strings.Cut(part, "/")
		if !ok || typ == "" || sub == "" {
			return false
		}
		for i := 0; i < len(typ); i++ {
			if !mediaTypeChar(typ[i]) {
				return false
			}
		}
		for i := 0; i < len(sub); i++ {
			if !mediaTypeChar(sub[i]) {
				return false
			}
		}
	}
	return true
}

func checkStreamTags(tags map[string]string) *apiError {
	if tags == nil {
		return nil
	}
	if len(tags) < 1 || len(tags) > maxTagsPerRes {
		return errInvalidArgument(validationMsg("tags", "", fmt.Sprintf("Member must have length between 1 and %d", maxTagsPerRes)))
	}
	for k, v := range tags {
		if e := checkTagString("tags.key", k, 1, maxTagKeyLen); e != nil {
			return e
		}
		if e := checkTagString("tags.value", v, 0, maxTagValueLen); e != nil {
			return e
		}
		if strings.HasPrefix(strings.ToLower(k), "aws:") {
			return errInvalidArgument(fmt.Sprintf("Tag key %q uses the reserved prefix aws:.", k))
		}
	}
	return nil
}

func (s *Server) opCreateStream(r *http.Request, body []byte) (any, *apiError) {
	var in kvsproto.CreateStreamInput
	if e := decodeBody(body, &in); e != nil {
		return nil, e
	}
	if in.StreamName == "" {
		return nil, missing("streamName")
	}
	if err := kvsproto.ValidateStreamName(in.StreamName); err != nil {
		return nil, invalidFrom("streamName", err)
	}
	if in.DeviceName != "" {
		if len(in.DeviceName) > kvsproto.MaxDeviceNameLen || checkIDLike(in.DeviceName) != nil {
			return nil, errInvalidArgument(validationMsg("deviceName", in.DeviceName, "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+ and have length between 1 and 128"))
		}
	}
	if in.MediaType != "" && (len(in.MediaType) > kvsproto.MaxMediaTypeLen || !validMediaType(in.MediaType)) {
		return nil, errInvalidArgument(validationMsg("mediaType", in.MediaType, `Member must satisfy regular expression pattern: [\w\-\.\+]+/[\w\-\.\+]+(,[\w\-\.\+]+/[\w\-\.\+]+)* and have length between 1 and 128 (e.g. video/h264 or video/h264,audio/aac)`))
	}
	if utf8.RuneCountInString(in.KmsKeyID) > kvsproto.MaxKmsKeyIDLen {
		return nil, errInvalidArgument(validationMsg("kmsKeyId", in.KmsKeyID, "Member must have length between 1 and 2048"))
	}
	hours := 0
	if in.DataRetentionInHours != nil {
		hours = *in.DataRetentionInHours
		if hours < 0 || hours > maxRetentionHours {
			return nil, errInvalidArgument(validationMsg("dataRetentionInHours", fmt.Sprint(hours), fmt.Sprintf("Member must have value between 0 and %d", maxRetentionHours)))
		}
	}
	if e := checkStreamTags(in.Tags); e != nil {
		return nil, e
	}
	tier := ""
	if sc := in.StreamStorageConfiguration; sc != nil {
		switch sc.DefaultStorageTier {
		case "HOT", "WARM":
			tier = sc.DefaultStorageTier
		case "":
			return nil, missing("streamStorageConfiguration.defaultStorageTier")
		default:
			return nil, errInvalidArgument(validationMsg("streamStorageConfiguration.defaultStorageTier", sc.DefaultStorageTier, "Member must satisfy enum value set: [HOT, WARM]"))
		}
	}
	st, e := s.store.createStream(&stream{
		Name: in.StreamName, DeviceName: in.DeviceName, MediaType: in.MediaType, KmsKeyID: in.KmsKeyID,
		RetentionHours: hours, StorageTier: tier, Tags: in.Tags,
	}, s.now())
	if e != nil {
		return nil, e
	}
	s.log.Info("stream created", "stream", st.Name, "arn", st.ARN, "data_retention_hours", hours)
	return kvsproto.CreateStreamOutput{StreamARN: st.ARN}, nil
}

// checkIDLike validates the [a-zA-Z0-9_.-]+ pattern (DeviceName).
func checkIDLike(v string) error { return kvsproto.ValidateStreamName(v) }

// resolveStreamARN validates a stream ARN member and finds its stream. A
// stream of another account or region is NotAuthorizedException for the
// stream operations (their model has no AccessDeniedException) and
// AccessDeniedException for UpdateMediaStorageConfiguration (accessDenied).
func (s *Server) resolveStreamARN(member, arn string, accessDenied bool) (*stream, *apiError) {
	if arn == "" {
		return nil, missing(member)
	}
	a, err := kvsproto.ParseStreamARN(arn)
	if err != nil {
		return nil, invalidFrom(member, err)
	}
	if a.Region != s.cfg.Region || a.Account != s.cfg.AccountID || a.Partition != kvsproto.PartitionForRegion(s.cfg.Region) {
		msg := fmt.Sprintf("User is not authorized to access %s: this service holds only the streams of account %s in %s.", arn, s.cfg.AccountID, s.cfg.Region)
		if accessDenied {
			return nil, errAccessDenied(msg)
		}
		return nil, &apiError{http.StatusUnauthorized, kvsproto.ErrCodeNotAuthorized, msg}
	}
	st, ok := s.store.streamByARN(arn)
	if !ok {
		return nil, errNotFound(streamNotFoundMsg(arn))
	}
	return st, nil
}

// opDescribeStream: StreamName or StreamARN; with both, they must name the
// same stream (as DescribeSignalingChannel here).
func (s *Server) opDescribeStream(r *http.Request, body []byte) (any, *apiError) {
	var in kvsproto.DescribeStreamInput
	if e := decodeBody(body, &in); e != nil {
		return nil, e
	}
	switch {
	case in.StreamName == "" && in.StreamARN == "":
		return nil, errInvalidArgument("Specify either StreamName or StreamARN.")
	case in.StreamARN != "":
		st, e := s.resolveStreamARN("streamARN", in.StreamARN, false)
		if e != nil {
			return nil, e
		}
		if in.StreamName != "" && in.StreamName != st.Name {
			return nil, errInvalidArgument(fmt.Sprintf("StreamName %s and StreamARN %s name different streams; give one of them.", in.StreamName, in.StreamARN))
		}
		return kvsproto.DescribeStreamOutput{StreamInfo: st.info()}, nil
	default:
		if err := kvsproto.ValidateStreamName(in.StreamName); err != nil {
			return nil, invalidFrom("streamName", err)
		}
		st, ok := s.store.streamByName(in.StreamName)
		if !ok {
			return nil, errNotFound(streamNotFoundMsg(in.StreamName))
		}
		return kvsproto.DescribeStreamOutput{StreamInfo: st.info()}, nil
	}
}

func (s *Server) opListStreams(r *http.Request, body []byte) (any, *apiError) {
	var in kvsproto.ListStreamsInput
	if e := decodeBody(body, &in); e != nil {
		return nil, e
	}
	var op, val string
	if c := in.StreamNameCondition; c != nil {
		op, val = c.ComparisonOperator, c.ComparisonValue
	}
	page, e := parseListPage(in.MaxResults, in.NextToken, "ListStreams", "streamNameCondition", op, val, kvsproto.ValidateStreamName)
	if e != nil {
		return nil, e
	}
	list, more := s.store.listStreams(page.prefix, page.after, page.max)
	out := kvsproto.ListStreamsOutput{StreamInfoList: make([]kvsproto.StreamInfo, len(list))}
	for i, st := range list {
		out.StreamInfoList[i] = st.info()
	}
	if more {
		out.NextToken = encodeToken(list[len(list)-1].Name)
	}
	return out, nil
}

func (s *Server) opDeleteStream(r *http.Request, body []byte) (any, *apiError) {
	var in kvsproto.DeleteStreamInput
	if e := decodeBody(body, &in); e != nil {
		return nil, e
	}
	if in.StreamARN == "" {
		return nil, missing("streamARN")
	}
	if in.CurrentVersion != "" {
		if e := checkVersion(in.CurrentVersion); e != nil {
			return nil, e
		}
	}
	if _, e := s.resolveStreamARN("streamARN", in.StreamARN, false); e != nil {
		return nil, e
	}
	st, e := s.store.removeStream(in.StreamARN, in.CurrentVersion)
	if e != nil {
		return nil, e
	}
	ended := s.sessions.endForStream(st.ARN)
	s.archive.drop(st.ARN)
	s.log.Info("stream deleted", "stream", st.Name, "arn", st.ARN, "storage_sessions_ended", ended)
	return struct{}{}, nil
}

// opUpdateMediaStorage links a channel to a stream (ENABLED) or unlinks it
// (DISABLED; StreamARN is then ignored).
func (s *Server) opUpdateMediaStorage(r *http.Request, body []byte) (any, *apiError) {
	var in kvsproto.UpdateMediaStorageConfigurationInput
	if e := decodeBody(body, &in); e != nil {
		return nil, e
	}
	if in.ChannelARN == "" {
		return nil, missing("channelARN")
	}
	cfg := in.MediaStorageConfiguration
	if cfg == nil {
		return nil, missing("mediaStorageConfiguration")
	}
	if cfg.Status == "" {
		return nil, missing("mediaStorageConfiguration.status")
	}
	if cfg.Status != kvsproto.MediaStorageEnabled && cfg.Status != kvsproto.MediaStorageDisabled {
		return nil, errInvalidArgument(validationMsg("mediaStorageConfiguration.status", string(cfg.Status), "Member must satisfy enum value set: [ENABLED, DISABLED]"))
	}
	if _, e := s.resolveARN("channelARN", in.ChannelARN); e != nil {
		return nil, e
	}
	streamARN := ""
	if cfg.Status == kvsproto.MediaStorageEnabled {
		if cfg.StreamARN == "" {
			return nil, errInvalidArgument("MediaStorageConfiguration.StreamARN is required when Status is ENABLED: give the ARN of the stream that stores the channel's media (aws kinesisvideo describe-stream --stream-name NAME).")
		}
		if _, e := s.resolveStreamARN("mediaStorageConfiguration.streamARN", cfg.StreamARN, true); e != nil {
			return nil, e
		}
		streamARN = cfg.StreamARN
	}
	c, e := s.store.linkStorage(in.ChannelARN, streamARN)
	if e != nil {
		return nil, e
	}
	if streamARN == "" {
		s.sessions.end(c.ARN, "media storage disabled")
	}
	s.log.Info("media storage configuration updated", "channel", c.Name, "status", string(cfg.Status), "stream_arn", streamARN)
	return struct{}{}, nil
}

func (s *Server) opDescribeMediaStorage(r *http.Request, body []byte) (any, *apiError) {
	var in kvsproto.DescribeMediaStorageConfigurationInput
	if e := decodeBody(body, &in); e != nil {
		return nil, e
	}
	c, e := s.findByNameOrARN(in.ChannelName, in.ChannelARN)
	if e != nil {
		return nil, e
	}
	out := kvsproto.DescribeMediaStorageConfigurationOutput{MediaStorageConfiguration: kvsproto.MediaStorageConfiguration{Status: kvsproto.MediaStorageDisabled}}
	if c.StorageStreamARN != "" {
		out.MediaStorageConfiguration = kvsproto.MediaStorageConfiguration{StreamARN: c.StorageStreamARN, Status: kvsproto.MediaStorageEnabled}
	}
	return out, nil
}
