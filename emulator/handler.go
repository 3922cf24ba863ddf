package emulator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/sigv4"
)

// Paths of the WebSocket endpoints handed out by GetSignalingChannelEndpoint.
// "/" is accepted too: there the role is MASTER without X-Amz-ClientId and
// VIEWER with it (that is what a relay with one endpoint for both sees).
const (
	pathWSMaster = "/ws/master"
	pathWSViewer = "/ws/viewer"
	pathAdmin    = "/_kvsrtc/"
)

// apiKind is the AWS API an operation belongs to; it decides the error
// format (writeAPIError).
type apiKind int

const (
	apiControl   apiKind = iota // kinesisvideo 2017-09-30
	apiSignaling                // kinesis-video-signaling 2019-12-04
	apiStorage                  // kinesis-video-webrtc-storage 2018-05-10
)

// operation is one REST operation.
type operation struct {
	name   string
	api    apiKind
	handle func(s *Server, r *http.Request, body []byte) (any, *apiError)
}

var operations = map[string]operation{
	kvsproto.PathCreateSignalingChannel:            {"CreateSignalingChannel", apiControl, (*Server).opCreate},
	kvsproto.PathDescribeSignalingChannel:          {"DescribeSignalingChannel", apiControl, (*Server).opDescribe},
	kvsproto.PathListSignalingChannels:             {"ListSignalingChannels", apiControl, (*Server).opList},
	kvsproto.PathUpdateSignalingChannel:            {"UpdateSignalingChannel", apiControl, (*Server).opUpdate},
	kvsproto.PathDeleteSignalingChannel:            {"DeleteSignalingChannel", apiControl, (*Server).opDelete},
	kvsproto.PathGetSignalingChannelEndpoint:       {"GetSignalingChannelEndpoint", apiControl, (*Server).opGetEndpoint},
	kvsproto.PathTagResource:                       {"TagResource", apiControl, (*Server).opTag},
	kvsproto.PathUntagResource:                     {"UntagResource", apiControl, (*Server).opUntag},
	kvsproto.PathListTagsForResource:               {"ListTagsForResource", apiControl, (*Server).opListTags},
	kvsproto.PathDescribeMediaStorageConfiguration: {"DescribeMediaStorageConfiguration", apiControl, (*Server).opDescribeMediaStorage},
	kvsproto.PathCreateStream:                      {"CreateStream", apiControl, (*Server).opCreateStream},
	kvsproto.PathDescribeStream:                    {"DescribeStream", apiControl, (*Server).opDescribeStream},
	kvsproto.PathListStreams:                       {"ListStreams", apiControl, (*Server).opListStreams},
	kvsproto.PathDeleteStream:                      {"DeleteStream", apiControl, (*Server).opDeleteStream},
	kvsproto.PathUpdateMediaStorageConfiguration:   {"UpdateMediaStorageConfiguration", apiControl, (*Server).opUpdateMediaStorage},
	kvsproto.PathJoinStorageSession:                {"JoinStorageSession", apiStorage, (*Server).opJoinStorageSession},
	kvsproto.PathJoinStorageSessionAsViewer:        {"JoinStorageSessionAsViewer", apiStorage, (*Server).opJoinStorageSessionAsViewer},
	kvsproto.PathGetDataEndpoint:                   {"GetDataEndpoint", apiControl, (*Server).opGetDataEndpoint},
	kvsproto.PathGetClip:                           {"GetClip", apiControl, (*Server).opGetClip},
	kvsproto.PathGetHLSStreamingSessionURL:         {"GetHLSStreamingSessionURL", apiControl, (*Server).opGetHLSURL},
	kvsproto.PathListFragments:                     {"ListFragments", apiControl, (*Server).opListFragments},
	kvsproto.PathGetIceServerConfig:                {"GetIceServerConfig", apiSignaling, (*Server).opGetIceServerConfig},
	kvsproto.PathSendAlexaOfferToMaster:            {"SendAlexaOfferToMaster", apiSignaling, (*Server).opSendAlexaOffer},
}

func knownOperation(name string) bool {
	for _, op := range operations {
		if op.name == name {
			return true
		}
	}
	return false
}

// ServeHTTP routes every request of the single listener.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	reqID := newRequestID()
	h.Set("x-amzn-RequestId", reqID)
	h.Set("Date", s.now().UTC().Format(http.TimeFormat))
	p := r.URL.Path
	if strings.HasPrefix(p, pathAdmin) {
		// No CORS headers: no web page may call or read the admin API.
		s.serveAdmin(w, r)
		return
	}
	setCORS(h)
	if r.Method == http.MethodOptions {
		preflight(w, r)
		return
	}
	if r.Method == http.MethodGet && (p == "/" || p == pathWSMaster || p == pathWSViewer) && isUpgrade(r) {
		// A WebSocket lives far longer than the server's read and write
		// timeouts, which would otherwise stay on the hijacked connection.
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Time{})
		_ = rc.SetWriteDeadline(time.Time{})
		s.serveWS(w, r, reqID)
		return
	}
	if strings.HasPrefix(p, kvsproto.PathHLSPrefix) {
		// The session token authorizes these; they are not signed.
		s.serveHLS(w, r, reqID)
		return
	}
	if isSTS(r) {
		s.serveSTS(w, r, reqID)
		return
	}
	op, ok := operations[p]
	if !ok || r.Method != http.MethodPost {
		s.log.Info("request rejected", "method", r.Method, "path", p, "code", kvsproto.ErrCodeUnknownOperation, "remote", r.RemoteAddr, "request_id", reqID)
		writeAPIError(w, &apiError{http.StatusNotFound, kvsproto.ErrCodeUnknownOperation,
			fmt.Sprintf("No operation matches %s %s; the control plane takes POST /createSignalingChannel etc., the signaling API POST /v1/get-ice-server-config, the storage API POST /joinStorageSession.", r.Method, p)}, apiControl)
		return
	}
	body, e := readBody(w, r)
	if e == nil {
		e = s.authenticate(r, body)
	}
	if e == nil && s.throttle.take(op.name) {
		s.log.Warn("fault fired: API call throttled", "operation", op.name)
		e = errClientLimit("Your request has been throttled (injected fault throttle-api).")
	}
	var out any
	if e == nil {
		out, e = op.handle(s, r, body)
	}
	if e != nil {
		lvl := "request rejected"
		if e.Status >= 500 {
			s.log.Error(lvl, "operation", op.name, "status", e.Status, "code", e.Code, "reason", e.Message, "remote", r.RemoteAddr, "request_id", reqID)
		} else {
			s.log.Info(lvl, "operation", op.name, "status", e.Status, "code", e.Code, "reason", e.Message, "remote", r.RemoteAddr, "request_id", reqID)
		}
		writeAPIError(w, e, op.api)
		return
	}
	s.log.Debug("request", "operation", op.name, "remote", r.RemoteAddr, "request_id", reqID)
	if raw, ok := out.(rawResponse); ok {
		raw.writeResponse(w)
		return
	}
	writeJSON(w, out)
}

func isUpgrade(r *http.Request) bool {
	return headerHasToken(r.Header, "Upgrade", "websocket")
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// readBody reads the request body up to maxBodyBytes.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	if r.ContentLength > maxBodyBytes {
		return nil, &apiError{http.StatusRequestEntityTooLarge, kvsproto.ErrCodeSerialization,
			fmt.Sprintf("The request body is %d bytes; the limit is %d.", r.ContentLength, maxBodyBytes)}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &apiError{http.StatusRequestEntityTooLarge, kvsproto.ErrCodeSerialization,
				fmt.Sprintf("The request body is larger than the limit of %d bytes.", maxBodyBytes)}
		}
		return nil, errSerialization("Could not read the request body: " + err.Error())
	}
	return body, nil
}

// authenticate checks the SigV4 signature and the region of its scope.
func (s *Server) authenticate(r *http.Request, body []byte) *apiError {
	res, err := s.verifier.VerifyRequest(r, body)
	if err != nil {
		return sigv4APIError(err)
	}
	if res.Region != s.cfg.Region {
		return &apiError{http.StatusForbidden, sigv4.CodeInvalidSignature,
			fmt.Sprintf("Credential should be scoped to a valid region. This service runs in '%s', the request was signed for '%s'.", s.cfg.Region, res.Region)}
	}
	return nil
}

func sigv4APIError(err error) *apiError {
	var se *sigv4.Error
	if errors.As(err, &se) {
		return &apiError{se.HTTPStatus(), se.Code, se.Message}
	}
	return &apiError{http.StatusInternalServerError, "InternalFailure", err.Error()}
}

// decodeBody decodes a REST-JSON request body into v. An empty body is {}.
func decodeBody(body []byte, v any) *apiError {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil
	}
	if body[0] != '{' {
		return errSerialization("The request body must be a JSON object.")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return errSerialization(fmt.Sprintf("Field %s: expected a JSON %s, got %s.", te.Field, jsonKind(te.Type.Kind().String()), te.Value))
		}
		return errSerialization("The request body is not valid JSON: " + err.Error())
	}
	if dec.More() {
		return errSerialization("The request body has data after the JSON object.")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errSerialization("The request body has data after the JSON object.")
	}
	return nil
}

func jsonKind(k string) string {
	switch k {
	case "int", "int64", "int32", "float64":
		return "number"
	case "slice":
		return "array"
	case "struct", "map", "ptr":
		return "object"
	}
	return k
}

// serveAdmin serves /_kvsrtc/...: faults, clock, TURN, stats, CA.
func (s *Server) serveAdmin(w http.ResponseWriter, r *http.Request) {
	sub := strings.TrimPrefix(r.URL.Path, pathAdmin)
	if !s.adminAllowed(w, r, sub) {
		return
	}
	reply := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		b, _ := json.Marshal(v)
		_, _ = w.Write(b)
	}
	fail := func(status int, msg string) {
		s.log.Info("admin request rejected", "path", r.URL.Path, "reason", msg)
		reply(status, map[string]string{"message": msg})
	}
	method := func(m string) bool {
		if r.Method != m {
			fail(http.StatusMethodNotAllowed, "use "+m+" "+r.URL.Path)
			return false
		}
		return true
	}
	switch sub {
	case "healthz":
		reply(http.StatusOK, map[string]string{"status": "ok"})
	case "stats":
		if method(http.MethodGet) {
			reply(http.StatusOK, s.Stats())
		}
	case "faults":
		if !method(http.MethodPost) {
			return
		}
		raw, err := io.ReadAll(io.LimitReader(r.Body, 4096))
		if err != nil {
			fail(http.StatusBadRequest, "could not read the body")
			return
		}
		spec := strings.TrimSpace(string(raw))
		if strings.HasPrefix(spec, "{") {
			var in struct {
				Spec string `json:"spec"`
			}
			if err := json.Unmarshal(raw, &in); err != nil {
				fail(http.StatusBadRequest, `body must be a fault spec, or {"spec":"..."}: `+err.Error())
				return
			}
			spec = in.Spec
		}
		f, err := ParseFault(spec)
		if err != nil {
			fail(http.StatusBadRequest, err.Error())
			return
		}
		n, err := s.Inject(f)
		if err != nil {
			fail(http.StatusBadRequest, err.Error())
			return
		}
		reply(http.StatusOK, map[string]any{"kind": f.Kind, "affected": n})
	case "clock":
		switch r.Method {
		case http.MethodGet:
		case http.MethodPost:
			var in struct {
				Skew string `json:"skew"`
			}
			raw, _ := io.ReadAll(io.LimitReader(r.Body, 4096))
			if err := json.Unmarshal(raw, &in); err != nil {
				fail(http.StatusBadRequest, `body must be {"skew":"-5m"}: `+err.Error())
				return
			}
			d, err := time.ParseDuration(in.Skew)
			if err != nil {
				fail(http.StatusBadRequest, fmt.Sprintf("skew %q is not a duration like -5m or 90s", in.Skew))
				return
			}
			if _, err := s.Inject(Fault{Kind: FaultSkewClock, Delay: d}); err != nil {
				fail(http.StatusBadRequest, err.Error())
				return
			}
		default:
			fail(http.StatusMethodNotAllowed, "use GET or POST "+r.URL.Path)
			return
		}
		reply(http.StatusOK, map[string]string{"now": s.now().UTC().Format(time.RFC3339Nano), "skew": time.Duration(s.skew.Load()).String()})
	case "turn/expire":
		if method(http.MethodPost) {
			s.ExpireTURNCredentials()
			reply(http.StatusOK, map[string]string{"status": "expired"})
		}
	case "ca.pem":
		if !method(http.MethodGet) {
			return
		}
		if s.tls == nil {
			fail(http.StatusNotFound, "the service runs without TLS (start it with --tls)")
			return
		}
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write(s.tls.certPEM)
	default:
		fail(http.StatusNotFound, "unknown admin path; use /_kvsrtc/{healthz,stats,faults,clock,turn/expire,ca.pem}")
	}
}

// processStats fills the process figures of st.
func processStats(st *Stats) {
	st.Goroutines = runtime.NumGoroutine()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st.HeapBytes = ms.HeapInuse
	st.RSSBytes = readRSS()
}

// readRSS returns the resident set size from /proc/self/status (Linux), or 0.
func readRSS() int64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err == nil {
					return kb * 1024
				}
			}
		}
	}
	return 0
}
