package emulator

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// apiError is an AWS error response: HTTP status, error code (the
// x-amzn-ErrorType) and message.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func errInvalidArgument(msg string) *apiError {
	return &apiError{http.StatusBadRequest, kvsproto.ErrCodeInvalidArgument, msg}
}

func errNotFound(msg string) *apiError {
	return &apiError{http.StatusNotFound, kvsproto.ErrCodeResourceNotFound, msg}
}

func errInUse(msg string) *apiError {
	return &apiError{http.StatusBadRequest, kvsproto.ErrCodeResourceInUse, msg}
}

func errVersionMismatch(msg string) *apiError {
	return &apiError{http.StatusBadRequest, kvsproto.ErrCodeVersionMismatch, msg}
}

func errClientLimit(msg string) *apiError {
	return &apiError{http.StatusBadRequest, kvsproto.ErrCodeClientLimitExceeded, msg}
}

func errSerialization(msg string) *apiError {
	return &apiError{http.StatusBadRequest, kvsproto.ErrCodeSerialization, msg}
}

// errAccessDenied is the control plane's AccessDeniedException (401 in the
// service model).
func errAccessDenied(msg string) *apiError {
	return &apiError{http.StatusUnauthorized, kvsproto.ErrCodeAccessDenied, msg}
}

const channelNotFoundMsg = "The requested channel is not found or not active."

// errorTypeSuffix is appended to the code in x-amzn-ErrorType, as AWS's
// Coral services do; every AWS SDK strips what follows the ':'.
const (
	errorTypeSuffixKV  = ":http://internal.amazon.com/coral/com.amazonaws.kinesisvideo.v20170930/"
	errorTypeSuffixSig = ":http://internal.amazon.com/coral/com.amazonaws.kinesisvideo.signaling.v20191204/"
	errorTypeSuffixSto = ":http://internal.amazon.com/coral/com.amazonaws.kinesisvideo.webrtc.storage.v20180510/"
)

// lowercaseMessage lists the exceptions whose model member is "message".
func lowercaseMessage(code string) bool {
	return code == kvsproto.ErrCodeInvalidClient || code == kvsproto.ErrCodeSessionExpired
}

// writeAPIError writes e in the AWS REST-JSON error format of api. The
// storage API's exceptions all spell their member "message".
func writeAPIError(w http.ResponseWriter, e *apiError, api apiKind) {
	h := w.Header()
	suffix := errorTypeSuffixKV
	switch api {
	case apiSignaling:
		suffix = errorTypeSuffixSig
	case apiStorage:
		suffix = errorTypeSuffixSto
	}
	h.Set("Content-Type", "application/json")
	h.Set("x-amzn-ErrorType", e.Code+suffix)
	key := "Message"
	if lowercaseMessage(e.Code) || api == apiStorage {
		key = "message"
	}
	body, _ := json.Marshal(map[string]string{key: e.Message})
	w.WriteHeader(e.Status)
	_, _ = w.Write(body)
}

// writeJSON writes a 200 response with v as compact JSON.
func writeJSON(w http.ResponseWriter, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		writeAPIError(w, &apiError{http.StatusInternalServerError, "InternalFailure", "could not encode the response"}, apiControl)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// writeWSError answers a failed WebSocket upgrade: a plain HTTP response with
// an API-Gateway-style body {"message":"..."} (kvs-protocol.md §9.10).
func writeWSError(w http.ResponseWriter, e *apiError) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("x-amzn-ErrorType", e.Code)
	body, _ := json.Marshal(map[string]string{"message": e.Message})
	w.WriteHeader(e.Status)
	_, _ = w.Write(body)
}

// newRequestID returns a random UUID (version 4) string.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	s := hex.EncodeToString(b[:])
	return s[0:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:32]
}

// CORS: every response carries these; preflights get the rest
// (shared/testvectors/README.md, "CORS, on every HTTP port").
const (
	corsExposeHeaders = "Date, x-amzn-RequestId, x-amzn-ErrorType, x-amzn-ErrorMessage"
	corsAllowMethods  = "POST, OPTIONS"
	corsMaxAge        = "600"
)

// corsAllowHeaders are always allowed in a preflight; headers the browser
// asks for are added to them.
var corsAllowHeaders = []string{
	"authorization", "content-type", "x-amz-content-sha256", "x-amz-date",
	"x-amz-security-token", "x-amz-user-agent", "x-amz-target",
	"amz-sdk-invocation-id", "amz-sdk-request",
}

func setCORS(h http.Header) {
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
}

// preflight answers a CORS preflight request.
func preflight(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	allowed := append([]string(nil), corsAllowHeaders...)
	seen := map[string]bool{}
	for _, a := range allowed {
		seen[a] = true
	}
	for _, v := range r.Header.Values("Access-Control-Request-Headers") {
		for _, name := range strings.Split(v, ",") {
			name = strings.ToLower(strings.TrimSpace(name))
			if name != "" && validHeaderName(name) && !seen[name] {
				seen[name] = true
				allowed = append(allowed, name)
			}
		}
	}
	h.Set("Access-Control-Allow-Methods", corsAllowMethods)
	h.Set("Access-Control-Allow-Headers", strings.Join(allowed, ", "))
	h.Set("Access-Control-Max-Age", corsMaxAge)
	w.WriteHeader(http.StatusOK)
}

func validHeaderName(s string) bool {
	if len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
