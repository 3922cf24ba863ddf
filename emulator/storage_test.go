package emulator_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// storageClient calls the Kinesis Video WebRTC Storage API, signed with
// aws-sdk-go-v2's SigV4 signer (signing name kinesisvideo), as package
// control signs its signaling calls: the SDK's storage client is not served
// by the module proxy here.
type storageClient struct {
	t        *testing.T
	endpoint string
	region   string
	creds    aws.Credentials
	http     *http.Client
}

func newStorageClient(t *testing.T, srv *emulator.Server, endpoint string) *storageClient {
	tr := &http.Transport{}
	if pool := srv.CertPool(); pool != nil {
		tr.TLSClientConfig = tlsConfig(pool)
	}
	t.Cleanup(tr.CloseIdleConnections)
	cr := srv.Credentials()
	return &storageClient{t: t, endpoint: endpoint, region: srv.Region(),
		creds: aws.Credentials{AccessKeyID: cr.AccessKeyID, SecretAccessKey: cr.SecretAccessKey, SessionToken: cr.SessionToken},
		http:  &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// storageError is a decoded storage API error.
type storageError struct {
	Status  int
	Code    string
	Message string
}

// call POSTs body to path and returns nil on 200, or the error.
func (c *storageClient) call(path string, body any) *storageError {
	c.t.Helper()
	raw, err := json.Marshal(body)
	if err != nil {
		c.t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, c.endpoint+path, bytes.NewReader(raw))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	sum := sha256.Sum256(raw)
	if err := v4.NewSigner().SignHTTP(context.Background(), c.creds, req, hex.EncodeToString(sum[:]), "kinesisvideo", c.region, time.Now()); err != nil {
		c.t.Fatal(err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	code, _, _ := strings.Cut(resp.Header.Get("x-amzn-ErrorType"), ":")
	var msg struct {
		Message string `json:"message"`
	}
	if err := json.Unmarshal(out, &msg); err != nil || msg.Message == "" {
		c.t.Fatalf("POST %s: HTTP %d: error body %q has no \"message\" member", path, resp.StatusCode, out)
	}
	return &storageError{resp.StatusCode, code, msg.Message}
}

// wantErr checks a storage error's status, code and message words.
func wantErr(t *testing.T, what string, e *storageError, status int, code string, words ...string) {
	t.Helper()
	if e == nil {
		t.Fatalf("%s: succeeded, want %d %s", what, status, code)
	}
	if e.Status != status || e.Code != code {
		t.Fatalf("%s: HTTP %d %s (%s), want %d %s", what, e.Status, e.Code, e.Message, status, code)
	}
	for _, w := range words {
		if !strings.Contains(e.Message, w) {
			t.Fatalf("%s: message %q does not mention %q", what, e.Message, w)
		}
	}
}

func webrtcEndpoint(ctx context.Context, t *testing.T, kv *kinesisvideo.Client, arn string, role types.ChannelRole) (string, error) {
	t.Helper()
	out, err := kv.GetSignalingChannelEndpoint(ctx, &kinesisvideo.GetSignalingChannelEndpointInput{
		ChannelARN: aws.String(arn),
		SingleMasterChannelEndpointConfiguration: &types.SingleMasterChannelEndpointConfiguration{
			Protocols: []types.ChannelProtocol{types.ChannelProtocolWss, types.ChannelProtocolHttps, types.ChannelProtocolWebrtc}, Role: role},
	})
	if err != nil {
		return "", err
	}
	for _, e := range out.ResourceEndpointList {
		if e.Protocol == types.ChannelProtocolWebrtc {
			return aws.ToString(e.ResourceEndpoint), nil
		}
	}
	t.Fatalf("no WEBRTC endpoint in %+v", out.ResourceEndpointList)
	return "", nil
}

func TestStreamsSDK(t *testing.T) {
	t.Parallel()
	srv := start(t, emulator.Config{TURNDisabled: true})
	kv := sdkClient(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	created, err := kv.CreateStream(ctx, &kinesisvideo.CreateStreamInput{
		StreamName: aws.String("cam-1"), DataRetentionInHours: aws.Int32(24), MediaType: aws.String("video/h264,audio/aac"),
		DeviceName: aws.String("door"), Tags: map[string]string{"site": "home"},
	})
	if err != nil {
		t.Fatalf("CreateStream: %v", err)
	}
	arn := aws.ToString(created.StreamARN)
	if !strings.HasPrefix(arn, "arn:aws:kinesisvideo:"+srv.Region()+":") || !strings.Contains(arn, ":stream/cam-1/") {
		t.Fatalf("StreamARN %q", arn)
	}
	d, err := kv.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String("cam-1")})
	if err != nil {
		t.Fatalf("DescribeStream: %v", err)
	}
	si := d.StreamInfo
	if aws.ToString(si.StreamARN) != arn || si.Status != types.StatusActive || aws.ToInt32(si.DataRetentionInHours) != 24 ||
		aws.ToString(si.MediaType) != "video/h264,audio/aac" || aws.ToString(si.DeviceName) != "door" || aws.ToString(si.Version) == "" ||
		!strings.HasSuffix(aws.ToString(si.KmsKeyId), ":alias/aws/kinesisvideo") || si.CreationTime == nil || time.Since(*si.CreationTime).Abs() > time.Minute {
		t.Fatalf("StreamInfo %+v", si)
	}
	if _, err := kv.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamARN: aws.String(arn)}); err != nil {
		t.Fatalf("DescribeStream by ARN: %v", err)
	}
	for _, n := range []string{"cam-2", "cam-3", "other"} {
		if _, err := kv.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String(n)}); err != nil {
			t.Fatalf("CreateStream %s: %v", n, err)
		}
	}
	var names []string
	pager := kinesisvideo.NewListStreamsPaginator(kv, &kinesisvideo.ListStreamsInput{MaxResults: aws.Int32(2),
		StreamNameCondition: &types.StreamNameCondition{ComparisonOperator: types.ComparisonOperatorBeginsWith, ComparisonValue: aws.String("cam-")}})
	for pager.HasMorePages() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatalf("ListStreams: %v", err)
		}
		for _, s := range page.StreamInfoList {
			names = append(names, aws.ToString(s.StreamName))
		}
	}
	if strings.Join(names, ",") != "cam-1,cam-2,cam-3" {
		t.Fatalf("ListStreams names %v", names)
	}

	// Errors, as typed exceptions.
	_, err = kv.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String("cam-1")})
	var inUse *types.ResourceInUseException
	if !errors.As(err, &inUse) || !strings.Contains(inUse.ErrorMessage(), "already exists") {
		t.Fatalf("duplicate stream: %v, want ResourceInUseException", err)
	}
	var inv *types.InvalidArgumentException
	for _, in := range []*kinesisvideo.CreateStreamInput{
		{StreamName: aws.String("bad name")},
		{StreamName: aws.String("x"), MediaType: aws.String("h264")},
		{StreamName: aws.String("x"), DataRetentionInHours: aws.Int32(-1)},
		{StreamName: aws.String("x"), DeviceName: aws.String("bad device")},
	} {
		if _, err := kv.CreateStream(ctx, in); !errors.As(err, &inv) {
			t.Fatalf("CreateStream %+v: %v, want InvalidArgumentException", in, err)
		}
	}
	_, err = kv.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamARN: aws.String("arn:aws:kinesisvideo:eu-west-1:111122223333:stream/theirs/1")})
	var denied *types.NotAuthorizedException
	if !errors.As(err, &denied) {
		t.Fatalf("foreign stream ARN: %v, want NotAuthorizedException", err)
	}
	_, err = kv.DeleteStream(ctx, &kinesisvideo.DeleteStreamInput{StreamARN: aws.String(arn), CurrentVersion: aws.String("stale")})
	var vm *types.VersionMismatchException
	if !errors.As(err, &vm) {
		t.Fatalf("stale version: %v, want VersionMismatchException", err)
	}
	if _, err := kv.DeleteStream(ctx, &kinesisvideo.DeleteStreamInput{StreamARN: aws.String(arn), CurrentVersion: si.Version}); err != nil {
		t.Fatalf("DeleteStream: %v", err)
	}
	_, err = kv.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String("cam-1")})
	var nf *types.ResourceNotFoundException
	if !errors.As(err, &nf) {
		t.Fatalf("deleted stream: %v, want ResourceNotFoundException", err)
	}
	// A new stream with the same name gets a new ARN.
	again, err := kv.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String("cam-1")})
	if err != nil || aws.ToString(again.StreamARN) == arn {
		t.Fatalf("re-created stream: %v %v (old ARN %s)", again, err, arn)
	}
}

func TestMediaStorageConfigurationSDK(t *testing.T) {
	t.Parallel()
	srv := start(t, emulator.Config{TURNDisabled: true, DisableQuotas: true, Channels: []string{"front", "back"},
		Faults: []string{"throttle-api,target=JoinStorageSession"}})
	kv := sdkClient(t, srv)
	c := newClient(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	front := describeARN(ctx, t, kv, "front")
	back := describeARN(ctx, t, kv, "back")

	st, err := kv.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String("front-rec"), DataRetentionInHours: aws.Int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	noRet, err := kv.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String("no-retention")})
	if err != nil {
		t.Fatal(err)
	}
	update := func(ch string, status types.MediaStorageConfigurationStatus, stream *string) error {
		_, err := kv.UpdateMediaStorageConfiguration(ctx, &kinesisvideo.UpdateMediaStorageConfigurationInput{
			ChannelARN: aws.String(ch), MediaStorageConfiguration: &types.MediaStorageConfiguration{Status: status, StreamARN: stream}})
		return err
	}

	// Before: DISABLED, and no WEBRTC endpoint.
	desc, err := kv.DescribeMediaStorageConfiguration(ctx, &kinesisvideo.DescribeMediaStorageConfigurationInput{ChannelName: aws.String("front")})
	if err != nil || desc.MediaStorageConfiguration.Status != types.MediaStorageConfigurationStatusDisabled {
		t.Fatalf("describe before: %+v %v", desc, err)
	}
	var inv *types.InvalidArgumentException
	if _, err := webrtcEndpoint(ctx, t, kv, front, types.ChannelRoleMaster); !errors.As(err, &inv) || !strings.Contains(inv.ErrorMessage(), "UpdateMediaStorageConfiguration") {
		t.Fatalf("WEBRTC endpoint without storage: %v, want InvalidArgumentException", err)
	}

	// The service's rules.
	if err := update(front, types.MediaStorageConfigurationStatusEnabled, nil); !errors.As(err, &inv) {
		t.Fatalf("ENABLED without StreamARN: %v, want InvalidArgumentException", err)
	}
	var nf *types.ResourceNotFoundException
	missingStream := strings.Replace(aws.ToString(st.StreamARN), "front-rec", "nope", 1)
	if err := update(front, types.MediaStorageConfigurationStatusEnabled, aws.String(missingStream)); !errors.As(err, &nf) {
		t.Fatalf("missing stream: %v, want ResourceNotFoundException", err)
	}
	var noData *types.NoDataRetentionException
	if err := update(front, types.MediaStorageConfigurationStatusEnabled, noRet.StreamARN); !errors.As(err, &noData) {
		t.Fatalf("stream without retention: %v, want NoDataRetentionException", err)
	}
	if err := update(front, types.MediaStorageConfigurationStatusEnabled, aws.String(front)); !errors.As(err, &inv) {
		t.Fatalf("channel ARN as stream ARN: %v, want InvalidArgumentException", err)
	}
	var denied *types.AccessDeniedException
	if err := update(front, types.MediaStorageConfigurationStatusEnabled, aws.String("arn:aws:kinesisvideo:eu-west-1:111122223333:stream/theirs/1")); !errors.As(err, &denied) {
		t.Fatalf("foreign stream: %v, want AccessDeniedException", err)
	}
	if err := update(front, types.MediaStorageConfigurationStatusEnabled, st.StreamARN); err != nil {
		t.Fatalf("enable: %v", err)
	}
	var inUse *types.ResourceInUseException
	if err := update(back, types.MediaStorageConfigurationStatusEnabled, st.StreamARN); !errors.As(err, &inUse) || !strings.Contains(inUse.ErrorMessage(), "front") {
		t.Fatalf("stream linked twice: %v, want ResourceInUseException naming front", err)
	}
	desc, err = kv.DescribeMediaStorageConfiguration(ctx, &kinesisvideo.DescribeMediaStorageConfigurationInput{ChannelARN: aws.String(front)})
	if err != nil || desc.MediaStorageConfiguration.Status != types.MediaStorageConfigurationStatusEnabled ||
		aws.ToString(desc.MediaStorageConfiguration.StreamARN) != aws.ToString(st.StreamARN) {
		t.Fatalf("describe after enable: %+v %v", desc, err)
	}

	// The WEBRTC endpoint and the joins.
	ep, err := webrtcEndpoint(ctx, t, kv, front, types.ChannelRoleMaster)
	if err != nil || ep != srv.URL() {
		t.Fatalf("WEBRTC endpoint %q %v", ep, err)
	}
	sc := newStorageClient(t, srv, ep)
	join := func() *storageError {
		return sc.call(kvsproto.PathJoinStorageSession, kvsproto.JoinStorageSessionInput{ChannelArn: front})
	}
	joinViewer := func(id string) *storageError {
		return sc.call(kvsproto.PathJoinStorageSessionAsViewer, kvsproto.JoinStorageSessionAsViewerInput{ChannelArn: front, ClientID: id})
	}
	wantErr(t, "throttled join (injected)", join(), 400, kvsproto.ErrCodeClientLimitExceeded, "throttled")
	wantErr(t, "master join without a master connection", join(), 404, kvsproto.ErrCodeResourceNotFound, "No master is connected", "ConnectAsMaster")
	master := c.mustDial(kvsproto.RoleMaster, front, "")
	if e := join(); e != nil {
		t.Fatalf("JoinStorageSession: %+v", e)
	}
	if e := join(); e != nil { // a second join: the newer one takes precedence
		t.Fatalf("second JoinStorageSession: %+v", e)
	}
	// The storage session's media is not emulated: no offer reaches the master.
	expectNothing(t, master, 300*time.Millisecond)

	wantErr(t, "viewer join without a viewer connection", joinViewer("v1"), 404, kvsproto.ErrCodeResourceNotFound, "v1", "ConnectAsViewer")
	wantErr(t, "bad client id", joinViewer("bad id!"), 400, kvsproto.ErrCodeInvalidArgument, "clientId")
	wantErr(t, "reserved client id", joinViewer("AWS_x"), 400, kvsproto.ErrCodeInvalidArgument, "AWS_")
	wantErr(t, "no client id", sc.call(kvsproto.PathJoinStorageSessionAsViewer, map[string]string{"channelArn": front}), 400, kvsproto.ErrCodeInvalidArgument, "clientId")
	for _, id := range []string{"v1", "v2", "v3", "v4"} {
		c.mustDial(kvsproto.RoleViewer, front, id)
	}
	for _, id := range []string{"v1", "v2", "v3", "v1"} {
		if e := joinViewer(id); e != nil {
			t.Fatalf("JoinStorageSessionAsViewer %s: %+v", id, e)
		}
	}
	wantErr(t, "fourth viewer", joinViewer("v4"), 400, kvsproto.ErrCodeClientLimitExceeded, "maximum of 3 viewers")

	sessions := srv.StorageSessions()
	if len(sessions) != 1 || sessions[0].ChannelARN != front || sessions[0].StreamARN != aws.ToString(st.StreamARN) ||
		sessions[0].MasterJoins != 2 || len(sessions[0].Viewers) != 3 || sessions[0].Viewers[0].ClientID != "v1" || sessions[0].Viewers[0].Joins != 2 {
		t.Fatalf("StorageSessions %+v", sessions)
	}
	if n := srv.Stats().StorageSessions; n != 1 {
		t.Fatalf("Stats.StorageSessions %d", n)
	}

	// Channel and account errors of the storage API.
	wantErr(t, "foreign channel", sc.call(kvsproto.PathJoinStorageSession, kvsproto.JoinStorageSessionInput{ChannelArn: "arn:aws:kinesisvideo:eu-west-1:111122223333:channel/theirs/1"}),
		403, kvsproto.ErrCodeAccessDenied)
	wantErr(t, "unknown channel", sc.call(kvsproto.PathJoinStorageSession, kvsproto.JoinStorageSessionInput{ChannelArn: front + "1"}),
		404, kvsproto.ErrCodeResourceNotFound, "not found")
	wantErr(t, "malformed ARN", sc.call(kvsproto.PathJoinStorageSession, kvsproto.JoinStorageSessionInput{ChannelArn: "nope"}),
		400, kvsproto.ErrCodeInvalidArgument, "channelArn")
	wantErr(t, "no storage configuration", sc.call(kvsproto.PathJoinStorageSession, kvsproto.JoinStorageSessionInput{ChannelArn: back}),
		400, kvsproto.ErrCodeInvalidArgument, "not configured for media storage", "UpdateMediaStorageConfiguration")

	// Deleting the stream: the channel keeps its configuration, joins fail.
	if _, err := kv.DeleteStream(ctx, &kinesisvideo.DeleteStreamInput{StreamARN: st.StreamARN}); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.StorageSessions()); n != 0 {
		t.Fatalf("%d storage sessions after the stream was deleted", n)
	}
	wantErr(t, "join with a deleted stream", join(), 404, kvsproto.ErrCodeResourceNotFound, "front-rec", "deleted")
	wantErr(t, "viewer join with a deleted stream", joinViewer("v1"), 404, kvsproto.ErrCodeResourceNotFound, "front-rec")

	// DISABLED unlinks; the WEBRTC endpoint goes away.
	if err := update(front, types.MediaStorageConfigurationStatusDisabled, nil); err != nil {
		t.Fatalf("disable: %v", err)
	}
	desc, err = kv.DescribeMediaStorageConfiguration(ctx, &kinesisvideo.DescribeMediaStorageConfigurationInput{ChannelARN: aws.String(front)})
	if err != nil || desc.MediaStorageConfiguration.Status != types.MediaStorageConfigurationStatusDisabled || desc.MediaStorageConfiguration.StreamARN != nil {
		t.Fatalf("describe after disable: %+v %v", desc, err)
	}
	if _, err := webrtcEndpoint(ctx, t, kv, front, types.ChannelRoleViewer); !errors.As(err, &inv) {
		t.Fatalf("WEBRTC endpoint after disable: %v", err)
	}
}

func describeARN(ctx context.Context, t *testing.T, kv *kinesisvideo.Client, name string) string {
	t.Helper()
	d, err := kv.DescribeSignalingChannel(ctx, &kinesisvideo.DescribeSignalingChannelInput{ChannelName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(d.ChannelInfo.ChannelARN)
}

// TestStorageViewerSlotHeld: a viewer that left keeps its slot (its client
// id can re-join), so a new viewer is refused while the slots are held.
func TestStorageViewerSlotHeld(t *testing.T) {
	t.Parallel()
	srv := start(t, emulator.Config{TURNDisabled: true, Channels: []string{"ch"}, StorageMaxViewers: 1, DisableQuotas: true})
	kv := sdkClient(t, srv)
	c := newClient(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ch := describeARN(ctx, t, kv, "ch")
	st, err := kv.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String("rec"), DataRetentionInHours: aws.Int32(2)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.UpdateMediaStorageConfiguration(ctx, &kinesisvideo.UpdateMediaStorageConfigurationInput{ChannelARN: aws.String(ch),
		MediaStorageConfiguration: &types.MediaStorageConfiguration{Status: types.MediaStorageConfigurationStatusEnabled, StreamARN: st.StreamARN}}); err != nil {
		t.Fatal(err)
	}
	sc := newStorageClient(t, srv, srv.URL())
	joinViewer := func(id string) *storageError {
		return sc.call(kvsproto.PathJoinStorageSessionAsViewer, kvsproto.JoinStorageSessionAsViewerInput{ChannelArn: ch, ClientID: id})
	}
	a := c.mustDial(kvsproto.RoleViewer, ch, "a")
	c.mustDial(kvsproto.RoleViewer, ch, "b")
	if e := joinViewer("a"); e != nil {
		t.Fatalf("join a: %+v", e)
	}
	_ = a.CloseNow()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := srv.StorageSessions()
		if len(s) == 1 && len(s[0].Viewers) == 1 && !s[0].Viewers[0].LeftAt.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the viewer's leaving was not recorded: %+v", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
	wantErr(t, "second viewer while the first one's slot is held", joinViewer("b"), 400, kvsproto.ErrCodeClientLimitExceeded, "one minute")
	c.mustDial(kvsproto.RoleViewer, ch, "a")
	if e := joinViewer("a"); e != nil {
		t.Fatalf("re-join with the same client id: %+v", e)
	}
}

// TestStoragePersistAcrossRestart: streams and media storage configurations
// survive a restart with the same data directory; storage sessions do not.
func TestStoragePersistAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	srv := start(t, emulator.Config{DataDir: dir, TURNDisabled: true, Channels: []string{"cam"}})
	c := newClient(t, srv)
	var ch kvsproto.DescribeSignalingChannelOutput
	c.mustPost(kvsproto.PathDescribeSignalingChannel, kvsproto.DescribeSignalingChannelInput{ChannelName: "cam"}, &ch)
	hours := 6
	var st kvsproto.CreateStreamOutput
	c.mustPost(kvsproto.PathCreateStream, kvsproto.CreateStreamInput{StreamName: "cam-rec", DataRetentionInHours: &hours, Tags: map[string]string{"a": "b"}}, &st)
	c.mustPost(kvsproto.PathUpdateMediaStorageConfiguration, kvsproto.UpdateMediaStorageConfigurationInput{ChannelARN: ch.ChannelInfo.ChannelARN,
		MediaStorageConfiguration: &kvsproto.MediaStorageConfiguration{StreamARN: st.StreamARN, Status: kvsproto.MediaStorageEnabled}}, nil)
	var before kvsproto.DescribeStreamOutput
	c.mustPost(kvsproto.PathDescribeStream, kvsproto.DescribeStreamInput{StreamName: "cam-rec"}, &before)
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}

	srv2 := start(t, emulator.Config{DataDir: dir, TURNDisabled: true, Channels: []string{"cam"}})
	c2 := newClient(t, srv2)
	var after kvsproto.DescribeStreamOutput
	c2.mustPost(kvsproto.PathDescribeStream, kvsproto.DescribeStreamInput{StreamARN: st.StreamARN}, &after)
	if after.StreamInfo != before.StreamInfo {
		t.Fatalf("stream changed across restart: %+v vs %+v", before.StreamInfo, after.StreamInfo)
	}
	var msc kvsproto.DescribeMediaStorageConfigurationOutput
	c2.mustPost(kvsproto.PathDescribeMediaStorageConfiguration, kvsproto.DescribeMediaStorageConfigurationInput{ChannelName: "cam"}, &msc)
	if msc.MediaStorageConfiguration.Status != kvsproto.MediaStorageEnabled || msc.MediaStorageConfiguration.StreamARN != st.StreamARN {
		t.Fatalf("media storage after restart: %+v", msc)
	}
	if n := len(srv2.StorageSessions()); n != 0 {
		t.Fatalf("%d storage sessions after restart", n)
	}
}
