package control

import (
	"errors"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"
	"github.com/aws/smithy-go"
)

func TestParseErrorResponse(t *testing.T) {
	cases := []struct {
		status   int
		header   string
		ctype    string
		body     string
		code     string
		message  string
		sentinel error
	}{
		{404, "ResourceNotFoundException:https://kinesisvideo.amazonaws.com/doc/2017-09-30/", "application/json",
			`{"Message":"The requested channel is not found or not active."}`, "ResourceNotFoundException", "The requested channel is not found or not active.", ErrChannelNotFound},
		{400, "", "application/json", `{"__type":"com.amazon.coral#ClientLimitExceededException","message":"slow down"}`, "ClientLimitExceededException", "slow down", ErrThrottled},
		{400, "InvalidArgumentException", "application/json", `{"code":"ClientLimitExceededException"}`, "ClientLimitExceededException", "", ErrThrottled},
		{403, "InvalidSignatureException", "application/json", `{"Message":"Signature expired: 20200101T000000Z is now earlier than 20200101T000500Z"}`, "InvalidSignatureException", "", ErrClockSkew},
		{403, "InvalidSignatureException", "application/json", `{"Message":"The request signature we calculated does not match"}`, "InvalidSignatureException", "", ErrAccessDenied},
		{403, "UnrecognizedClientException", "application/json", `{"message":"The security token included in the request is invalid."}`, "UnrecognizedClientException", "", ErrAccessDenied},
		{403, "", "text/plain", `The security token included in the request is invalid.`, "", "The security token included in the request is invalid.", ErrAccessDenied},
		{401, "AccessDeniedException", "application/json", `{}`, "AccessDeniedException", "", ErrAccessDenied},
		{400, "ResourceInUseException", "application/json", `{}`, "ResourceInUseException", "", ErrResourceInUse},
		{400, "SessionExpiredException", "application/json", `{}`, "SessionExpiredException", "", nil},
		{404, "", "", ``, "", "", ErrChannelNotFound},
		{404, "UnknownOperationException", "", ``, "UnknownOperationException", "", nil},
		{500, "", "application/json", `not json`, "", "", nil},
	}
	for _, c := range cases {
		resp := &http.Response{StatusCode: c.status, Header: http.Header{}}
		if c.header != "" {
			resp.Header.Set("x-amzn-ErrorType", c.header)
		}
		if c.ctype != "" {
			resp.Header.Set("Content-Type", c.ctype)
		}
		resp.Header.Set("X-Amzn-Requestid", "rid")
		e := parseErrorResponse("Op", resp, []byte(c.body))
		if e.Code != c.code || (c.message != "" && e.Message != c.message) || e.RequestID != "rid" || e.StatusCode != c.status {
			t.Errorf("%d %s %s: got %+v", c.status, c.header, c.body, e)
		}
		var err error = e
		for _, s := range []error{ErrChannelNotFound, ErrAccessDenied, ErrThrottled, ErrInvalidArgument, ErrResourceInUse, ErrClockSkew} {
			if errors.Is(err, s) != errors.Is(c.sentinel, s) {
				t.Errorf("%d %s %s: errors.Is(%v) = %v", c.status, c.header, c.body, s, errors.Is(err, s))
			}
		}
	}
}

func TestWrapSDKError(t *testing.T) {
	sdkErr := &smithy.OperationError{ServiceID: "Kinesis Video", OperationName: "DescribeSignalingChannel",
		Err: &types.ResourceNotFoundException{Message: strPtr("gone")}}
	err := wrapSDKError("DescribeSignalingChannel", sdkErr)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != "ResourceNotFoundException" || ae.Message != "gone" {
		t.Fatalf("%v", err)
	}
	var rnf *types.ResourceNotFoundException
	if !errors.Is(err, ErrChannelNotFound) || !errors.As(err, &rnf) {
		t.Fatalf("unwrap: %v", err)
	}
	plain := wrapSDKError("X", errors.New("dial tcp: refused"))
	if errors.As(plain, &ae) {
		t.Fatal("a network error is not an APIError")
	}
	if wrapSDKError("X", nil) != nil {
		t.Fatal("nil")
	}
}

func strPtr(s string) *string { return &s }
