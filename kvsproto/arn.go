package kvsproto

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ChannelARN is a parsed signaling channel ARN:
// arn:{partition}:kinesisvideo:{region}:{account}:channel/{name}/{creationMillis}.
type ChannelARN struct {
	Partition      string // "aws", "aws-cn", "aws-us-gov", ...
	Region         string // e.g. "us-west-2"
	Account        string // 12 digits
	Name           string // channel name
	CreationMillis int64  // creation time, epoch milliseconds
}

// String formats the ARN.
func (a ChannelARN) String() string {
	return "arn:" + a.Partition + ":kinesisvideo:" + a.Region + ":" + a.Account + ":channel/" + a.Name + "/" + strconv.FormatInt(a.CreationMillis, 10)
}

// ParseChannelARN parses and validates a signaling channel ARN.
func ParseChannelARN(s string) (ChannelARN, error) {
	var a ChannelARN
	if s == "" {
		return a, invalid("ChannelARN", s, "must not be empty")
	}
	if len(s) > MaxARNLen {
		return a, invalid("ChannelARN", s, fmt.Sprintf("is %d characters long; the limit is %d", len(s), MaxARNLen))
	}
	const example = "; expected arn:aws:kinesisvideo:REGION:ACCOUNT:channel/NAME/CREATION_MILLIS"
	parts := strings.SplitN(s, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" {
		return a, invalid("ChannelARN", s, "is not an ARN"+example)
	}
	if !isLowerAlnumDash(parts[1]) {
		return a, invalid("ChannelARN", s, "has an invalid partition"+example)
	}
	if parts[2] != "kinesisvideo" {
		return a, invalid("ChannelARN", s, fmt.Sprintf("is for service %q, not kinesisvideo%s", parts[2], example))
	}
	if !isLowerAlnumDash(parts[3]) {
		return a, invalid("ChannelARN", s, "has an invalid region"+example)
	}
	if parts[4] == "" || strings.Trim(parts[4], "0123456789") != "" {
		return a, invalid("ChannelARN", s, "has an invalid account id (digits only)"+example)
	}
	res := strings.Split(parts[5], "/")
	if len(res) != 3 || res[0] != "channel" {
		if len(res) == 3 && res[0] == "stream" {
			return a, invalid("ChannelARN", s, "is a stream ARN, not a signaling channel ARN"+example)
		}
		return a, invalid("ChannelARN", s, "has an invalid resource part"+example)
	}
	if err := ValidateChannelName(res[1]); err != nil {
		reason := err.Error()
		var ve *ValidationError
		if errors.As(err, &ve) {
			reason = ve.Reason
		}
		return a, invalid("ChannelARN", s, "has an invalid channel name: "+reason)
	}
	ms, err := strconv.ParseInt(res[2], 10, 64)
	if err != nil || ms < 0 || strings.Trim(res[2], "0123456789") != "" {
		return a, invalid("ChannelARN", s, "has an invalid creation time (digits only)"+example)
	}
	return ChannelARN{Partition: parts[1], Region: parts[3], Account: parts[4], Name: res[1], CreationMillis: ms}, nil
}

func isLowerAlnumDash(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// PartitionForRegion returns the ARN partition of an AWS region name.
func PartitionForRegion(region string) string {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn"
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov"
	default:
		return "aws"
	}
}
