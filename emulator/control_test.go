package emulator_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/sigv4"
)

func tlsConfig(pool *x509.CertPool) *tls.Config {
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

func TestControlPlaneLifecycle(t *testing.T) {
	srv := start(t, emulator.Config{TURNDisabled: true})
	c := newClient(t, srv)

	ttl := 30
	var created kvsproto.CreateSignalingChannelOutput
	c.mustPost(kvsproto.PathCreateSignalingChannel, kvsproto.CreateSignalingChannelInput{
		ChannelName: "life", ChannelType: "SINGLE_MASTER",
		SingleMasterConfiguration: &kvsproto.SingleMasterConfiguration{MessageTtlSeconds: &ttl},
		Tags:                      []kvsproto.Tag{{Key: "team", Value: "video"}},
	}, &created)
	a, err := kvsproto.ParseChannelARN(created.ChannelARN)
	if err != nil || a.Name != "life" || a.Region != "us-west-2" || a.Account != "123456789012" {
		t.Fatalf("ARN %q: %+v %v", created.ChannelARN, a, err)
	}

	// Describe by name and by ARN; CreationTime is a JSON number.
	var raw json.RawMessage
	c.mustPost(kvsproto.PathDescribeSignalingChannel, map[string]string{"ChannelName": "life"}, &raw)
	var generic map[string]map[string]any
	if err := json.Unmarshal(raw, &generic); err != nil {
		t.Fatal(err)
	}
	if _, ok := generic["ChannelInfo"]["CreationTime"].(float64); !ok {
		t.Fatalf("CreationTime is not a number: %s", raw)
	}
	var d kvsproto.DescribeSignalingChannelOutput
	c.mustPost(kvsproto.PathDescribeSignalingChannel, map[string]string{"ChannelARN": created.ChannelARN}, &d)
	info := d.ChannelInfo
	if info.ChannelStatus != kvsproto.StatusActive || *info.SingleMasterConfiguration.MessageTtlSeconds != 30 ||
		info.Version == "" || int64(info.CreationTime*1000+0.5) != a.CreationMillis {
		t.Fatalf("ChannelInfo %+v", info)
	}

	// Update needs the current version and changes it.
	ttl2 := 90
	st, code, _ := c.post(kvsproto.PathUpdateSignalingChannel, kvsproto.UpdateSignalingChannelInput{ChannelARN: created.ChannelARN, CurrentVersion: "wrong1", SingleMasterConfiguration: &kvsproto.SingleMasterConfiguration{MessageTtlSeconds: &ttl2}})
	if st != 400 || code != kvsproto.ErrCodeVersionMismatch {
		t.Fatalf("update with a wrong version: %d %s", st, code)
	}
	c.mustPost(kvsproto.PathUpdateSignalingChannel, kvsproto.UpdateSignalingChannelInput{ChannelARN: created.ChannelARN, CurrentVersion: info.Version, SingleMasterConfiguration: &kvsproto.SingleMasterConfiguration{MessageTtlSeconds: &ttl2}}, nil)
	c.mustPost(kvsproto.PathDescribeSignalingChannel, map[string]string{"ChannelARN": created.ChannelARN}, &d)
	if d.ChannelInfo.Version == info.Version || *d.ChannelInfo.SingleMasterConfiguration.MessageTtlSeconds != 90 {
		t.Fatalf("after update: %+v", d.ChannelInfo)
	}

	// Tags.
	c.mustPost(kvsproto.PathTagResource, kvsproto.TagResourceInput{ResourceARN: created.ChannelARN, Tags: []kvsproto.Tag{{Key: "env", Value: "test"}}}, nil)
	c.mustPost(kvsproto.PathUntagResource, kvsproto.UntagResourceInput{ResourceARN: created.ChannelARN, TagKeyList: []string{"team"}}, nil)
	var tags kvsproto.ListTagsForResourceOutput
	c.mustPost(kvsproto.PathListTagsForResource, kvsproto.ListTagsForResourceInput{ResourceARN: created.ChannelARN}, &tags)
	if len(tags.Tags) != 1 || tags.Tags["env"] != "test" {
		t.Fatalf("tags %v", tags.Tags)
	}

	// Endpoints: one per protocol, in order, distinct per role, no trailing slash.
	eps := map[kvsproto.Role][]kvsproto.ResourceEndpoint{}
	for _, role := range []kvsproto.Role{kvsproto.RoleMaster, kvsproto.RoleViewer} {
		var out kvsproto.GetSignalingChannelEndpointOutput
		c.mustPost(kvsproto.PathGetSignalingChannelEndpoint, kvsproto.GetSignalingChannelEndpointInput{ChannelARN: created.ChannelARN,
			SingleMasterChannelEndpointConfiguration: &kvsproto.SingleMasterChannelEndpointConfiguration{Protocols: []string{"HTTPS", "WSS"}, Role: string(role)}}, &out)
		eps[role] = out.ResourceEndpointList
		if len(out.ResourceEndpointList) != 2 || out.ResourceEndpointList[0].Protocol != "HTTPS" || out.ResourceEndpointList[1].Protocol != "WSS" {
			t.Fatalf("%s endpoints %+v", role, out)
		}
		for _, e := range out.ResourceEndpointList {
			u, err := url.Parse(e.ResourceEndpoint)
			if err != nil || strings.HasSuffix(e.ResourceEndpoint, "/") || u.Port() == "443" || u.Port() == "80" {
				t.Errorf("endpoint %q: want no trailing slash and no default port", e.ResourceEndpoint)
			}
		}
	}
	if eps[kvsproto.RoleMaster][1].ResourceEndpoint == eps[kvsproto.RoleViewer][1].ResourceEndpoint {
		t.Fatal("master and viewer WSS endpoints are the same")
	}
	if !strings.HasPrefix(eps[kvsproto.RoleMaster][1].ResourceEndpoint, "ws://") || eps[kvsproto.RoleMaster][0].ResourceEndpoint != srv.URL() {
		t.Fatalf("endpoints %+v", eps)
	}

	// Delete with a wrong version fails, then succeeds; then 404.
	st, code, _ = c.post(kvsproto.PathDeleteSignalingChannel, kvsproto.DeleteSignalingChannelInput{ChannelARN: created.ChannelARN, CurrentVersion: "nope"})
	if st != 400 || code != kvsproto.ErrCodeVersionMismatch {
		t.Fatalf("delete with a wrong version: %d %s", st, code)
	}
	c.mustPost(kvsproto.PathDeleteSignalingChannel, kvsproto.DeleteSignalingChannelInput{ChannelARN: created.ChannelARN}, nil)
	st, code, body := c.post(kvsproto.PathDescribeSignalingChannel, map[string]string{"ChannelName": "life"})
	if st != 404 || code != kvsproto.ErrCodeResourceNotFound || !strings.Contains(string(body), `"Message"`) {
		t.Fatalf("describe after delete: %d %s %s", st, code, body)
	}
	// A new channel with the same name has a new ARN.
	if again := c.createChannel("life"); again == created.ChannelARN {
		t.Fatal("re-created channel reuses the ARN")
	}
}

func TestListPagination(t *testing.T) {
	srv := start(t, emulator.Config{TURNDisabled: true, Channels: []string{"b-1", "b-2", "b-3", "a-1", "c-1"}})
	c := newClient(t, srv)
	var names []string
	token := ""
	pages := 0
	for {
		two := 2
		in := kvsproto.ListSignalingChannelsInput{MaxResults: &two, NextToken: token, ChannelNameCondition: &kvsproto.ChannelNameCondition{ComparisonOperator: "BEGINS_WITH", ComparisonValue: "b-"}}
		var out kvsproto.ListSignalingChannelsOutput
		c.mustPost(kvsproto.PathListSignalingChannels, in, &out)
		pages++
		for _, ci := range out.ChannelInfoList {
			names = append(names, ci.ChannelName)
		}
		if out.NextToken == "" {
			break
		}
		token = out.NextToken
	}
	if strings.Join(names, ",") != "b-1,b-2,b-3" || pages != 2 {
		t.Fatalf("names %v in %d pages", names, pages)
	}
	var all kvsproto.ListSignalingChannelsOutput
	c.mustPost(kvsproto.PathListSignalingChannels, struct{}{}, &all)
	if len(all.ChannelInfoList) != 5 || all.NextToken != "" {
		t.Fatalf("list all: %+v", all)
	}
	// An empty body is {}.
	st, _, raw := c.post(kvsproto.PathListSignalingChannels, "")
	if st != 200 || !strings.Contains(string(raw), `"ChannelInfoList":[`) {
		t.Fatalf("empty body: %d %s", st, raw)
	}
	for _, bad := range []string{`{"MaxResults":0}`, `{"MaxResults":10001}`, `{"NextToken":"!!"}`, `{"ChannelNameCondition":{"ComparisonOperator":"ENDS_WITH","ComparisonValue":"x"}}`} {
		if st, code, _ := c.post(kvsproto.PathListSignalingChannels, bad); st != 400 || code != kvsproto.ErrCodeInvalidArgument {
			t.Errorf("%s: %d %s", bad, st, code)
		}
	}
}

func TestErrorModel(t *testing.T) {
	srv := start(t, emulator.Config{TURNDisabled: true, Channels: []string{"taken"}})
	c := newClient(t, srv)
	foreign := "arn:aws:kinesisvideo:eu-west-1:999999999999:channel/x/1700000000000"
	cases := []struct {
		name   string
		path   string
		body   string
		status int
		code   string
	}{
		{"malformed JSON", kvsproto.PathCreateSignalingChannel, `{"ChannelName":`, 400, kvsproto.ErrCodeSerialization},
		{"not an object", kvsproto.PathCreateSignalingChannel, `[1]`, 400, kvsproto.ErrCodeSerialization},
		{"wrong type", kvsproto.PathListSignalingChannels, `{"MaxResults":"ten"}`, 400, kvsproto.ErrCodeSerialization},
		{"trailing data", kvsproto.PathListSignalingChannels, `{} {}`, 400, kvsproto.ErrCodeSerialization},
		{"missing name", kvsproto.PathCreateSignalingChannel, `{}`, 400, kvsproto.ErrCodeInvalidArgument},
		{"bad name", kvsproto.PathCreateSignalingChannel, `{"ChannelName":"a b"}`, 400, kvsproto.ErrCodeInvalidArgument},
		{"long name", kvsproto.PathCreateSignalingChannel, `{"ChannelName":"` + strings.Repeat("n", 257) + `"}`, 400, kvsproto.ErrCodeInvalidArgument},
		{"bad ttl", kvsproto.PathCreateSignalingChannel, `{"ChannelName":"t","SingleMasterConfiguration":{"MessageTtlSeconds":4}}`, 400, kvsproto.ErrCodeInvalidArgument},
		{"full mesh", kvsproto.PathCreateSignalingChannel, `{"ChannelName":"t","ChannelType":"FULL_MESH"}`, 400, kvsproto.ErrCodeInvalidArgument},
		{"duplicate", kvsproto.PathCreateSignalingChannel, `{"ChannelName":"taken"}`, 400, kvsproto.ErrCodeResourceInUse},
		{"bad tag", kvsproto.PathCreateSignalingChannel, `{"ChannelName":"t","Tags":[{"Key":"a*","Value":""}]}`, 400, kvsproto.ErrCodeInvalidArgument},
		{"neither name nor ARN", kvsproto.PathDescribeSignalingChannel, `{}`, 400, kvsproto.ErrCodeInvalidArgument},
		{"invalid ARN", kvsproto.PathDescribeSignalingChannel, `{"ChannelARN":"arn:aws:s3:::bucket"}`, 400, kvsproto.ErrCodeInvalidArgument},
		{"foreign ARN", kvsproto.PathDescribeSignalingChannel, `{"ChannelARN":"` + foreign + `"}`, 401, kvsproto.ErrCodeAccessDenied},
		{"unknown ARN", kvsproto.PathGetSignalingChannelEndpoint, `{"ChannelARN":"arn:aws:kinesisvideo:us-west-2:123456789012:channel/none/1"}`, 404, kvsproto.ErrCodeResourceNotFound},
		{"unknown operation", "/putMedia", `{}`, 404, kvsproto.ErrCodeUnknownOperation},
		{"stream without name", kvsproto.PathCreateStream, `{}`, 400, kvsproto.ErrCodeInvalidArgument},
		{"stream ARN of a channel", kvsproto.PathDescribeStream, `{"StreamARN":"arn:aws:kinesisvideo:us-west-2:123456789012:channel/none/1"}`, 400, kvsproto.ErrCodeInvalidArgument},
		{"storage status missing", kvsproto.PathUpdateMediaStorageConfiguration, `{"ChannelARN":"arn:aws:kinesisvideo:us-west-2:123456789012:channel/none/1","MediaStorageConfiguration":{}}`, 400, kvsproto.ErrCodeInvalidArgument},
		{"wrong case path", "/CreateSignalingChannel", `{}`, 404, kvsproto.ErrCodeUnknownOperation},
		{"bad Service", kvsproto.PathGetIceServerConfig, `{"ChannelARN":"x","Service":"STUN"}`, 400, kvsproto.ErrCodeInvalidArgument},
	}
	for _, tc := range cases {
		st, code, body := c.post(tc.path, tc.body)
		if st != tc.status || code != tc.code {
			t.Errorf("%s: got %d %s (%s), want %d %s", tc.name, st, code, body, tc.status, tc.code)
			continue
		}
		var m map[string]string
		if err := json.Unmarshal(body, &m); err != nil || m["Message"] == "" {
			t.Errorf("%s: body %s is not {\"Message\":...}", tc.name, body)
		}
	}

	// WEBRTC protocol is refused on a channel without media storage.
	arn := c.createChannel("ep")
	st, code, _ := c.post(kvsproto.PathGetSignalingChannelEndpoint, `{"ChannelARN":"`+arn+`","SingleMasterChannelEndpointConfiguration":{"Protocols":["WEBRTC"],"Role":"MASTER"}}`)
	if st != 400 || code != kvsproto.ErrCodeInvalidArgument {
		t.Fatalf("WEBRTC: %d %s", st, code)
	}

	// Oversize body.
	st, code, _ = c.post(kvsproto.PathCreateSignalingChannel, `{"ChannelName":"x","Pad":"`+strings.Repeat("p", 2<<20)+`"}`)
	if st != http.StatusRequestEntityTooLarge || code != kvsproto.ErrCodeSerialization {
		t.Fatalf("oversize: %d %s", st, code)
	}
}

func TestSignatureFailures(t *testing.T) {
	srv := start(t, emulator.Config{TURNDisabled: true, Channels: []string{"sig"}})
	c := newClient(t, srv)
	body := `{"ChannelName":"sig"}`

	// No signature.
	req, _ := http.NewRequest(http.MethodPost, srv.URL()+kvsproto.PathDescribeSignalingChannel, strings.NewReader(body))
	st, code, _ := c.do(req)
	if st != 403 || code != sigv4.CodeMissingAuthenticationToken {
		t.Fatalf("unsigned: %d %s", st, code)
	}
	// Wrong secret.
	bad := newClient(t, srv)
	bad.creds.SecretAccessKey = "not-the-secret"
	if st, code, _ := bad.post(kvsproto.PathDescribeSignalingChannel, body); st != 403 || code != sigv4.CodeInvalidSignature {
		t.Fatalf("wrong secret: %d %s", st, code)
	}
	// Unknown key.
	bad.creds.AccessKeyID = "AKIDUNKNOWN"
	if st, code, _ := bad.post(kvsproto.PathDescribeSignalingChannel, body); st != 403 || code != sigv4.CodeUnrecognizedClient {
		t.Fatalf("unknown key: %d %s", st, code)
	}
	// Clock skew beyond 5 minutes: the message says "Signature expired" (the C SDK looks for it).
	old := newClient(t, srv)
	old.now = func() time.Time { return time.Now().Add(-6 * time.Minute) }
	st, code, raw := old.post(kvsproto.PathDescribeSignalingChannel, body)
	if st != 403 || code != sigv4.CodeInvalidSignature || !strings.Contains(string(raw), "Signature expired") {
		t.Fatalf("skewed: %d %s %s", st, code, raw)
	}
	// Signed for another region.
	req, _ = http.NewRequest(http.MethodPost, srv.URL()+kvsproto.PathDescribeSignalingChannel, strings.NewReader(body))
	if err := sigv4.SignRequest(req, []byte(body), srv.Credentials(), "eu-west-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	st, code, raw = c.do(req)
	if st != 403 || code != sigv4.CodeInvalidSignature || !strings.Contains(string(raw), "us-west-2") {
		t.Fatalf("wrong region: %d %s %s", st, code, raw)
	}
	// Tampered body.
	req, _ = http.NewRequest(http.MethodPost, srv.URL()+kvsproto.PathDescribeSignalingChannel, strings.NewReader(`{"ChannelName":"other"}`))
	if err := sigv4.SignRequest(req, []byte(body), srv.Credentials(), "us-west-2", time.Now()); err != nil {
		t.Fatal(err)
	}
	if st, code, _ := c.do(req); st != 403 || code != sigv4.CodeInvalidSignature {
		t.Fatalf("tampered: %d %s", st, code)
	}
}

func TestResponseHeadersAndCORS(t *testing.T) {
	srv := start(t, emulator.Config{TURNDisabled: true, Channels: []string{"cors"}})
	c := newClient(t, srv)

	req, _ := http.NewRequest(http.MethodOptions, srv.URL()+kvsproto.PathDescribeSignalingChannel, nil)
	req.Header.Set("Origin", "http://127.0.0.1:5555")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "authorization,content-type,x-amz-content-sha256,x-amz-date,x-amz-security-token,x-amz-user-agent,x-custom")
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := resp.Header
	if resp.StatusCode/100 != 2 || h.Get("Access-Control-Allow-Origin") != "*" || h.Get("Access-Control-Allow-Methods") != "POST, OPTIONS" {
		t.Fatalf("preflight: %d %v", resp.StatusCode, h)
	}
	allowed := h.Get("Access-Control-Allow-Headers")
	for _, want := range []string{"authorization", "content-type", "x-amz-content-sha256", "x-amz-date", "x-amz-security-token", "x-amz-user-agent", "x-custom"} {
		if !strings.Contains(allowed, want) {
			t.Errorf("Allow-Headers %q lacks %s", allowed, want)
		}
	}
	if strings.Contains(allowed, "*") {
		t.Error("Allow-Headers must name headers, not *")
	}

	for _, tc := range []struct {
		body string
		ok   bool
	}{{`{"ChannelName":"cors"}`, true}, {`{"ChannelName":"none"}`, false}} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL()+kvsproto.PathDescribeSignalingChannel, strings.NewReader(tc.body))
		if err := sigv4.SignRequest(req, []byte(tc.body), srv.Credentials(), srv.Region(), time.Now()); err != nil {
			t.Fatal(err)
		}
		resp, err := c.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		h := resp.Header
		if h.Get("Access-Control-Allow-Origin") != "*" || !strings.Contains(h.Get("Access-Control-Expose-Headers"), "x-amzn-ErrorType") ||
			!strings.Contains(h.Get("Access-Control-Expose-Headers"), "Date") || h.Get("x-amzn-RequestId") == "" ||
			h.Get("Content-Type") != "application/json" {
			t.Errorf("headers %v", h)
		}
		if d, err := http.ParseTime(h.Get("Date")); err != nil || time.Since(d).Abs() > time.Minute {
			t.Errorf("Date %q", h.Get("Date"))
		}
		if !tc.ok && !strings.HasPrefix(h.Get("x-amzn-ErrorType"), "ResourceNotFoundException:") {
			t.Errorf("x-amzn-ErrorType %q", h.Get("x-amzn-ErrorType"))
		}
	}

	// The Date header follows the skewed service clock.
	srv.SetClockSkew(-2 * time.Hour)
	req, _ = http.NewRequest(http.MethodGet, srv.URL()+"/_kvsrtc/healthz", nil)
	resp, err = c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if d, _ := http.ParseTime(resp.Header.Get("Date")); time.Since(d) < 119*time.Minute {
		t.Fatalf("Date %v does not follow the skew", d)
	}
}

func TestThrottleAPIFault(t *testing.T) {
	srv := start(t, emulator.Config{TURNDisabled: true, Channels: []string{"th"}, Faults: []string{"throttle-api,target=DescribeSignalingChannel,count=2"}})
	c := newClient(t, srv)
	for i := 0; i < 2; i++ {
		if st, code, _ := c.post(kvsproto.PathDescribeSignalingChannel, `{"ChannelName":"th"}`); st != 400 || code != kvsproto.ErrCodeClientLimitExceeded {
			t.Fatalf("call %d: %d %s", i, st, code)
		}
	}
	c.mustPost(kvsproto.PathDescribeSignalingChannel, `{"ChannelName":"th"}`, nil)
}

func TestConfigValidation(t *testing.T) {
	bad := []emulator.Config{
		{Region: "US West"},
		{AccountID: "12"},
		{Channels: []string{"bad name"}},
		{Faults: []string{"explode"}},
		{GoAwayGrace: time.Hour, MaxConnDuration: time.Minute},
		{PreCreate: []kvsproto.ChannelARN{{Partition: "aws", Region: "eu-west-1", Account: "123456789012", Name: "x", CreationMillis: 1}}},
		{Addr: "nohostport"},
	}
	for _, cfg := range bad {
		if srv, err := emulator.Start(t.Context(), cfg); err == nil {
			srv.Close()
			t.Errorf("Start(%+v) succeeded", cfg)
		}
	}
	_, err := emulator.Start(t.Context(), emulator.Config{Faults: []string{"drop,bogus=1"}})
	if !errors.Is(err, emulator.ErrInvalidConfig) || !errors.Is(err, emulator.ErrInvalidFault) {
		t.Fatalf("bad fault: %v", err)
	}
}

func TestHostnameAndEnv(t *testing.T) {
	srv := start(t, emulator.Config{Hostname: "localhost", TURNDisabled: true, Channels: []string{"named"}})
	if !strings.HasPrefix(srv.URL(), "http://localhost:") || !strings.HasPrefix(srv.WSSEndpoint(viewer), "ws://localhost:") {
		t.Fatalf("URL %s, WSS %s", srv.URL(), srv.WSSEndpoint(viewer))
	}
	env := map[string]string{}
	for _, kv := range srv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	want := map[string]string{
		"AWS_ENDPOINT_URL_KINESIS_VIDEO": srv.URL(), "AWS_REGION": "us-west-2",
		"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": emulator.DefaultCredentials.SecretAccessKey,
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s=%q, want %q", k, env[k], v)
		}
	}
	if _, ok := env["AWS_CA_BUNDLE"]; ok || srv.CACertPEM() != nil || srv.SPKIHash() != "" {
		t.Error("TLS material without TLS")
	}
	c := newClient(t, srv)
	var d kvsproto.DescribeSignalingChannelOutput
	c.mustPost(kvsproto.PathDescribeSignalingChannel, map[string]string{"ChannelName": "named"}, &d)
	m := c.mustDial(master, d.ChannelInfo.ChannelARN, "")
	_ = m.CloseNow()
	if _, err := emulator.Start(t.Context(), emulator.Config{Hostname: "bad/host"}); !errors.Is(err, emulator.ErrInvalidConfig) {
		t.Fatalf("bad hostname: %v", err)
	}
}
