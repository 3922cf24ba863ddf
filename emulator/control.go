package emulator

import (
	"fmt"
	"net/http"

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
