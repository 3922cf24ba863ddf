package emulator

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/kvsrtc/kvsrtc/kvsproto"
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
