package emulator

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// Control plane (kinesisvideo 2017-09-30). Each op decodes and validates its
// input, then acts on the store. API reference:
// https://docs.aws.amazon.com/kinesisvideostreams/latest/dg/API_Operations_Amazon_Kinesis_Video_Streams.html

const (
	defaultListMax  = 500
	maxListResults  = 10000
	maxTagsPerRes   = 50
	maxTagKeyLen    = 128
	maxTagValueLen  = 256
	maxNextTokenLen = 1024
)

// validationMsg formats AWS's "1 validation error detected" message.
func validationMsg(member, value, constraint string) string {
	if value == "" {
		return fmt.Sprintf("1 validation error detected: Value at '%s' failed to satisfy constraint: %s", member, constraint)
	}
	if len(value) > 80 {
		value = value[:80] + "..."
	}
	return fmt.Sprintf("1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: %s", value, member, constraint)
}

func missing(member string) *apiError {
	return errInvalidArgument(fmt.Sprintf("1 validation error detected: Value null at '%s' failed to satisfy constraint: Member must not be null", member))
}

func invalidFrom(member string, err error) *apiError {
	msg := err.Error()
	var ve *kvsproto.ValidationError
	if errors.As(err, &ve) {
		msg = ve.Reason
	}
	return errInvalidArgument(fmt.Sprintf("1 validation error detected: Value at '%s' failed to satisfy constraint: %s", member, msg))
}

// resolveARN validates an ARN member and finds its channel: InvalidArgument
// for a malformed ARN, AccessDenied for another account or region,
// ResourceNotFound for no such (or a deleted) channel.
func (s *Server) resolveARN(member, arn string) (*channel, *apiError) {
	if arn == "" {
		return nil, missing(member)
	}
	a, err := kvsproto.ParseChannelARN(arn)
	if err != nil {
		return nil, invalidFrom(member, err)
	}
	if e := s.checkOwnARN(a, arn); e != nil {
		return nil, e
	}
	c, ok := s.store.byARNGet(arn)
	if !ok {
		return nil, errNotFound(channelNotFoundMsg)
	}
	return c, nil
}

func (s *Server) checkOwnARN(a kvsproto.ChannelARN, arn string) *apiError {
	if a.Region != s.cfg.Region || a.Account != s.cfg.AccountID || a.Partition != kvsproto.PartitionForRegion(s.cfg.Region) {
		return errAccessDenied(fmt.Sprintf("User is not authorized to access %s: this service holds only the channels of account %s in %s.", arn, s.cfg.AccountID, s.cfg.Region))
	}
	return nil
}

func checkTTL(cfg *kvsproto.SingleMasterConfiguration) (int, *apiError) {
	if cfg == nil || cfg.MessageTtlSeconds == nil {
		return kvsproto.DefaultMessageTTLSeconds, nil
	}
	if err := kvsproto.ValidateMessageTTL(*cfg.MessageTtlSeconds); err != nil {
		return 0, errInvalidArgument(validationMsg("singleMasterConfiguration.messageTtlSeconds", fmt.Sprint(*cfg.MessageTtlSeconds),
			fmt.Sprintf("Member must have value between %d and %d", kvsproto.MinMessageTTLSeconds, kvsproto.MaxMessageTTLSeconds)))
	}
	return *cfg.MessageTtlSeconds, nil
}

// tagChar reports whether r is allowed in a tag key or value (the
// pattern [\p{L}\p{Z}\p{N}_.:/=+\-@]*).
func tagChar(r rune) bool {
	return unicode.IsLetter(r) || unicode.In(r, unicode.Z) || unicode.IsNumber(r) || strings.ContainsRune("_.:/=+-@", r)
}

func checkTagString(member, s string, minLen, maxLen int) *apiError {
	n := utf8.RuneCountInString(s)
	if !utf8.ValidString(s) || n < minLen || n > maxLen {
		return errInvalidArgument(validationMsg(member, s, fmt.Sprintf("Member must have length between %d and %d", minLen, maxLen)))
	}
	for _, r := range s {
		if !tagChar(r) {
			return errInvalidArgument(validationMsg(member, s, `Member must satisfy regular expression pattern: [\p{L}\p{Z}\p{N}_.:/=+\-@]*`))
		}
	}
	return nil
}

// checkTags validates a tag list and returns it as a map.
func checkTags(member string, tags []kvsproto.Tag, minN int) (map[string]string, *apiError) {
	if len(tags) < minN || len(tags) > maxTagsPerRes {
		return nil, errInvalidArgument(validationMsg(member, "", fmt.Sprintf("Member must have length between %d and %d", minN, maxTagsPerRes)))
	}
	m := make(map[string]string, len(tags))
	for i, t := range tags {
		if e := checkTagString(fmt.Sprintf("%s.%d.member.key", member, i+1), t.Key, 1, maxTagKeyLen); e != nil {
			return nil, e
		}
		if e := checkTagString(fmt.Sprintf("%s.%d.member.value", member, i+1), t.Value, 0, maxTagValueLen); e != nil {
			return nil, e
		}
		if strings.HasPrefix(strings.ToLower(t.Key), "aws:") {
			return nil, errInvalidArgument(fmt.Sprintf("Tag key %q uses the reserved prefix aws:.", t.Key))
		}
		if _, dup := m[t.Key]; dup {
			return nil, errInvalidArgument(fmt.Sprintf("Tag key %q appears more than once.", t.Key))
		}
		m[t.Key] = t.Value
	}
	return m, nil
}

func (s *Server) opCreate(r *http.Request, body []byte) (any, *apiError) {
	var in kvsproto.CreateSignalingChannelInput
	if e := decodeBody(body, &in); e != nil {
		return nil, e
	}
	if in.ChannelName == "" {
		return nil, missing("channelName")
	}
	if err := kvsproto.ValidateChannelName(in.ChannelName); err != nil {
		return nil, invalidFrom("channelName", err)
	}
	switch in.ChannelType {
	case "", string(kvsproto.ChannelTypeSingleMaster):
	case string(kvsproto.ChannelTypeFullMesh):
		return nil, errInvalidArgument("ChannelType FULL_MESH is not supported; use SINGLE_MASTER.")
	default:
		return nil, errInvalidArgument(validationMsg("channelType", in.ChannelType, "Member must satisfy enum value set: [SINGLE_MASTER, FULL_MESH]"))
	}
	ttl, e := checkTTL(in.SingleMasterConfiguration)
	if e != nil {
		return nil, e
	}
	tags, e := checkTags("tags", in.Tags, 0)
	if e != nil {
		return nil, e
	}
	if len(tags) == 0 {
		tags = nil
	}
	c, e := s.store.create(in.ChannelName, ttl, tags, s.now(), nil)
	if e != nil {
		return nil, e
	}
	s.log.Info("channel created", "channel", c.Name, "arn", c.ARN, "message_ttl_seconds", ttl)
	return kvsproto.CreateSignalingChannelOutput{ChannelARN: c.ARN}, nil
}

// opDescribe: ChannelName or ChannelARN. With both, they must name the same
// channel (kvs-protocol.md §9.9; choice documented in docs/EMULATOR.md).
func (s *Server) opDescribe(r *http.Request, body []byte) (any, *apiError) {
	var in kvsproto.DescribeSignalingChannelInput
	if e := decodeBody(body, &in); e != nil {
		return nil, e
	}
	c, e := s.findByNameOrARN(in.ChannelName, in.ChannelARN)
	if e != nil {
		return nil, e
	}
	return kvsproto.DescribeSignalingChannelOutput{ChannelInfo: c.info()}, nil
}

func (s *Server) findByNameOrARN(name, arn string) (*channel, *apiError) {
	switch {
	case name == "" && arn == "":
		return nil, errInvalidArgument("Specify either ChannelName or ChannelARN.")
	case arn != "":
		c, e := s.resolveARN("channelARN", arn)
		if e != nil {
			return nil, e
		}
		if name != "" && name != c.Name {
			return nil, errInvalidArgument(fmt.Sprintf("ChannelName %s and ChannelARN %s name different channels; give one of them.", name, arn))
		}
		return c, nil
	default:
		if err := kvsproto.ValidateChannelName(name); err != nil {
			return nil, invalidFrom("channelName", err)
		}
		c, ok := s.store.byNameGet(name)
		if !ok {
			return nil, errNotFound(channelNotFoundMsg)
		}
		return c, nil
	}
}

// List tokens are base64 of "v1:" + the last name returned.
func encodeToken(last string) string {
	return base64.StdEncoding.EncodeToString([]byte("v1:" + last))
}

func decodeToken(tok string) (string, bool) {
	b, err := base64.StdEncoding.DecodeString(tok)
	if err != nil {
		return "", false
	}
	last, ok := strings.CutPrefix(string(b), "v1:")
	return last, ok
}

func (s *Server) opList(r *http.Request, body []byte) (any, *apiError) {
	var in kvsproto.ListSignalingChannelsInput
	if e := decodeBody(body, &in); e != nil {
		return nil, e
	}
	var op, val string
	if c := in.ChannelNameCondition; c != nil {
		op, val = c.ComparisonOperator, c.ComparisonValue
	}
	page, e := parseListPage(in.MaxResults, in.NextToken, "ListSignalingChannels", "channelNameCondition", op, val, kvsproto.ValidateChannelName)
	if e != nil {
		return nil, e
	}
	chans, more := s.store.list(page.prefix, page.after, page.max)
	out := kvsproto.ListSignalingChannelsOutput{ChannelInfoList: make([]kvsproto.ChannelInfo, len(chans))}
	for i, c := range chans {
		out.ChannelInfoList[i] = c.info()
	}
	if more {
		out.NextToken = encodeToken(chans[len(chans)-1].Name)
	}
	return out, nil
}

// listPage is what a List call asks for: at most max names after after,
// starting with prefix.
type listPage struct {
	max           int
	after, prefix string
}

// parseListPage checks the paging and name condition of a List call
// (ListSignalingChannels, ListStreams) as the service does.
func parseListPage(maxResults *int, nextToken, opName, condField, condOp, condValue string, validName func(string) error) (listPage, *apiError) {
	p := listPage{max: defaultListMax}
	if maxResults != nil {
		p.max = *maxResults
		if p.max < 1 || p.max > maxListResults {
			return p, errInvalidArgument(validationMsg("maxResults", fmt.Sprint(p.max), fmt.Sprintf("Member must have value between 1 and %d", maxListResults)))
		}
	}
	if nextToken != "" {
		var ok bool
		p.after, ok = decodeToken(nextToken)
		if !ok || len(nextToken) > maxNextTokenLen {
			return p, errInvalidArgument("The NextToken is not valid; pass the NextToken of the previous " + opName + " response unchanged.")
		}
	}
	if condOp != "" && condOp != "BEGINS_WITH" {
		return p, errInvalidArgument(validationMsg(condField+".comparisonOperator", condOp, "Member must satisfy enum value set: [BEGINS_WITH]"))
	}
	if condValue != "" {
		if err := validName(condValue); err != nil {
			return p, invalidFrom(condField+".comparisonValue", err)
		}
	}
	p.prefix = condValue
	return p, nil
}

func checkVersion(v string) *apiError {
	if len(v) > 64 {
		return errInvalidArgument(validationMsg("currentVersion", v, "Member must have length between 1 and 64"))
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return errInvalidArgument(validationMsg("currentVersion", v, "Member must satisfy regular expression pattern: [a-zA-Z0-9]+"))
		}
	}
	return nil
}

func (s *Server) opUpdate(r *http.Request, body []byte) (any, *apiError) {
	var in kvsproto.UpdateSignalingChannelInput
	if e := decodeBody(body, &in); e != nil {
		return nil, e
	}
	if in.ChannelARN == "" {
		return nil, missing("channelARN")
	}
	if in.CurrentVersion == "" {
		return nil, missing("currentVersion")
	}
	if e := checkVersion(in.CurrentVersion); e != nil {
		return nil, e
	}
	if _, e := s.resolveARN("channelARN", in.ChannelARN); e != nil {
		return nil, e
	}
	var ttl *int
	if in.SingleMasterConfiguration != nil && in.SingleMasterConfiguration.MessageTtlSeconds != nil {
		v, e := checkTTL(in.SingleMasterConfiguration)
		if e != nil {
			return nil, e
		}
		ttl = &v
	}
	c, e := s.store.mutate(in.ChannelARN, func(c *channel) *apiError {
		if c.Version != in.CurrentVersion {
			return errVersionMismatch(fmt.Sprintf("The CurrentVersion %s does not match the channel's version %s; describe the channel to get its current version.", in.CurrentVersion, c.Version))
		}
		if ttl != nil {
			c.TTLSeconds = *ttl
		}
		c.Version = newVersion()
		return nil
	})
	if e != nil {
		return nil, e
	}
	s.log.Info("channel updated", "channel", c.Name, "message_ttl_seconds", c.TTLSeconds, "version", c.Version)
	return struct{}{}, nil
}

func (s *Server) opDelete(r *http.Request, body []byte) (any, *apiError) {
	var in kvsproto.DeleteSignalingChannelInput
	if e := decodeBody(body, &in); e != nil {
		return nil, e
	}
	if in.ChannelARN == "" {
		return nil, missing("channelARN")
	}
	if in.CurrentVersion != "" {
		if e := checkVersion(in.CurrentVersion); e != nil {
			return nil, e
		}
	}
	if _, e := s.resolveARN("channelARN", in.ChannelARN); e != nil {
		return nil, e
	}
	c, e := s.store.remove(in.ChannelARN, in.CurrentVersion)
	if e != nil {
		return nil, e
	}
	s.hub.CloseChannel(c.ARN)
	s.sessions.end(c.ARN, "channel deleted")
	s.log.Info("channel deleted", "channel", c.Name, "arn", c.ARN)
	return struct{}{}, nil
}

// opGetEndpoint returns one endpoint per requested protocol, in request
// order. Without SingleMasterChannelEndpointConfiguration it answers as for
// Protocols [WSS, HTTPS] and Role MASTER (§9.9). WEBRTC is answered (with
// this listener: the storage API lives on it) only for a channel whose media
// storage is ENABLED; otherwise it is refused with InvalidArgumentException,
// as the API reference says.
func (s *Server) opGetEndpoint(r *http.Request, body []byte) (any, *apiError) {
	var in kvsproto.GetSignalingChannelEndpointInput
	if e := decodeBody(body, &in); e != nil {
		return nil, e
	}
	c, e := s.resolveARN("channelARN", in.ChannelARN)
	if e != nil {
		return nil, e
	}
	protos := []string{string(kvsproto.ProtocolWSS), string(kvsproto.ProtocolHTTPS)}
	role := kvsproto.RoleMaster
	if cfg := in.SingleMasterChannelEndpointConfiguration; cfg != nil {
		if cfg.Protocols != nil {
			protos = cfg.Protocols
			if len(protos) < 1 || len(protos) > 5 {
				return nil, errInvalidArgument(validationMsg("singleMasterChannelEndpointConfiguration.protocols", "", "Member must have length between 1 and 5"))
			}
		}
		if cfg.Role != "" {
			rl, err := kvsproto.ParseRole(cfg.Role)
			if err != nil {
				return nil, errInvalidArgument(validationMsg("singleMasterChannelEndpointConfiguration.role", cfg.Role, "Member must satisfy enum value set: [MASTER, VIEWER]"))
			}
			role = rl
		}
	}
	out := kvsproto.GetSignalingChannelEndpointOutput{ResourceEndpointList: make([]kvsproto.ResourceEndpoint, 0, len(protos))}
	for _, p := range protos {
		proto, err := kvsproto.ParseProtocol(p)
		if err != nil {
			return nil, errInvalidArgument(validationMsg("singleMasterChannelEndpointConfiguration.protocols", p, "Member must satisfy enum value set: [WSS, HTTPS, WEBRTC]"))
		}
		var ep string
		switch proto {
		case kvsproto.ProtocolWSS:
			ep = s.WSSEndpoint(role)
		case kvsproto.ProtocolHTTPS:
			ep = s.URL()
		case kvsproto.ProtocolWebRTC:
			if c.StorageStreamARN == "" {
				return nil, errInvalidArgument(fmt.Sprintf("The WEBRTC protocol is available only for channels configured for media storage, and %s is not: link it to a stream with UpdateMediaStorageConfiguration (Status ENABLED), or request WSS and HTTPS.", c.Name))
			}
			ep = s.URL()
		}
		out.ResourceEndpointList = append(out.ResourceEndpointList, kvsproto.ResourceEndpoint{Protocol: proto, ResourceEndpoint: ep})
	}
	return out, nil
}

func (s *Server) opTag(r *http.Request, body []byte) (any, *apiError) {
	var in kvsproto.TagResourceInput
	if e := decodeBody(body, &in); e != nil {
		return nil, e
	}
	if in.Tags == nil {
		return nil, missing("tags")
	}
	tags, e := checkTags("tags", in.Tags, 1)
	if e != nil {
		return nil, e
	}
	if _, e := s.resolveARN("resourceARN", in.ResourceARN); e != nil {
		return nil, e
	}
	_, e = s.store.mutate(in.ResourceARN, func(c *channel) *apiError {
		merged := make(map[string]string, len(c.Tags)+len(tags))
		for k, v := range c.Tags {
			merged[k] = v
		}
		for k, v := range tags {
			merged[k] = v
		}
		if len(merged) > maxTagsPerRes {
			return &apiError{http.StatusBadRequest, kvsproto.ErrCodeTagsPerResourceExceeded,
				fmt.Sprintf("The resource would have %d tags; the limit is %d.", len(merged), maxTagsPerRes)}
		}
		c.Tags = merged
		return nil
	})
	if e != nil {
		return nil, e
	}
	return struct{}{}, nil
}

func (s *Server) opUntag(r *http.Request, body []byte) (any, *apiError) {
	var in kvsproto.UntagResourceInput
	if e := decodeBody(body, &in); e != nil {
		return nil, e
	}
	if in.TagKeyList == nil {
		return nil, missing("tagKeyList")
	}
	if len(in.TagKeyList) < 1 || len(in.TagKeyList) > maxTagsPerRes {
		return nil, errInvalidArgument(validationMsg("tagKeyList", "", fmt.Sprintf("Member must have length between 1 and %d", maxTagsPerRes)))
	}
	for i, k := range in.TagKeyList {
		if e := checkTagString(fmt.Sprintf("tagKeyList.%d.member", i+1), k, 1, maxTagKeyLen); e != nil {
			return nil, e
		}
	}
	if _, e := s.resolveARN("resourceARN", in.ResourceARN); e != nil {
		return nil, e
	}
	_, e := s.store.mutate(in.ResourceARN, func(c *channel) *apiError {
		if len(c.Tags) == 0 {
			return nil
		}
		tags := make(map[string]string, len(c.Tags))
		for k, v := range c.Tags {
			tags[k] = v
		}
		for _, k := range in.TagKeyList {
			delete(tags, k)
		}
		if len(tags) == 0 {
			tags = nil
		}
		c.Tags = tags
		return nil
	})
	if e != nil {
		return nil, e
	}
	return struct{}{}, nil
}

func (s *Server) opListTags(r *http.Request, body []byte) (any, *apiError) {
	var in kvsproto.ListTagsForResourceInput
	if e := decodeBody(body, &in); e != nil {
		return nil, e
	}
	if len(in.NextToken) > maxNextTokenLen {
		return nil, errInvalidArgument(validationMsg("nextToken", "", "Member must have length between 0 and 1024"))
	}
	c, e := s.resolveARN("resourceARN", in.ResourceARN)
	if e != nil {
		return nil, e
	}
	tags := c.Tags
	if tags == nil {
		tags = map[string]string{}
	}
	// At most 50 tags: everything fits one page, so NextToken is ignored.
	return kvsproto.ListTagsForResourceOutput{Tags: tags}, nil
}
