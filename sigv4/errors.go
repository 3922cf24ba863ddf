package sigv4

import (
	"errors"
	"net/http"
)

// Sentinel errors wrapped by every *Error, one per kind of verification failure.
var (
	// ErrMissingAuth: the request carries no SigV4 authentication at all.
	ErrMissingAuth = errors.New("sigv4: missing authentication")
	// ErrMalformed: the Authorization header, presign query or credential scope is malformed or incomplete.
	ErrMalformed = errors.New("sigv4: malformed signature")
	// ErrUnknownAccessKey: the access key id is not known to the verifier.
	ErrUnknownAccessKey = errors.New("sigv4: unknown access key id")
	// ErrSignatureMismatch: the signature (or the payload hash) does not match the request.
	ErrSignatureMismatch = errors.New("sigv4: signature mismatch")
	// ErrExpired: a presigned URL is older than its X-Amz-Expires.
	ErrExpired = errors.New("sigv4: presigned URL expired")
	// ErrClockSkew: X-Amz-Date is further than the allowed skew from the verifier's clock.
	ErrClockSkew = errors.New("sigv4: request time too skewed")
	// ErrBadToken: the session token is missing or does not match the credentials.
	ErrBadToken = errors.New("sigv4: invalid security token")
	// ErrWrongService: the credential scope names another service than kinesisvideo.
	ErrWrongService = errors.New("sigv4: credential scoped to wrong service")
)

// AWS error codes used in Error.Code.
const (
	CodeMissingAuthenticationToken = "MissingAuthenticationTokenException"
	CodeIncompleteSignature        = "IncompleteSignatureException"
	CodeUnrecognizedClient         = "UnrecognizedClientException"
	CodeInvalidSignature           = "InvalidSignatureException"
)

// Messages AWS uses for the corresponding failures.
const (
	msgMissingAuth     = "Missing Authentication Token"
	msgInvalidToken    = "The security token included in the request is invalid."
	msgSignatureDiffer = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method."
)

// Error is returned for every verification failure. Code and Message are
// what an AWS service answers (x-amzn-ErrorType and the JSON "Message"); Err
// is one of the sentinel errors, for errors.Is.
type Error struct {
	// Code is the AWS error code, e.g. "InvalidSignatureException".
	Code string
	// Message is the AWS-style human readable message. For clock skew it
	// starts with "Signature expired" or "Signature not yet current", which
	// the KVS C SDK looks for.
	Message string
	// Err is one of ErrMissingAuth, ErrMalformed, ErrUnknownAccessKey,
	// ErrSignatureMismatch, ErrExpired, ErrClockSkew, ErrBadToken, ErrWrongService.
	Err error
}

// Error returns "Code: Message".
func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Unwrap returns the sentinel error.
func (e *Error) Unwrap() error { return e.Err }

// HTTPStatus is the status to answer with: 400 for
// IncompleteSignatureException, 403 otherwise.
func (e *Error) HTTPStatus() int {
	if e.Code == CodeIncompleteSignature {
		return http.StatusBadRequest
	}
	return http.StatusForbidden
}

func missingAuth() *Error {
	return &Error{Code: CodeMissingAuthenticationToken, Message: msgMissingAuth, Err: ErrMissingAuth}
}

func malformed(msg string) *Error {
	return &Error{Code: CodeIncompleteSignature, Message: msg, Err: ErrMalformed}
}

func unknownKey() *Error {
	return &Error{Code: CodeUnrecognizedClient, Message: msgInvalidToken, Err: ErrUnknownAccessKey}
}

func badToken() *Error {
	return &Error{Code: CodeUnrecognizedClient, Message: msgInvalidToken, Err: ErrBadToken}
}

func mismatch(detail string) *Error {
	m := msgSignatureDiffer
	if detail != "" {
		m += " (" + detail + ")"
	}
	return &Error{Code: CodeInvalidSignature, Message: m, Err: ErrSignatureMismatch}
}

func wrongService(got string) *Error {
	return &Error{
		Code:    CodeInvalidSignature,
		Message: "Credential should be scoped to correct service: '" + ServiceName + "'. (got '" + got + "')",
		Err:     ErrWrongService,
	}
}
