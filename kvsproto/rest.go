package kvsproto

// REST-JSON shapes of the control plane (kinesisvideo 2017-09-30) and the
// signaling HTTPS API (kinesis-video-signaling 2019-12-04). Field names are
// exactly those of the AWS service models; every operation is a POST with a
// JSON body to the path in the Path* constants.

// Control-plane operation paths (case-sensitive).
const (
	PathCreateSignalingChannel            = "/createSignalingChannel"
	PathDescribeSignalingChannel          = "/describeSignalingChannel"
	PathListSignalingChannels             = "/listSignalingChannels"
	PathUpdateSignalingChannel            = "/updateSignalingChannel"
	PathDeleteSignalingChannel            = "/deleteSignalingChannel"
	PathGetSignalingChannelEndpoint       = "/getSignalingChannelEndpoint"
	PathTagResource                       = "/TagResource"
	PathUntagResource                     = "/UntagResource"
	PathListTagsForResource               = "/ListTagsForResource"
	PathDescribeMediaStorageConfiguration = "/describeMediaStorageConfiguration"
)

// Signaling HTTPS operation paths, served on the channel's HTTPS endpoint.
const (
	PathGetIceServerConfig     = "/v1/get-ice-server-config"
	PathSendAlexaOfferToMaster = "/v1/send-alexa-offer-to-master"
)

// AWS error codes (the x-amzn-ErrorType value before the ':').
const (
	ErrCodeInvalidArgument         = "InvalidArgumentException"
	ErrCodeClientLimitExceeded     = "ClientLimitExceededException"
	ErrCodeAccountChannelLimit     = "AccountChannelLimitExceededException"
	ErrCodeResourceInUse           = "ResourceInUseException"
	ErrCodeResourceNotFound        = "ResourceNotFoundException"
	ErrCodeAccessDenied            = "AccessDeniedException"
	ErrCodeVersionMismatch         = "VersionMismatchException"
	ErrCodeTagsPerResourceExceeded = "TagsPerResourceExceededLimitException"
	ErrCodeNotAuthorized           = "NotAuthorizedException"
	ErrCodeInvalidClient           = "InvalidClientException"
	ErrCodeSessionExpired          = "SessionExpiredException"
	ErrCodeUnknownOperation        = "UnknownOperationException"
	ErrCodeSerialization           = "SerializationException"
)

// SingleMasterConfiguration holds a channel's MessageTtlSeconds.
type SingleMasterConfiguration struct {
	MessageTtlSeconds *int `json:"MessageTtlSeconds,omitempty"` //nolint:revive // AWS field name
}

// Tag is a key/value tag in list form.
type Tag struct {
	Key   string `json:"Key"`
	Value string `json:"Value"`
}

// ChannelInfo describes a signaling channel. CreationTime is epoch seconds
// as a JSON number, as the SDKs require.
type ChannelInfo struct {
	ChannelName               string                     `json:"ChannelName"`
	ChannelARN                string                     `json:"ChannelARN"`
	ChannelType               ChannelType                `json:"ChannelType"`
	ChannelStatus             ChannelStatus              `json:"ChannelStatus"`
	CreationTime              float64                    `json:"CreationTime"`
	SingleMasterConfiguration *SingleMasterConfiguration `json:"SingleMasterConfiguration,omitempty"`
	Version                   string                     `json:"Version"`
}

// CreateSignalingChannelInput is the body of CreateSignalingChannel.
type CreateSignalingChannelInput struct {
	ChannelName               string                     `json:"ChannelName"`
	ChannelType               string                     `json:"ChannelType,omitempty"`
	SingleMasterConfiguration *SingleMasterConfiguration `json:"SingleMasterConfiguration,omitempty"`
	Tags                      []Tag                      `json:"Tags,omitempty"`
}

// CreateSignalingChannelOutput is the response of CreateSignalingChannel.
type CreateSignalingChannelOutput struct {
	ChannelARN string `json:"ChannelARN"`
}

// DescribeSignalingChannelInput names a channel by ChannelName or ChannelARN.
type DescribeSignalingChannelInput struct {
	ChannelName string `json:"ChannelName,omitempty"`
	ChannelARN  string `json:"ChannelARN,omitempty"`
}

// DescribeSignalingChannelOutput is the response of DescribeSignalingChannel.
type DescribeSignalingChannelOutput struct {
	ChannelInfo ChannelInfo `json:"ChannelInfo"`
}

// ChannelNameCondition filters ListSignalingChannels by name prefix.
type ChannelNameCondition struct {
	ComparisonOperator string `json:"ComparisonOperator,omitempty"` // "BEGINS_WITH"
	ComparisonValue    string `json:"ComparisonValue,omitempty"`
}

// ListSignalingChannelsInput is the body of ListSignalingChannels.
type ListSignalingChannelsInput struct {
	MaxResults           *int                  `json:"MaxResults,omitempty"`
	NextToken            string                `json:"NextToken,omitempty"`
	ChannelNameCondition *ChannelNameCondition `json:"ChannelNameCondition,omitempty"`
}

// ListSignalingChannelsOutput is the response of ListSignalingChannels.
type ListSignalingChannelsOutput struct {
	ChannelInfoList []ChannelInfo `json:"ChannelInfoList"`
	NextToken       string        `json:"NextToken,omitempty"`
}

// UpdateSignalingChannelInput is the body of UpdateSignalingChannel.
type UpdateSignalingChannelInput struct {
	ChannelARN                string                     `json:"ChannelARN"`
	CurrentVersion            string                     `json:"CurrentVersion"`
	SingleMasterConfiguration *SingleMasterConfiguration `json:"SingleMasterConfiguration,omitempty"`
}

// DeleteSignalingChannelInput is the body of DeleteSignalingChannel.
type DeleteSignalingChannelInput struct {
	ChannelARN     string `json:"ChannelARN"`
	CurrentVersion string `json:"CurrentVersion,omitempty"`
}

// SingleMasterChannelEndpointConfiguration selects protocols and role.
type SingleMasterChannelEndpointConfiguration struct {
	Protocols []string `json:"Protocols,omitempty"`
	Role      string   `json:"Role,omitempty"`
}

// GetSignalingChannelEndpointInput is the body of GetSignalingChannelEndpoint.
type GetSignalingChannelEndpointInput struct {
	ChannelARN                               string                                    `json:"ChannelARN"`
	SingleMasterChannelEndpointConfiguration *SingleMasterChannelEndpointConfiguration `json:"SingleMasterChannelEndpointConfiguration,omitempty"`
}

// ResourceEndpoint is one endpoint of GetSignalingChannelEndpoint.
type ResourceEndpoint struct {
	Protocol         Protocol `json:"Protocol"`
	ResourceEndpoint string   `json:"ResourceEndpoint"`
}

// GetSignalingChannelEndpointOutput is the response of GetSignalingChannelEndpoint.
type GetSignalingChannelEndpointOutput struct {
	ResourceEndpointList []ResourceEndpoint `json:"ResourceEndpointList"`
}

// TagResourceInput is the body of TagResource.
type TagResourceInput struct {
	ResourceARN string `json:"ResourceARN"`
	Tags        []Tag  `json:"Tags"`
}

// UntagResourceInput is the body of UntagResource.
type UntagResourceInput struct {
	ResourceARN string   `json:"ResourceARN"`
	TagKeyList  []string `json:"TagKeyList"`
}

// ListTagsForResourceInput is the body of ListTagsForResource.
type ListTagsForResourceInput struct {
	ResourceARN string `json:"ResourceARN"`
	NextToken   string `json:"NextToken,omitempty"`
}

// ListTagsForResourceOutput is the response of ListTagsForResource. Tags is a
// map, unlike the list form used on input.
type ListTagsForResourceOutput struct {
	Tags      map[string]string `json:"Tags"`
	NextToken string            `json:"NextToken,omitempty"`
}

// GetIceServerConfigInput is the body of GetIceServerConfig.
type GetIceServerConfigInput struct {
	ChannelARN string `json:"ChannelARN"`
	ClientID   string `json:"ClientId,omitempty"`
	Service    string `json:"Service,omitempty"` // "TURN"
	Username   string `json:"Username,omitempty"`
}

// IceServer is one TURN server set of GetIceServerConfig. Ttl is whole
// seconds.
type IceServer struct {
	Uris     []string `json:"Uris"`
	Username string   `json:"Username"`
	Password string   `json:"Password"`
	Ttl      int      `json:"Ttl"` //nolint:revive // AWS field name
}

// GetIceServerConfigOutput is the response of GetIceServerConfig.
type GetIceServerConfigOutput struct {
	IceServerList []IceServer `json:"IceServerList"`
}

// SendAlexaOfferToMasterInput is the body of SendAlexaOfferToMaster.
type SendAlexaOfferToMasterInput struct {
	ChannelARN     string `json:"ChannelARN"`
	SenderClientID string `json:"SenderClientId"`
	MessagePayload string `json:"MessagePayload"`
}

// SendAlexaOfferToMasterOutput is the response of SendAlexaOfferToMaster.
type SendAlexaOfferToMasterOutput struct {
	Answer string `json:"Answer"`
}

// ErrorBody is the JSON body of an AWS REST-JSON error response.
type ErrorBody struct {
	Message string `json:"Message"`
}
