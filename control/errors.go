package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"

	"github.com/kvsrtc/kvsrtc/internal/netdiag"
	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// Sentinel errors. Every *APIError unwraps to at most one of them (see
// APIError.Unwrap); other failures of this package wrap them with %w.
var (
	// ErrChannelNotFound: the channel does not exist in this account and
	// region (ResourceNotFoundException).
	ErrChannelNotFound = errors.New("control: channel not found")
	// ErrAccessDenied: the credentials were refused (AccessDenied,
	// NotAuthorized, UnrecognizedClient, InvalidSignature, an invalid or
	// expired security token, a signature mismatch).
	ErrAccessDenied = errors.New("control: access denied")
	// ErrThrottled: the service throttled the call (ClientLimitExceededException).
	ErrThrottled = errors.New("control: throttled")
	// ErrInvalidArgument: the service (or this package, before calling it)
	// rejected an argument.
	ErrInvalidArgument = errors.New("control: invalid argument")
	// ErrResourceInUse: the channel exists already (CreateChannel) or is in
	// a state that forbids the operation (ResourceInUseException).
	ErrResourceInUse = errors.New("control: resource in use")
	// ErrChannelDeleting: the channel is being deleted (status DELETING).
	ErrChannelDeleting = errors.New("control: channel is being deleted")
	// ErrClockSkew: the service refused the signature because the request
	// time is too far from its clock ("Signature expired", "Signature not
	// yet current", RequestTimeTooSkewed), even after correcting the clock.
	ErrClockSkew = errors.New("control: clock skew")
	// ErrMissingRegion: no region was configured.
	ErrMissingRegion = errors.New("control: no AWS region configured")
	// ErrMissingCredentials: no AWS credentials could be found.
	ErrMissingCredentials = errors.New("control: no AWS credentials found")
	// ErrBadResponse: the service answered with something this package
	// cannot use (missing endpoints, undecodable JSON).
	ErrBadResponse = errors.New("control: unusable response from the service")
	// ErrUnreachable: the request got no answer at all: the endpoint's
	// host name did not resolve, nothing listened, the TLS handshake or a
	// proxy failed, or it timed out. The error is an *UnreachableError
	// that names the endpoint, what failed and the fix.
	ErrUnreachable = errors.New("control: service unreachable")
)

// UnreachableError is a request that got no answer from the control plane
// (or STS): its Endpoint, what failed (Failure: "dns", "proxy", "refused",
// "dial", "tls-unknown-ca", "tls-name-mismatch", "tls", "closed",
// "timeout") and, from Advice, what to do. It unwraps to ErrUnreachable and
// to the underlying error. package signaling's UnreachableError is the
// same type (unwrapping to signaling.ErrUnreachable).
type UnreachableError = netdiag.Error

// Unreachable returns err as an *UnreachableError when it is a failure to
// reach a service (no answer at all), else nil. service names the service
// in the message ("KVS control plane", "STS"); endpoint "" is taken from
// the request URL in err.
func Unreachable(err error, service, op, endpoint string) *UnreachableError {
	return netdiag.Wrap(err, ErrUnreachable, "control: ", netdiag.Service(service), op, endpoint)
}

// APIError is an error answer of the KVS service in the AWS error model.
// It unwraps to the sentinel that describes it (ErrChannelNotFound,
// ErrAccessDenied, ErrThrottled, ErrInvalidArgument, ErrResourceInUse,
// ErrClockSkew) and, for calls made through aws-sdk-go-v2, to the SDK's own
// error (for example *types.ResourceNotFoundException).
type APIError struct {
	// Op is the API operation, e.g. "DescribeSignalingChannel".
	Op string
	// Code is the AWS error code, e.g. "ResourceNotFoundException".
	Code string
	// Message is the service's message.
	Message string
	// StatusCode is the HTTP status (0 if unknown).
	StatusCode int
	// RequestID is the x-amzn-RequestId of the failed call, if any.
	RequestID string

	cause error // the SDK's error, if any
}

// Error formats the error with its operation, code, status and request id.
func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("control: ")
	b.WriteString(e.Op)
	b.WriteString(": ")
	code := e.Code
	if code == "" {
		code = "error"
	}
	b.WriteString(code)
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.StatusCode)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.RequestID != "" {
		b.WriteString(" [request id ")
		b.WriteString(e.RequestID)
		b.WriteString("]")
	}
	return b.String()
}

// Unwrap returns the sentinel error that classifies e (if any) and the SDK
// error it was made from (if any).
func (e *APIError) Unwrap() []error {
	var out []error
	if s := classify(e.Code, e.Message, e.StatusCode); s != nil {
		out = append(out, s)
	}
	if e.cause != nil {
		out = append(out, e.cause)
	}
	return out
}

// isSkewMessage reports whether an AWS error message says that the request
// time is outside the service's window. AWS services (and the KVS C SDK,
// which looks for these strings) use these two phrasings.
func isSkewMessage(msg string) bool {
	m := strings.ToLower(msg)
	return strings.Contains(m, "signature expired") || strings.Contains(m, "signature not yet current")
}

// classify maps an AWS error to a sentinel. The code decides; the message is
// consulted only to tell clock skew from other signature failures (AWS uses
// the same codes for both) and when the code is missing.
func classify(code, msg string, status int) error {
	switch code {
	case kvsproto.ErrCodeResourceNotFound:
		return ErrChannelNotFound
	case "RequestTimeTooSkewed", "RequestExpired":
		return ErrClockSkew
	case kvsproto.ErrCodeAccessDenied, "AccessDenied", kvsproto.ErrCodeNotAuthorized,
		"UnrecognizedClientException", "InvalidSignatureException", "SignatureDoesNotMatch",
		"IncompleteSignatureException", "MissingAuthenticationTokenException",
		"InvalidClientTokenId", "ExpiredTokenException", "ExpiredToken", "AuthFailure":
		if isSkewMessage(msg) {
			return ErrClockSkew
		}
		return ErrAccessDenied
	case kvsproto.ErrCodeClientLimitExceeded, "ThrottlingException", "Throttling",
		"TooManyRequestsException", "RequestLimitExceeded":
		return ErrThrottled
	case kvsproto.ErrCodeInvalidArgument, "ValidationException", kvsproto.ErrCodeSerialization,
		kvsproto.ErrCodeInvalidClient:
		return ErrInvalidArgument
	case kvsproto.ErrCodeResourceInUse:
		return ErrResourceInUse
	case "":
		switch {
		case isSkewMessage(msg):
			return ErrClockSkew
		case strings.Contains(strings.ToLower(msg), "security token included in the request is invalid"):
			return ErrAccessDenied
		case status == http.StatusUnauthorized || status == http.StatusForbidden:
			return ErrAccessDenied
		case status == http.StatusNotFound:
			return ErrChannelNotFound
		case status == http.StatusTooManyRequests:
			return ErrThrottled
		}
	}
	return nil
}

// wrapSDKError turns an error of an aws-sdk-go-v2 operation into an
// *APIError when the service answered, or into a wrapped error otherwise.
func wrapSDKError(op string, err error) error {
	if err == nil {
		return nil
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		if ue := Unreachable(err, string(netdiag.ServiceControl), op, ""); ue != nil {
			return ue
		}
		return fmt.Errorf("control: %s: %w", op, err)
	}
	e := &APIError{Op: op, Code: ae.ErrorCode(), Message: ae.ErrorMessage(), cause: err}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		e.StatusCode = re.HTTPStatusCode()
		e.RequestID = re.ServiceRequestID()
	}
	return e
}

// parseErrorResponse builds an *APIError from a raw REST-JSON error answer,
// finding the code the way aws-sdk-go-v2 does: a "code" or "__type" member of
// the body first, then the x-amzn-ErrorType header; anything after ':' or
// ',' is dropped and only the part after '#' is kept.
func parseErrorResponse(op string, resp *http.Response, body []byte) *APIError {
	e := &APIError{Op: op, StatusCode: resp.StatusCode, RequestID: requestID(resp.Header)}
	code := resp.Header.Get("X-Amzn-ErrorType")
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) == nil {
		lower := make(map[string]string, len(fields))
		for k, v := range fields {
			var s string
			if json.Unmarshal(v, &s) == nil {
				lower[strings.ToLower(k)] = s
			}
		}
		if c := firstNonEmpty(lower["code"], lower["__type"]); c != "" {
			code = c
		}
		e.Message = firstNonEmpty(lower["message"], lower["errormessage"])
	} else if len(body) > 0 && !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		e.Message = strings.TrimSpace(string(body))
		if len(e.Message) > 512 {
			e.Message = e.Message[:512] + "..."
		}
	}
	e.Code = sanitizeErrorCode(code)
	return e
}

// sanitizeErrorCode turns "aws.protocoltests#FooError:http://..." into
// "FooError".
func sanitizeErrorCode(code string) string {
	if i := strings.IndexAny(code, ":,"); i >= 0 {
		code = code[:i]
	}
	if i := strings.LastIndexByte(code, '#'); i >= 0 {
		code = code[i+1:]
	}
	return strings.TrimSpace(code)
}

func requestID(h http.Header) string {
	if id := h.Get("X-Amzn-RequestId"); id != "" {
		return id
	}
	return h.Get("X-Amz-Request-Id")
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
